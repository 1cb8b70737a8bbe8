"""`capstan ratelimits create|list|show|delete`: requests, tokens and USD per minute or day,
through the control API like every command."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from capstan.cli.client import control_client
from capstan.cli.output import print_listing
from capstan.cli.resources import JsonFlag, create, delete, item_path, show

app = typer.Typer(
    help="Rate limits: requests, tokens and USD per minute or day per key, project, team, "
    "department or model."
)
app.info.no_args_is_help = True
COLUMNS = ("name", "scope", "model", "period", "requests", "tokens", "limit_usd", "used")


def _row(row: dict[str, Any]) -> dict[str, Any]:
    """`used` reads `requests 3/60, tokens 420/10000` for the current window."""
    used = ", ".join(
        f"{metric} {usage['used']}+{usage['reserved']}/{usage['limit']}"
        if usage["reserved"] not in ("0", "0.00")
        else f"{metric} {usage['used']}/{usage['limit']}"
        for metric, usage in row.get("window", {}).items()
    )
    return {**row, "used": used or "-"}


@app.command("create")
def create_rate_limit(
    name: Annotated[str, typer.Argument(help="A name for the rate limit.")],
    scope: Annotated[
        str, typer.Option(help="key:ID, project:NAME, team:NAME, department:NAME or model:NAME.")
    ],
    period: Annotated[str, typer.Option(help="minute or day.")] = "minute",
    requests: Annotated[int | None, typer.Option(help="Requests per period.")] = None,
    tokens: Annotated[int | None, typer.Option(help="Tokens (in + out) per period.")] = None,
    limit_usd: Annotated[
        str | None, typer.Option("--limit-usd", help="US dollars per period.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Count only the scope's calls to this model (alias or model name)."),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Create a rate limit; every gateway enforces it within a second."""
    body = {
        "name": name,
        "scope": scope,
        "period": period,
        "requests": requests,
        "tokens": tokens,
        "limit_usd": limit_usd,
        "model": model,
    }
    create("/rate-limits", body, json, "rate limit")


@app.command("list")
def list_rate_limits(json: JsonFlag = False) -> None:
    """Rate limits with what the current window holds."""
    with control_client() as client:
        rows = [_row(row) for row in client.request("GET", "/rate-limits")]
    print_listing(rows, COLUMNS, as_json=json, title="Rate limits")


@app.command("show")
def show_rate_limit(
    ref: Annotated[str, typer.Argument(metavar="NAME|ID")], json: JsonFlag = False
) -> None:
    """Every field of one rate limit, what the current window holds in `used`."""
    show(
        "/rate-limits", ref, json, lambda row: {k: v for k, v in _row(row).items() if k != "window"}
    )


@app.command("delete")
def delete_rate_limit(ref: Annotated[str, typer.Argument(metavar="NAME|ID")]) -> None:
    """Remove a rate limit (audited)."""
    delete(item_path("/rate-limits", ref), "rate limit", ref)
