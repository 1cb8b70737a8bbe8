"""`capstan providers|deployments|aliases …`, `capstan apply` and `capstan catalog`.

Like every command these go through the control API (in-process or remote). A provider key is
never an argument (argv shows in `ps` and shell history): either `--api-key-env VAR`, which
stores the reference `env:VAR` for the gateway to read, or `--api-key-stdin`, which reads the key
itself from stdin and has it stored encrypted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from capstan.cli.client import control_client
from capstan.cli.output import CliError, console, print_json, print_listing
from capstan.cli.resources import JsonFlag, Limit, all_pages, create, delete, item_path
from capstan.cli.secrets import read_stdin

Row = dict[str, Any]
OptionPairs = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", metavar="KEY=VALUE", help="An option (repeatable)."),
]

providers = typer.Typer(help="Gateway providers: an endpoint and its key.", no_args_is_help=True)
deployments = typer.Typer(help="Deployments: a model on a provider.", no_args_is_help=True)
aliases = typer.Typer(help="Aliases: names clients call, routed over deployments.")
aliases.info.no_args_is_help = True


def _options(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--option: {pair!r} is not KEY=VALUE")
        options[key.strip()] = value
    return options


def _text(value: Any, *, brackets: bool = True) -> str:
    """A value as one short line: targets as `name:weight`, lists in brackets (left out in
    tables, where Rich would read them as markup)."""
    if value is None:
        return "-"
    if isinstance(value, dict) and "deployment" in value:
        text = f"{value['deployment']}:{value.get('weight', 1)}"
        return text + (f" (priority {value['priority']})" if value.get("priority") else "")
    if isinstance(value, list):
        joined = ", ".join(_text(v) for v in value)
        return f"[{joined}]" if brackets else joined
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
    return str(value)


def _list_show_delete(
    app: typer.Typer,
    kind: str,
    plural: str,
    columns: list[str],
    *,
    list_help: str,
    delete_help: str,
    shown: Callable[[Row], Row] | None = None,
) -> None:
    """`list`, `show` and `delete` for one kind (added after its `create`, which differs per
    kind, so --help lists them in that order). `shown` reshapes a row for the table."""
    collection = f"/{plural}"

    @app.command("list", help=list_help)
    def list_rows(json: JsonFlag = False, limit: Limit = 100) -> None:
        rows = all_pages(collection, limit)
        if shown is not None and not json:
            rows = [shown(row) for row in rows]
        print_listing(rows, columns, as_json=json, title=plural.capitalize())

    @app.command("show", help=f"Show one {kind}.")
    def show(name: str, json: JsonFlag = False) -> None:
        with control_client() as client:
            row = client.request("GET", item_path(collection, name))
        if json:
            print_json(row)
            return
        for key, value in row.items():
            typer.echo(f"{key + ':':<20} {_text(value)}")

    @app.command("delete", help=delete_help)
    def delete_one(name: str) -> None:
        delete(item_path(collection, name), kind, name)


# -- providers -----------------------------------------------------------------------------------


@providers.command("create")
def provider_create(
    name: str,
    kind: Annotated[str, typer.Option(help="openai, azure, anthropic, gemini, ollama, …")],
    base_url: Annotated[str | None, typer.Option(help="Defaults to the kind's endpoint.")] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(metavar="VAR", help="The gateway reads the key from this variable."),
    ] = None,
    api_key_stdin: Annotated[
        bool, typer.Option(help="Read the key from stdin; it is stored encrypted.")
    ] = False,
    option: OptionPairs = None,
    json: JsonFlag = False,
) -> None:
    """Create a provider."""
    if api_key_env and api_key_stdin:
        raise CliError("--api-key-env and --api-key-stdin exclude each other")
    api_key = None
    if api_key_env:
        api_key = f"env:{api_key_env}"
    elif api_key_stdin:
        api_key = read_stdin("API key", when_empty="--api-key-stdin: no key on stdin")
    given = {
        "name": name,
        "kind": kind,
        "base_url": base_url,
        "api_key": api_key,
        "options": _options(option),
    }
    create("/providers", {k: v for k, v in given.items() if v is not None}, json, "provider")


_list_show_delete(
    providers,
    "provider",
    "providers",
    ["name", "kind", "effective_base_url", "api_key", "updated_at"],
    list_help="List providers (keys show as env:NAME, secret:NAME or stored).",
    delete_help="Delete a provider no deployment uses (and the key stored for it).",
)


# -- deployments ---------------------------------------------------------------------------------


@deployments.command("create")
def deployment_create(
    name: str,
    provider: Annotated[str, typer.Option(help="Provider name.")],
    model: Annotated[str, typer.Option(help="The model id the provider expects.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the upstream.")] = 60.0,
    max_concurrency: Annotated[int | None, typer.Option(help="In-flight requests cap.")] = None,
    max_retries: Annotated[
        int, typer.Option(help="Retries of a 429, 5xx, timeout or lost connection.", min=0)
    ] = 2,
    stream_idle_timeout: Annotated[
        float | None, typer.Option(help="Seconds of silence that stall a stream.")
    ] = None,
    option: OptionPairs = None,
    json: JsonFlag = False,
) -> None:
    """Create a deployment: a model on a provider."""
    body = {
        "name": name,
        "provider": provider,
        "model": model,
        "timeout_s": timeout,
        "max_concurrency": max_concurrency,
        "max_retries": max_retries,
        "stream_idle_timeout_s": stream_idle_timeout,
        "options": _options(option),
    }
    create("/deployments", body, json, "deployment")


_list_show_delete(
    deployments,
    "deployment",
    "deployments",
    ["name", "provider", "model", "timeout_s", "max_concurrency", "max_retries"],
    list_help="List deployments.",
    delete_help="Delete a deployment no alias uses.",
)


# -- aliases ------------------------------------------------------------------------------------


def _target(text: str) -> dict[str, Any]:
    """`NAME` or `NAME:WEIGHT`; a trailing `:digits` is a weight (names may hold ':')."""
    name, sep, weight = text.rpartition(":")
    if sep and name and weight.isdigit():
        return {"deployment": name, "weight": int(weight)}
    return {"deployment": text}


@aliases.command("create")
def alias_create(
    name: str,
    target: Annotated[
        list[str],
        typer.Option(metavar="DEPLOYMENT[:WEIGHT]", help="A target deployment (repeatable)."),
    ],
    strategy: Annotated[
        str, typer.Option(help="weighted | least-latency | lowest-cost | priority")
    ] = "weighted",
    fallback: Annotated[
        list[str] | None, typer.Option(help="Alias or deployment tried next (repeatable).")
    ] = None,
    fallback_on_content_policy: Annotated[
        bool, typer.Option(help="Also fall back when a vendor refuses on content policy.")
    ] = False,
    json: JsonFlag = False,
) -> None:
    """Create an alias."""
    body = {
        "name": name,
        "strategy": strategy,
        "targets": [_target(t) for t in target],
        "fallbacks": fallback or [],
        "fallback_on_content_policy": fallback_on_content_policy,
    }
    create("/aliases", body, json, "alias")


def _alias_row(row: Row) -> Row:
    """Targets and fallbacks as plain text: in brackets, Rich would read them as markup."""
    return {
        **row,
        "targets": _text(row["targets"], brackets=False),
        "fallbacks": _text(row["fallbacks"], brackets=False),
    }


_list_show_delete(
    aliases,
    "alias",
    "aliases",
    ["name", "strategy", "targets", "fallbacks"],
    list_help="List aliases.",
    delete_help="Delete an alias no other alias falls back to.",
    shown=_alias_row,
)


# -- apply and catalog --------------------------------------------------------------------------


def _plan_lines(result: dict[str, Any]) -> list[str]:
    """The plan as lines: `+ provider x`, `~ alias y: strategy weighted → priority`,
    `- deployment z`, `= 3 unchanged`."""
    signs = {"create": "+", "update": "~", "delete": "-"}
    lines = []
    for change in result["changes"]:
        line = f"{signs[change['action']]} {change['kind']} {change['name']}"
        if change["action"] == "update":
            fields = [
                f"{d['field']} {_text(d['before'])} → {_text(d['after'])}" for d in change["diff"]
            ]
            line += ": " + ", ".join(fields)
        lines.append(line)
    if result["unchanged"]:
        lines.append(f"= {result['unchanged']} unchanged")
    return lines


def apply_file(
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="The YAML file ('-' for stdin).", show_default=False),
    ],
    dry_run: Annotated[bool, typer.Option(help="Print the plan; change nothing.")] = False,
    prune: Annotated[bool, typer.Option(help="Delete what the file omits.")] = False,
    json: JsonFlag = False,
) -> None:
    """Make the gateway configuration match a file (providers, deployments, aliases)."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--file: cannot read {file}: {exc.strerror or exc}") from exc
    body = {"document": text, "dry_run": dry_run, "prune": prune}
    with control_client() as client:
        result = client.request("POST", "/config/apply", json=body)
    if json:
        print_json(result)
        return
    for line in _plan_lines(result):
        typer.echo(line)
    count = len(result["changes"])
    if dry_run:
        typer.echo(f"dry run: {count} change(s) planned, nothing was changed")
    elif count:
        typer.echo(f"applied {count} change(s)")
    else:
        typer.echo("nothing to change")


def catalog(
    vendor: Annotated[str | None, typer.Option(help="Only this vendor's models.")] = None,
    json: JsonFlag = False,
) -> None:
    """The model catalog: context sizes and list prices (USD per million tokens)."""
    with control_client() as client:
        models = client.request("GET", "/catalog", params={"vendor": vendor})["items"]
    if json:
        print_json(models)
        return
    table = Table(title="Model catalog (USD per 1M tokens)", header_style="bold")
    table.add_column("id", overflow="fold")  # ids are what people copy: wrap, never cut
    for column in ("vendor", "context", "input", "output", "cached", "since"):
        table.add_column(column, overflow="fold")
    for m in models:
        prices = m["prices"]
        table.add_row(
            m["id"],
            m["vendor"],
            str(m["context_window"]),
            prices["input"],
            prices["output"],
            prices["cached_input"] or "-",
            m["effective_date"],
        )
    console.print(table)
