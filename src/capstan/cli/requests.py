"""`capstan requests list|show`: the request log, read through the control API.

Like every command this goes through the API (in-process or remote), so what a key may see and
whether payloads show are decided by the server, never here. Times given as `--since 2h` are
turned into absolute UTC times before they are sent, so every page of one listing asks about
the same window.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
import typer
from rich import box
from rich.table import Table

from capstan.cli.client import ControlClient, control_client
from capstan.cli.output import CliError, console, print_json
from capstan.cli.resources import JsonFlag
from capstan.clock import as_utc, utcnow
from capstan.ids import parse_id

Row = dict[str, Any]
PAGE_MAX = 500
_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

app = typer.Typer(help="The request log: every model call, failures included.")
app.info.no_args_is_help = True


def parse_when(option: str, text: str | None, *, now: datetime) -> str | None:
    """An ISO date or time (UTC when it names no zone), or a span back from now: 30s, 15m, 2h,
    7d."""
    if text is None:
        return None
    ago = _AGO.match(text.strip())
    if ago:
        return (now - timedelta(**{_UNITS[ago[2]]: int(ago[1])})).isoformat()
    try:
        return as_utc(datetime.fromisoformat(text)).isoformat()
    except ValueError as exc:
        raise CliError(
            f"{option}: {text!r} is not a date, an ISO time or a span like 15m, 2h, 7d"
        ) from exc


def _tags(pairs: list[str] | None) -> list[str] | None:
    for pair in pairs or ():
        key, sep, _ = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--tag: {pair!r} is not KEY=VALUE")
    return pairs or None


def _project_id(client: ControlClient, ref: str | None) -> str | None:
    """An id as given; a name looked up among the projects this key can see."""
    if ref is None:
        return None
    if parse_id(ref) is not None:
        return ref
    cursor: str | None = None
    while True:
        page = client.request("GET", "/projects", params={"limit": PAGE_MAX, "cursor": cursor})
        for project in page["items"]:
            if project["name"] == ref:
                return str(project["id"])
        cursor = page["next_cursor"]
        if cursor is None:
            raise CliError(f"--project: no project {ref!r}")


def _time(value: str) -> str:
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _print_table(rows: list[Row]) -> None:
    """Without vertical rules, and with the time and the id free to wrap (the id folded, never
    cut: it is what people copy into `show`), nine columns still read at 80 characters."""
    table = Table(
        title="Requests (newest first)",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    table.add_column("time", overflow="fold")
    table.add_column("id", overflow="fold")
    table.add_column("model", overflow="fold")
    table.add_column("deployment", overflow="fold")
    table.add_column("status", justify="right")
    table.add_column("error", overflow="fold")
    for column in ("tokens in/out", "latency ms", "attempts"):
        table.add_column(column, justify="right")
    for row in rows:
        tokens = f"{_dash(row['prompt_tokens'])}/{_dash(row['completion_tokens'])}"
        table.add_row(
            _time(row["created_at"]),
            str(row["id"]),
            row["model"] or "-",
            _dash(row["deployment"]),
            str(row["status"]),
            _dash(row["error_type"]),
            tokens,
            f"{row['latency_ms']:.0f}",
            str(row["attempts"]),
        )
    console.print(table)


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _field_text(value: Any) -> str:
    """Tags and payloads as one line of JSON, which can be copied back out whole."""
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else _dash(value)


@app.command("list")
def list_requests(
    model: Annotated[str | None, typer.Option(help="Only this requested model.")] = None,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project (name or id).")] = None,
    status: Annotated[
        int | None, typer.Option(min=100, max=599, help="Only this HTTP status.")
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only failed requests.")] = False,
    since: Annotated[
        str | None, typer.Option(help="From this date, time (UTC) or span ago (2h, 7d).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this date, time or span ago.")] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="Only requests with this tag (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 50,
    json: JsonFlag = False,
) -> None:
    """List requests, newest first."""
    now = utcnow()
    params: Row = {
        "model": model,
        "deployment": deployment,
        "status": status,
        "outcome": "error" if errors else None,
        "since": parse_when("--since", since, now=now),
        "until": parse_when("--until", until, now=now),
        "tag": _tags(tag),
    }
    rows: list[Row] = []
    with control_client() as client:
        params["project_id"] = _project_id(client, project)
        cursor: str | None = None
        while len(rows) < limit:
            page_size = min(PAGE_MAX, limit - len(rows))
            page = client.request(
                "GET", "/requests", params={**params, "limit": page_size, "cursor": cursor}
            )
            rows.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    if json:
        print_json(rows)
    else:
        _print_table(rows)


@app.command("show")
def show(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="The x-capstan-request-id.")],
    json: JsonFlag = False,
) -> None:
    """Show every field of one request."""
    try:
        uuid.UUID(request_id)
    except ValueError as exc:
        raise CliError(f"{request_id!r} is not a request id (a UUID)") from exc
    with control_client() as client:
        row = client.request("GET", f"/requests/{request_id}")
    if json:
        print_json(row)
        return
    for key, value in row.items():
        typer.echo(f"{key + ':':<19} {_field_text(value)}")
