"""`capstan recommend`: where the organization could spend less (cheaper models, prompt caching,
unused keys and deployments) and budgets that will run out before their period ends.

Through the control API like every command, so what a key is told is the server's decision.
The window and the kinds are checked here first only to name the option that is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from capstan.cli.client import control_client
from capstan.cli.output import CliError, console, print_json
from capstan.cli.resources import JsonFlag
from capstan.finops.recommendations import DEFAULT_DAYS, KINDS, MAX_DAYS, parse_kinds

# The scope's names, in the order they read best; ids stay in the JSON.
_SCOPE_NAMES = ("project", "alias", "model", "key", "deployment", "budget")


def _scope(scope: dict[str, Any]) -> str:
    return ", ".join(f"{name} {scope[name]}" for name in _SCOPE_NAMES if scope.get(name))


def _print_table(answer: dict[str, Any]) -> None:
    window = answer["window"]
    found = answer["recommendations"]
    table = Table(
        title=f"Recommendations from the last {window['days']} days",
        caption=None if found else "nothing to recommend",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    savings = [row["monthly_saving_usd"] or "" for row in found]
    table.add_column("kind", no_wrap=True)
    table.add_column("scope", overflow="fold")
    width = max((len(cell) for cell in savings), default=0)
    table.add_column("USD/month", justify="right", no_wrap=True, min_width=width)
    table.add_column("recommendation", overflow="fold", ratio=1)
    for row, saving in zip(found, savings, strict=True):
        table.add_row(row["kind"], _scope(row["scope"]), saving, row["summary"])
    console.print(table)


def recommend(
    days: Annotated[
        int, typer.Option(help=f"The lookback window in days (1 to {MAX_DAYS}).")
    ] = DEFAULT_DAYS,
    kind: Annotated[
        str | None,
        typer.Option(help=f"Only these kinds (comma-separated): {', '.join(KINDS)}."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Cheaper models, prompt caching, unused keys and deployments, budgets about to run out."""
    if not 1 <= days <= MAX_DAYS:
        raise CliError(f"--days: the window is 1 to {MAX_DAYS} days, not {days}")
    try:
        parse_kinds(kind)
    except ValueError as exc:
        raise CliError(f"--kind: {exc}") from exc
    params: dict[str, Any] = {"days": days}
    if kind:
        params["kind"] = kind
    with control_client() as client:
        answer = client.request("GET", "/recommendations", params=params)
    if as_json:
        print_json(answer)
    else:
        _print_table(answer)
