"""`capstan report spend`: the spend report from the command line, locally and remotely."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from capstan.cli import output
from capstan.events.store import insert_events
from tests.conftest import Capstan
from tests.finops.test_reports import Org, costs, make_org, spend
from tests.servers import RunningServer
from tests.test_cli import Cli

OCTOBER = datetime(2026, 10, 14, 9, 30, tzinfo=UTC)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.fixture
def org(capstan: Capstan) -> Org:
    org = make_org(capstan)
    insert_events(
        capstan.services.store,
        [
            spend(org, "scoring", at=OCTOBER, **costs(input=1_000_000, output=250_000)),
            spend(org, "intake", at=OCTOBER, **costs(output=12_500_000), cost_estimated=True),
        ],
    )
    return org


def test_spend_prints_a_table_row_per_group_and_the_total(
    cli: Cli, capstan: Capstan, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide enough that no cell wraps (Rich reads COLUMNS only when its console is created).
    monkeypatch.setattr(output.console, "width", 200)
    args = ("report", "spend", "--by", "department", "--period", "2026-10")
    code, out, err = cli.local(capstan)(*args)
    assert code == 0, err
    assert "Spend by department, 2026-10-01 to 2026-11-01" in out
    lines = out.splitlines()
    [claims] = [line.split() for line in lines if line.strip().startswith("claims")]
    [risk] = [line.split() for line in lines if line.strip().startswith("risk")]
    [total] = [line.split() for line in lines if line.strip().startswith("TOTAL")]
    assert (claims[4], claims[5]) == ("12.50", "1")  # cost, estimated calls
    assert risk[4] == "1.25"
    assert total[4] == "13.75"
    assert "forecast to the end of the period: 13.75 USD" in out


def test_spend_csv_is_the_chargeback_file(cli: Cli, capstan: Capstan, org: Org) -> None:
    args = ("report", "spend", "--by", "team", "--period", "2026-10", "--format", "csv")
    code, out, err = cli.local(capstan)(*args)
    assert code == 0, err
    lines = list(csv.DictReader(io.StringIO(out)))
    assert [(line["group"], line["label"], line["cost_usd"]) for line in lines] == [
        (str(org.triage), "triage", "12.50"),
        (str(org.credit), "credit", "1.25"),
        ("TOTAL", "", "13.75"),
    ]


def test_spend_json_is_the_same_locally_and_remotely(
    cli: Cli, capstan: Capstan, org: Org, server: RunningServer
) -> None:
    args = ("report", "spend", "--by", "model", "--period", "2026-10", "--format", "json")
    code, local, err = cli.local(capstan)(*args)
    assert code == 0, err
    code, remote, err = cli.remote(server, capstan.admin_key)(*args)
    assert code == 0, err
    assert json.loads(local) == json.loads(remote)
    assert json.loads(remote)["total"]["cost_micros"] == 13_750_000


@pytest.mark.parametrize(
    "argv",
    [
        ("--period", "last tuesday"),
        ("--period", "2026-13"),
        ("--by", "galaxy"),
        ("--format", "xlsx"),
    ],
)
def test_spend_with_bad_input_prints_one_line_and_fails(
    cli: Cli, capstan: Capstan, argv: tuple[str, ...]
) -> None:
    code, out, err = cli.local(capstan)("report", "spend", *argv)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {argv[0]}")
    assert "Traceback" not in err
