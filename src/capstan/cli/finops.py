"""`capstan budgets create|list|show|delete` and `capstan prices list|set`, through the control
API like every command, so roles and validation are the server's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from capstan.cli.client import control_client
from capstan.cli.output import CliError, print_json, print_listing
from capstan.cli.resources import JsonFlag, create, delete, item_path, show
from capstan.clock import as_utc

budgets = typer.Typer(
    help="Budgets: spending limits per scope and period, enforced by the gateway."
)
budgets.info.no_args_is_help = True
prices = typer.Typer(help="Prices: the catalog's list prices and the organization's overrides.")
prices.info.no_args_is_help = True
pauses = typer.Typer(help="Paused keys, projects, teams and departments.")
pauses.info.no_args_is_help = True

BUDGET_COLUMNS = (
    "name",
    "scope",
    "period",
    "limit_usd",
    "spent_usd",
    "reserved_usd",
    "action",
    "pause_at",
)
PRICE_COLUMNS = ("target_kind", "target", "source", "since", "input", "output", "cached_input")


def _thresholds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise CliError(
            f"--thresholds: {text!r} is not a list of percentages like 50,80,100"
        ) from exc


def _budget_row(row: dict[str, Any]) -> dict[str, Any]:
    scope = row["scope_kind"]
    if row["tag"]:
        scope = f"tag:{row['tag']}"
    elif row["scope_id"] and scope != "org":
        scope = f"{scope}:{row['scope_id']}"
    return {**row, "scope": scope}


@budgets.command("create")
def create_budget(
    name: Annotated[str, typer.Argument(help="A name for the budget.")],
    scope: Annotated[
        str,
        typer.Option(
            help="org, department:NAME, team:NAME, project:NAME, key:ID, user:ID|EMAIL or "
            "tag:KEY=VALUE."
        ),
    ],
    limit_usd: Annotated[str, typer.Option("--limit-usd", help="The limit in US dollars.")],
    period: Annotated[str, typer.Option(help="daily, weekly, monthly or total.")] = "monthly",
    action: Annotated[
        str, typer.Option(help="At the limit: block, alert-only or downgrade.")
    ] = "block",
    downgrade_to: Annotated[
        str | None, typer.Option("--downgrade-to", help="The cheaper alias (downgrade).")
    ] = None,
    thresholds: Annotated[
        str | None, typer.Option(help="Alert percentages, e.g. 50,80,100 (the default).")
    ] = None,
    pause_at: Annotated[
        int | None,
        typer.Option(
            "--pause-at",
            help="Pause the scope (a key, project, team or department) when spend reaches this "
            "percentage of the limit, e.g. 100; `capstan resume` lifts it.",
        ),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Create a budget; every gateway enforces it within a second."""
    body = {
        "name": name,
        "scope": scope,
        "period": period,
        "limit_usd": limit_usd,
        "action": action,
        "downgrade_to": downgrade_to,
        "thresholds": _thresholds(thresholds),
        "pause_at": pause_at,
    }
    create("/budgets", body, json, "budget")


@budgets.command("list")
def list_budgets(json: JsonFlag = False) -> None:
    """Budgets with their limit, and what is spent and reserved in the current period."""
    with control_client() as client:
        rows = [_budget_row(row) for row in client.request("GET", "/budgets")]
    print_listing(rows, BUDGET_COLUMNS, as_json=json, title="Budgets")


@budgets.command("show")
def show_budget(
    ref: Annotated[str, typer.Argument(metavar="NAME|ID")], json: JsonFlag = False
) -> None:
    """Every field of one budget."""
    show("/budgets", ref, json, _budget_row)


@budgets.command("delete")
def delete_budget(ref: Annotated[str, typer.Argument(metavar="NAME|ID")]) -> None:
    """Remove a budget (audited); spending it counted stays in the request log."""
    delete(item_path("/budgets", ref), "budget", ref)


@prices.command("list")
def list_prices(
    target: Annotated[
        str | None, typer.Option(help="Only prices whose model or deployment contains this.")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="The prices in force at this ISO date or time (UTC).")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """The price of every model and deployment, USD per million tokens."""
    params: dict[str, Any] = {}
    if at is not None:
        params["at"] = _moment("--at", at)
    with control_client() as client:
        rows = client.request("GET", "/prices", params=params)
    if target:
        rows = [row for row in rows if target.lower() in row["target"].lower()]
    flat = [{**row, **row["prices"], "since": row["effective_from"][:10]} for row in rows]
    print_listing(flat if not json else rows, PRICE_COLUMNS, as_json=json, title="Prices")


@prices.command("set")
def set_price(
    target: Annotated[str, typer.Argument(help="The model id or the deployment name.")],
    input_usd: Annotated[str, typer.Option("--input", help="USD per million input tokens.")],
    output_usd: Annotated[str, typer.Option("--output", help="USD per million output tokens.")],
    deployment: Annotated[
        bool, typer.Option("--deployment", help="TARGET is a deployment, not a model.")
    ] = False,
    cached_input: Annotated[
        str | None, typer.Option("--cached-input", help="USD per million cache-read tokens.")
    ] = None,
    cache_write: Annotated[
        str | None, typer.Option("--cache-write", help="USD per million cache-write tokens.")
    ] = None,
    reasoning: Annotated[str | None, typer.Option(help="USD per million reasoning tokens.")] = None,
    effective_from: Annotated[
        str | None, typer.Option("--from", help="When it takes effect (ISO, UTC); now.")
    ] = None,
    note: Annotated[str | None, typer.Option(help="Why (a contract, a discount).")] = None,
    json: JsonFlag = False,
) -> None:
    """Set a negotiated price; calls from its effective time on are charged at it."""
    rates = {
        "input": input_usd,
        "output": output_usd,
        "cached_input": cached_input,
        "cache_write": cache_write,
        "reasoning": reasoning,
    }
    body = {
        "target_kind": "deployment" if deployment else "model",
        "target": target,
        "prices": {k: v for k, v in rates.items() if v is not None},
        "effective_from": _moment("--from", effective_from) if effective_from else None,
        "note": note,
    }
    with control_client() as client:
        created = client.request("POST", "/prices", json=body)
    if json:
        print_json(created)
    else:
        typer.echo(
            f"price for {created['target_kind']} {created['target']} from "
            f"{created['effective_from']}: input {created['prices']['input']}, "
            f"output {created['prices']['output']} USD per million tokens"
        )


@prices.command("recompute")
def recompute(
    since: Annotated[str, typer.Option(help="Re-price calls from this ISO date or time (UTC) on.")],
    json: JsonFlag = False,
) -> None:
    """Re-price past calls at the prices on record for their time (after a late price)."""
    with control_client() as client:
        done = client.request(
            "POST", "/prices/recompute", json={"since": _moment("--since", since)}
        )
    if json:
        print_json(done)
    else:
        typer.echo(
            f"re-priced {done['changed']} of {done['examined']} calls since {done['since']}: "
            f"{done['delta_usd']} USD difference"
        )


def _moment(option: str, text: str) -> str:
    try:
        return as_utc(datetime.fromisoformat(text)).isoformat()
    except ValueError as exc:
        raise CliError(f"{option}: {text!r} is not an ISO date or time") from exc


Scope = Annotated[
    str, typer.Argument(metavar="SCOPE", help="key:ID, project:NAME, team:NAME or department:NAME.")
]


def pause(
    scope: Scope,
    reason: Annotated[str, typer.Option(help="Why; every refused call is told.")],
    json: JsonFlag = False,
) -> None:
    """Stop a scope's model calls until `capstan resume`."""
    with control_client() as client:
        row = client.request("POST", "/pauses", json={"scope": scope, "reason": reason})
    if json:
        print_json(row)
    else:
        typer.echo(f"paused {row['scope_label']}: {row['reason']}")


def resume(scope: Scope, json: JsonFlag = False) -> None:
    """Let a paused scope call models again."""
    with control_client() as client:
        row = client.request("POST", "/pauses/resume", json={"scope": scope})
    if json:
        print_json(row)
    else:
        typer.echo(f"resumed {row['scope_label']} (paused since {row['paused_at']})")


@pauses.command("list")
def list_pauses(
    all_: Annotated[bool, typer.Option("--all", help="Resumed pauses too.")] = False,
    json: JsonFlag = False,
) -> None:
    """Scopes paused now (or ever, with --all)."""
    with control_client() as client:
        rows = client.request("GET", "/pauses", params={"include_resumed": all_})
    print_listing(
        rows,
        ("scope_label", "reason", "paused_by", "paused_at", "resumed_at"),
        as_json=json,
        title="Pauses",
    )
