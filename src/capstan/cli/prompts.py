"""`capstan prompts push|list|show|history|diff|label|rollback|render`: versioned prompts,
through the control API like every command, so validation, roles and audit are the server's
(their A/B tests: `cli/prompt_experiments.py`).

A prompt is named `NAME`, `NAME@LABEL` or `NAME@VERSION` (`support-reply@production`,
`support-reply@7`); a bare name means the newest version. Template text is printed with
`typer.echo`, never through Rich, so a `[role]` or a bracket in a prompt is never read as markup.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich import box
from rich.markup import escape
from rich.table import Table

from capstan.cli.client import control_client
from capstan.cli.output import CliError, console, print_json, print_listing
from capstan.cli.resources import JsonFlag, item_path

Row = dict[str, Any]

app = typer.Typer(help="Prompts: versioned templates, labels, rollbacks and A/B tests.")
app.info.no_args_is_help = True

PromptRef = Annotated[
    str,
    typer.Argument(
        metavar="NAME[@LABEL|@VERSION]",
        help="A prompt, at a label or version (the newest when neither is given).",
    ),
]
PromptName = Annotated[str, typer.Argument(metavar="NAME", help="The prompt.")]
Version = Annotated[str, typer.Argument(metavar="VERSION", help="A version number (2 or v2).")]


class _Loader(yaml.SafeLoader):
    """`yaml.safe_load` without timestamps: `2026-01-31` stays the text it reads as, since
    what is loaded here is sent as JSON, which has no dates."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


_NULLS = frozenset({"null", "Null", "NULL", "~"})


# -- helpers ---------------------------------------------------------------------------------


def _split_ref(text: str) -> tuple[str, dict[str, Any]]:
    """`support-reply@production` → ("support-reply", {"label": "production"}); `@7` →
    {"version": 7}; no `@` → {} (the newest)."""
    name, sep, ref = text.partition("@")
    if not name or (sep and not ref):
        raise CliError(f"{text!r} is not NAME, NAME@LABEL or NAME@VERSION")
    if not ref:
        return name, {}
    if ref.isdigit():
        return name, {"version": int(ref)}
    return name, {"label": ref}


def parse_version(text: str, what: str = "VERSION") -> int:
    """`2` or `v2`."""
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not digits.isdigit() or int(digits) < 1:
        raise CliError(f"{what}: {text!r} is not a version number like 2 or v2")
    return int(digits)


def _var(pair: str) -> tuple[str, Any]:
    """`n=3` → ("n", 3): the value read as YAML (`true`, `3`, `2.5`, `null`, `[a, b]`), so a
    variable gets its type. What YAML cannot read, or reads as nothing without saying `null`
    (`@ada`, `# note`, an empty value), is the text as typed."""
    key, sep, text = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CliError(f"--var: {pair!r} is not NAME=VALUE")
    try:
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        return key, text
    if value is None and text.strip() not in _NULLS:
        return key, text
    return key, value


def _read_document(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"{file} is not UTF-8 text") from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CliError(f"{file} is not valid YAML{at}: {problem}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{file}: a prompt file is a mapping of fields (name, messages or text, …)")
    return data


def short_time(value: str | None) -> str:
    if value is None:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _labels(labels: dict[str, int]) -> str:
    """`production=2, staging=3`."""
    return ", ".join(f"{label}={version}" for label, version in sorted(labels.items()))


def _one_line(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode() if value else "-"
    return str(value)


def _echo_template(rendered: dict[str, Any]) -> None:
    """Messages as `[role] content` blocks, a blank line between them; or the text."""
    messages = rendered.get("messages")
    if messages is None:
        typer.echo(rendered.get("text") or "")
        return
    typer.echo("\n\n".join(f"[{m['role']}] {m['content']}" for m in messages))


def rich_table(title: str) -> Table:
    return Table(
        title=title, header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False
    )


def cell(value: Any) -> str:
    """A table cell: "-" for nothing, and brackets escaped (Rich would read them as markup)."""
    return "-" if value is None else escape(str(value))


# -- versions --------------------------------------------------------------------------------


@app.command("push")
def push(
    file: Annotated[Path, typer.Argument(metavar="FILE.yaml", help="The prompt file.")],
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="What changed, for the history.")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Push a prompt file: a new version when its content changed, nothing when not."""
    body = _read_document(file)
    if message is not None:
        body["message"] = message
    with control_client() as client:
        pushed = client.request("POST", "/prompts", json=body)
    if json:
        print_json(pushed)
    elif pushed["created"]:
        typer.echo(f"created {pushed['name']} v{pushed['version']}")
    else:
        typer.echo(f"unchanged {pushed['name']} v{pushed['version']} (content identical)")


@app.command("list")
def list_prompts(json: JsonFlag = False) -> None:
    """List prompts with their newest version and labels."""
    with control_client() as client:
        rows = client.request("GET", "/prompts")
    if not json:
        rows = [
            {
                **row,
                "name": escape(row["name"]),
                "labels": _labels(row["labels"]) or None,
                "description": None if row["description"] is None else escape(row["description"]),
            }
            for row in rows
        ]
    columns = ("name", "latest_version", "labels", "description")
    print_listing(rows, columns, as_json=json, title="Prompts")


@app.command("show")
def show(ref: PromptRef, json: JsonFlag = False) -> None:
    """Show one version of a prompt: its fields, then its template."""
    name, params = _split_ref(ref)
    with control_client() as client:
        row = client.request("GET", item_path("/prompts", name), params=params)
    if json:
        print_json(row)
        return
    header = {
        "name": row["name"],
        "version": row["version"],
        "labels": ", ".join(row["labels"]) or None,
        "model": row["model"],
        "params": row["params"],
        "variables": row["variables"],
        "author": row["author"],
        "message": row["message"],
        "created_at": row["created_at"],
        "content_hash": row["content_hash"],
    }
    for key, value in header.items():
        typer.echo(f"{key + ':':<14} {_one_line(value)}")
    typer.echo("")
    _echo_template(row)


@app.command("history")
def history(name: PromptName, json: JsonFlag = False) -> None:
    """Every version of a prompt, newest first, and every label move."""
    with control_client() as client:
        answer = client.request("GET", item_path("/prompts", name) + "/history")
    if json:
        print_json(answer)
        return
    versions = rich_table(f"Versions of {escape(answer['name'])} (newest first)")
    for column in ("version", "labels", "author", "created at", "message"):
        versions.add_column(column, overflow="fold")
    for v in answer["versions"]:
        versions.add_row(
            f"v{v['version']}",
            cell(", ".join(v["labels"]) or None),
            cell(v["author"]),
            short_time(v["created_at"]),
            cell(v["message"]),
        )
    console.print(versions)
    moves = answer["label_moves"]
    if not moves:
        typer.echo("no label moves")
        return
    table = rich_table("Label moves (newest first)")
    for column in ("at", "label", "from → to", "kind", "moved by", ""):
        table.add_column(column, overflow="fold")
    for move in moves:
        before = "-" if move["from_version"] is None else f"v{move['from_version']}"
        table.add_row(
            short_time(move["at"]),
            cell(move["label"]),
            f"{before} → v{move['to_version']}",
            move["kind"],
            cell(move["moved_by"]),
            "(undone)" if move["undone"] else "",
        )
    console.print(table)


@app.command("diff")
def diff(
    name: PromptName,
    first: Annotated[str, typer.Argument(metavar="V1", help="The older version.")],
    second: Annotated[str, typer.Argument(metavar="V2", help="The newer version.")],
) -> None:
    """A unified diff between two versions of a prompt."""
    params = {"from": parse_version(first, "V1"), "to": parse_version(second, "V2")}
    with control_client() as client:
        answer = client.request("GET", item_path("/prompts", name) + "/diff", params=params)
    text = answer["diff"]
    typer.echo(text.rstrip("\n") if text else "no difference")


# -- labels ----------------------------------------------------------------------------------


@app.command("label")
def label(
    name: PromptName,
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="production, staging, …")],
    version: Version,
) -> None:
    """Point a label at a version; every gateway serves it from its next request."""
    path = item_path(item_path("/prompts", name) + "/labels", label_name)
    with control_client() as client:
        moved = client.request("PUT", path, json={"version": parse_version(version)})
    typer.echo(f"{moved['name']}: {moved['label']} → v{moved['version']}")


@app.command("rollback")
def rollback(
    name: PromptName,
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="production, staging, …")],
) -> None:
    """Move a label back to where it pointed before its latest move."""
    path = item_path(item_path("/prompts", name) + "/labels", label_name) + "/rollback"
    with control_client() as client:
        moved = client.request("POST", path)
    typer.echo(f"{moved['name']}: {moved['label']} back to v{moved['version']}")


@app.command("render")
def render(
    ref: PromptRef,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            metavar="NAME=VALUE",
            help="A variable (repeatable); the value is read as YAML: 3, true, [a, b], text.",
        ),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """What the gateway would send for these variables."""
    name, body = _split_ref(ref)
    body["variables"] = dict(_var(pair) for pair in var or ())
    with control_client() as client:
        rendered = client.request("POST", item_path("/prompts", name) + "/render", json=body)
    if json:
        print_json(rendered)
    else:
        _echo_template(rendered)
