"""`capstan audit verify|log|export`."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from capstan.cli.client import control_client
from capstan.cli.output import CliError, print_listing

app = typer.Typer(help="The tamper-evident audit chain.", no_args_is_help=True)


def _since(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise CliError(f"--since: {text!r} is not a date (YYYY-MM-DD) or ISO datetime") from exc


@app.command("verify")
def verify() -> None:
    """Recompute every hash; exit 1 naming the first bad entry."""
    with control_client() as client:
        result = client.request("GET", "/audit/verify")
    if not result["ok"]:
        raise CliError(f"audit chain broken at seq {result['first_bad_seq']}: {result['reason']}")
    typer.echo(f"audit chain ok: {result['checked']} entries, head {result['head_hash']}")


@app.command("log")
def log(
    since: Annotated[str | None, typer.Option(help="From this date or time (UTC).")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor, e.g. key:<id>.")] = None,
    resource: Annotated[str | None, typer.Option(help="A resource type or id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show audit entries, oldest first."""
    rows: list[dict[str, Any]] = []
    cursor = 0
    with control_client() as client:
        while len(rows) < limit:
            params = {
                "since": _since(since),
                "actor": actor,
                "resource": resource,
                "cursor": cursor,
                "limit": min(1000, limit - len(rows)),
            }
            page = client.request("GET", "/audit", params=params)
            rows.extend(page["items"])
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
    columns = ["seq", "time", "actor", "action", "resource_type", "resource_id"]
    print_listing(rows, columns, as_json=json, title="Audit log")


@app.command("export")
def export(
    since: Annotated[str | None, typer.Option(help="From this date or time (UTC).")] = None,
    format: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
) -> None:
    """Write the chain to stdout as JSON lines or CSV."""
    if format not in ("jsonl", "csv"):
        raise CliError(f"--format: {format!r} is not one of jsonl, csv")
    with control_client() as client:
        for chunk in client.stream(
            "/audit/export", params={"since": _since(since), "format": format}
        ):
            sys.stdout.write(chunk)
