"""`capstan providers|deployments|aliases …`, `capstan apply` and `capstan catalog`.

Like every command these go through the control API (in-process or remote). A provider key is
never an argument (argv shows in `ps` and shell history): either `--api-key-env VAR`, which
stores the reference `env:VAR` for the gateway to read, or `--api-key-stdin`, which reads the key
itself from stdin and has it stored encrypted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from capstan.cli.client import control_client
from capstan.cli.output import CliError, console, print_json, print_listing

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Limit = Annotated[int, typer.Option(min=1, max=500, help="Rows per page.")]
OptionPairs = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", metavar="KEY=VALUE", help="An option (repeatable)."),
]

providers = typer.Typer(help="Gateway providers: an endpoint and its key.", no_args_is_help=True)
deployments = typer.Typer(help="Deployments: a model on a provider.", no_args_is_help=True)
aliases = typer.Typer(help="Aliases: names clients call, routed over deployments.")
aliases.info.no_args_is_help = True


def _item(plural: str, name: str) -> str:
    return f"/{plural}/" + quote(name, safe="")


def _all(plural: str, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    with control_client() as client:
        while True:
            page = client.request("GET", f"/{plural}", params={"limit": limit, "cursor": cursor})
            rows.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return rows


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


def _created(kind: str, body: dict[str, Any], plural: str, as_json: bool) -> None:
    with control_client() as client:
        created = client.request("POST", f"/{plural}", json=body)
    if as_json:
        print_json(created)
    else:
        typer.echo(f"created {kind} {created['name']} ({created['id']})")


def _show(plural: str, name: str, as_json: bool) -> None:
    with control_client() as client:
        row = client.request("GET", _item(plural, name))
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        typer.echo(f"{key + ':':<20} {_text(value)}")


def _delete(kind: str, plural: str, name: str) -> None:
    with control_client() as client:
        client.request("DELETE", _item(plural, name))
    typer.echo(f"deleted {kind} {name}")


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


# -- providers -----------------------------------------------------------------------------------


def _read_key() -> str:
    if sys.stdin.isatty():
        key = str(typer.prompt("API key", hide_input=True, prompt_suffix=": "))
    else:
        key = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not key:
        raise CliError("--api-key-stdin: no key on stdin")
    return key


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
    api_key = f"env:{api_key_env}" if api_key_env else (_read_key() if api_key_stdin else None)
    given = {"name": name, "kind": kind, "base_url": base_url, "api_key": api_key}
    body: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if option:
        body["options"] = _options(option)
    _created("provider", body, "providers", json)


@providers.command("list")
def provider_list(json: JsonFlag = False, limit: Limit = 100) -> None:
    """List providers (keys show as env:NAME, secret:NAME or stored)."""
    columns = ["name", "kind", "effective_base_url", "api_key", "updated_at"]
    print_listing(_all("providers", limit), columns, as_json=json, title="Providers")


@providers.command("show")
def provider_show(name: str, json: JsonFlag = False) -> None:
    """Show one provider."""
    _show("providers", name, json)


@providers.command("delete")
def provider_delete(name: str) -> None:
    """Delete a provider no deployment uses (and the key stored for it)."""
    _delete("provider", "providers", name)


# -- deployments ---------------------------------------------------------------------------------


@deployments.command("create")
def deployment_create(
    name: str,
    provider: Annotated[str, typer.Option(help="Provider name.")],
    model: Annotated[str, typer.Option(help="The model id the provider expects.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the upstream.")] = 60.0,
    max_concurrency: Annotated[int | None, typer.Option(help="In-flight requests cap.")] = None,
    option: OptionPairs = None,
    json: JsonFlag = False,
) -> None:
    """Create a deployment: a model on a provider."""
    body: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "model": model,
        "timeout_s": timeout,
        "max_concurrency": max_concurrency,
    }
    if option:
        body["options"] = _options(option)
    _created("deployment", body, "deployments", json)


@deployments.command("list")
def deployment_list(json: JsonFlag = False, limit: Limit = 100) -> None:
    """List deployments."""
    columns = ["name", "provider", "model", "timeout_s", "max_concurrency"]
    print_listing(_all("deployments", limit), columns, as_json=json, title="Deployments")


@deployments.command("show")
def deployment_show(name: str, json: JsonFlag = False) -> None:
    """Show one deployment."""
    _show("deployments", name, json)


@deployments.command("delete")
def deployment_delete(name: str) -> None:
    """Delete a deployment no alias uses."""
    _delete("deployment", "deployments", name)


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
    json: JsonFlag = False,
) -> None:
    """Create an alias."""
    body = {
        "name": name,
        "strategy": strategy,
        "targets": [_target(t) for t in target],
        "fallbacks": fallback or [],
    }
    _created("alias", body, "aliases", json)


@aliases.command("list")
def alias_list(json: JsonFlag = False, limit: Limit = 100) -> None:
    """List aliases."""
    rows = _all("aliases", limit)
    if json:
        print_json(rows)
        return
    shown = [
        {
            **r,
            "targets": _text(r["targets"], brackets=False),
            "fallbacks": _text(r["fallbacks"], brackets=False),
        }
        for r in rows
    ]
    print_listing(
        shown, ["name", "strategy", "targets", "fallbacks"], as_json=False, title="Aliases"
    )


@aliases.command("show")
def alias_show(name: str, json: JsonFlag = False) -> None:
    """Show one alias."""
    _show("aliases", name, json)


@aliases.command("delete")
def alias_delete(name: str) -> None:
    """Delete an alias no other alias falls back to."""
    _delete("alias", "aliases", name)


# -- apply and catalog --------------------------------------------------------------------------


def plan_lines(result: dict[str, Any]) -> list[str]:
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
    for line in plan_lines(result):
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
