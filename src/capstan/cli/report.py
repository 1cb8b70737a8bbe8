"""`capstan report spend`: spend by department, team, project, key, user, model, provider,
deployment or tag, as a table, a chargeback CSV or JSON.

Through the control API like every command, so what a key may see is the server's decision and
the numbers are the server's sums. The grouping and the period are checked here first only to
name the option that is wrong; the server checks them again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer
from rich import box
from rich.table import Table

from capstan.cli.client import control_client
from capstan.cli.output import CliError, console, print_json
from capstan.clock import utcnow
from capstan.finops.reports import Grouping, parse_period

Row = dict[str, Any]
Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")

app = typer.Typer(help="Reports: spend by department, team, project, key, user, model or tag.")
app.info.no_args_is_help = True
_NUMBERS = (
    ("requests", "requests"),
    ("tokens in", "prompt_tokens"),
    ("tokens out", "completion_tokens"),
    ("cost USD", "cost_usd"),
    ("estimated", "estimated_calls"),
    ("unpriced", "unpriced_calls"),
)


def _check(by: str, period: str, output: str) -> None:
    try:
        Grouping.parse(by)
    except ValueError as exc:
        raise CliError(f"--by: {exc}") from exc
    try:
        parse_period(period, utcnow())
    except ValueError as exc:
        raise CliError(f"--period: {exc}") from exc
    if output not in FORMATS:
        raise CliError(f"--format: {output!r} is not one of {', '.join(FORMATS)}")


def _print_table(report: Row) -> None:
    """Amounts are never cut or wrapped (each numeric column is as wide as its longest value);
    names fold instead, so the table still reads at 80 characters. The buckets are in the CSV
    and the JSON."""
    start, end = report["period"]["start"][:10], report["period"]["end"][:10]
    table = Table(
        title=f"Spend by {report['by']}, {start} to {end} (end excluded)",
        caption=f"forecast to the end of the period: {report['forecast_usd']} USD",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_footer=True,
    )
    total, rows = report["total"], report["rows"]
    table.add_column(report["by"], footer="TOTAL", overflow="fold")
    for header, field in _NUMBERS:
        cells = [str(row[field]) for row in (*rows, total)]
        width = max(len(cell) for cell in cells)
        table.add_column(header, footer=cells[-1], justify="right", no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(row["label"], *(str(row[field]) for _, field in _NUMBERS))
    console.print(table)


@app.command("spend")
def spend(
    by: Annotated[
        str,
        typer.Option(
            help="department, team, project, key, user, model, provider, deployment or tag:NAME."
        ),
    ] = "department",
    period: Annotated[
        str,
        typer.Option(
            help="2026 (a year), 2026-11 (a month), 2026-11-25 (a day), 2026-W48 (an ISO "
            "week) or current (this month); UTC."
        ),
    ] = "current",
    output: Annotated[
        str, typer.Option("--format", help="table, csv (chargeback) or json.")
    ] = "table",
) -> None:
    """Spend in a period by one allocation dimension, with the total and a forecast."""
    _check(by, period, output)
    params = {"by": by, "period": period}
    with control_client() as client:
        if output == "csv":
            text = "".join(client.stream("/reports/spend", params={**params, "format": "csv"}))
            typer.echo(text, nl=False)
            return
        report = client.request("GET", "/reports/spend", params=params)
    if output == "json":
        print_json(report)
    else:
        _print_table(report)
