"""`capstan prompts experiment start|status|stop|list`: A/B tests between versions of a prompt,
on real traffic, through the control API like every command."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from capstan.cli.client import control_client
from capstan.cli.output import CliError, console, print_json, print_listing
from capstan.cli.prompts import Row, cell, parse_version, rich_table, short_time
from capstan.cli.resources import JsonFlag, item_path

app = typer.Typer(help="A/B tests between versions of a prompt, on real traffic.")
app.info.no_args_is_help = True
EXPERIMENT_COLUMNS = (
    "name",
    "prompt",
    "label",
    "variants",
    "sticky_by",
    "status",
    "promoted",
    "created_at",
)


def _variant(text: str) -> dict[str, int]:
    """`2=50` → version 2, weight 50; `2` → weight 1."""
    version, sep, weight = text.partition("=")
    try:
        parsed = {"version": parse_version(version.strip(), "--variant")}
        if sep:
            parsed["weight"] = int(weight)
    except (CliError, ValueError) as exc:
        raise CliError(f"--variant: {text!r} is not VERSION[=WEIGHT], like 2=50") from exc
    return parsed


def _variants(variants: list[dict[str, int]]) -> str:
    """`v1=50, v2=50`."""
    return ", ".join(f"v{v['version']}={v.get('weight', 1)}" for v in variants)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _counted(value: float | None, count: int, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}} ({count})"


def _print_status(answer: dict[str, Any]) -> None:
    typer.echo(
        f"experiment {answer['name']} on {answer['prompt']}@{answer['label']}: {answer['status']}"
        f", variants {_variants(answer['variants'])}, min samples {answer['min_samples']}"
    )
    summaries = rich_table("Variants")
    for column in ("version", "requests", "errors", "p50 ms", "p95 ms", "cost USD"):
        summaries.add_column(column, justify="right")
    for column in ("tokens", "score (n)", "positive (n)"):
        summaries.add_column(column, justify="right")
    for s in answer["summaries"]:
        cost = s["cost_mean_micros"]
        summaries.add_row(
            f"v{s['version']}",
            str(s["requests"]),
            str(s["errors"]),
            _number(s["latency_p50_ms"], ".1f"),
            _number(s["latency_p95_ms"], ".1f"),
            _number(None if cost is None else cost / 1_000_000, ".6f"),
            _number(s["tokens_mean"], ".1f"),
            _counted(s["score_mean"], s["score_count"], ".3g"),
            _counted(s["positive_rate"], s["feedback_count"], ".1%"),
        )
    console.print(summaries)
    if answer["comparisons"]:
        comparisons = rich_table("Comparisons with the control")
        for column in ("metric", "variants", "test", "p-value", "better", "significant"):
            comparisons.add_column(column, no_wrap=True)
        comparisons.add_column("note", overflow="fold")
        for c in answer["comparisons"]:
            comparisons.add_row(
                c["metric"],
                f"v{c['challenger']} vs v{c['control']}",
                c["test"],
                _number(c["p_value"], ".3g"),
                "-" if c["better"] is None else f"v{c['better']}",
                "yes" if c["significant"] else "no",
                cell(c["note"] or None),
            )
        console.print(comparisons)
    if answer["winner"] is not None:
        typer.echo(f"winner: v{answer['winner']} — {answer['reason']}")
    else:
        typer.echo(f"no winner yet — {answer['reason']}")


@app.command("start")
def experiment_start(
    name: Annotated[str, typer.Argument(help="A name for the experiment.")],
    prompt: Annotated[str, typer.Option(help="The prompt whose versions are compared.")],
    variant: Annotated[
        list[str],
        typer.Option(
            metavar="VERSION[=WEIGHT]",
            help="A version and its share of traffic (repeatable; the first is the control).",
        ),
    ],
    label: Annotated[str, typer.Option(help="The label whose traffic is split.")] = "production",
    sticky_by: Annotated[
        str, typer.Option(help="user, key or header:NAME: who always gets the same variant.")
    ] = "user",
    min_samples: Annotated[
        int | None, typer.Option(min=1, help="Requests per variant before anything is called.")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Start splitting a label's traffic between versions of a prompt."""
    body: Row = {
        "name": name,
        "prompt": prompt,
        "label": label,
        "variants": [_variant(v) for v in variant],
        "sticky_by": sticky_by,
    }
    if min_samples is not None:
        body["min_samples"] = min_samples
    with control_client() as client:
        started = client.request("POST", "/experiments", json=body)
    if json:
        print_json(started)
        return
    typer.echo(
        f"started experiment {started['name']} on {started['prompt']}@{started['label']}: "
        f"{_variants(started['variants'])}, sticky by {started['sticky_by']}"
    )


@app.command("status")
def experiment_status(
    name: Annotated[str, typer.Argument(metavar="NAME|ID")], json: JsonFlag = False
) -> None:
    """Per variant: requests, errors, latency, cost, tokens, feedback; the tests; the winner."""
    with control_client() as client:
        answer = client.request("GET", item_path("/experiments", name))
    if json:
        print_json(answer)
    else:
        _print_status(answer)


@app.command("stop")
def experiment_stop(
    name: Annotated[str, typer.Argument(metavar="NAME|ID")],
    promote: Annotated[
        str | None,
        typer.Option(metavar="VERSION", help="Move the experiment's label to this variant."),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Stop an experiment; with --promote, its label moves to that version."""
    body = {"promote": None if promote is None else parse_version(promote, "--promote")}
    with control_client() as client:
        stopped = client.request("POST", item_path("/experiments", name) + "/stop", json=body)
    if json:
        print_json(stopped)
        return
    line = f"stopped experiment {stopped['name']}"
    if stopped["promoted_version"] is not None:
        line += f"; {stopped['prompt']}: {stopped['label']} → v{stopped['promoted_version']}"
    typer.echo(line)


@app.command("list")
def experiment_list(json: JsonFlag = False) -> None:
    """List experiments, newest first."""
    with control_client() as client:
        rows = client.request("GET", "/experiments")
    if not json:
        rows = [
            {
                **row,
                "name": escape(row["name"]),
                "variants": _variants(row["variants"]),
                "created_at": short_time(row["created_at"]),
                "promoted": "-"
                if row["promoted_version"] is None
                else f"v{row['promoted_version']}",
            }
            for row in rows
        ]
    print_listing(rows, EXPERIMENT_COLUMNS, as_json=json, title="Experiments")
