"""`capstan requests list|show`: the request log from the command line, locally and remotely."""

from __future__ import annotations

from datetime import timedelta

import pytest

from capstan.cli import output
from capstan.cli import requests as requests_cli
from tests.conftest import Capstan
from tests.events.test_requests_api import T0, Tree, event, insert, make_tree, newest_first
from tests.servers import RunningServer
from tests.test_cli import Cli


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.fixture
def tree(capstan: Capstan) -> Tree:
    return make_tree(capstan)


def test_list_prints_a_row_per_request(
    cli: Cli, capstan: Capstan, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide enough that no cell wraps (Rich reads COLUMNS only when its console is created).
    monkeypatch.setattr(output.console, "width", 200)
    failed = {"status": 429, "error_type": "rate_limited", "completion_tokens": None}
    insert(
        capstan,
        event(tree, T0, deployment="dep-a"),
        event(tree, T0 + timedelta(seconds=1), deployment="dep-b", prompt_tokens=7, **failed),
    )
    code, out, err = cli.local(capstan)("requests", "list")
    assert code == 0, err
    assert "dep-a" in out
    assert "dep-b" in out
    assert "7/-" in out
    assert "rate_limited" in out
    assert out.index("dep-b") < out.index("dep-a")


def test_list_json_is_every_request_newest_first(cli: Cli, capstan: Capstan, tree: Tree) -> None:
    events = [event(tree, T0 + timedelta(seconds=s)) for s in (2, 0, 1)]
    insert(capstan, *events)
    rows = cli.local(capstan).json("requests", "list")
    assert [r["id"] for r in rows] == newest_first(events)


def test_list_pages_through_the_api_up_to_the_limit(
    cli: Cli, capstan: Capstan, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests_cli, "PAGE_MAX", 3)
    events = [event(tree, T0 + timedelta(seconds=s)) for s in range(10)]
    insert(capstan, *events)
    rows = cli.local(capstan).json("requests", "list", "--limit", "8")
    assert [r["id"] for r in rows] == newest_first(events)[:8]


def test_list_errors_shows_only_failed_requests(cli: Cli, capstan: Capstan, tree: Tree) -> None:
    insert(capstan, event(tree, T0))
    [failed] = insert(capstan, event(tree, T0, status=504, error_type="timeout"))
    rows = cli.local(capstan).json("requests", "list", "--errors")
    assert [r["id"] for r in rows] == [failed]


def test_list_project_accepts_a_name(cli: Cli, capstan: Capstan, tree: Tree) -> None:
    insert(capstan, event(tree, T0))
    [fraud] = insert(capstan, event(tree, T0, project_id=tree.fraud_id))
    rows = cli.local(capstan).json("requests", "list", "--project", "fraud")
    assert [r["id"] for r in rows] == [fraud]


def test_list_filters_by_tag_and_time(cli: Cli, capstan: Capstan, tree: Tree) -> None:
    insert(capstan, event(tree, T0, tags={"env": "prod"}))
    [late] = insert(capstan, event(tree, T0 + timedelta(hours=1), tags={"env": "prod"}))
    insert(capstan, event(tree, T0 + timedelta(hours=2), tags={"env": "dev"}))
    since = (T0 + timedelta(minutes=30)).isoformat()
    rows = cli.local(capstan).json("requests", "list", "--tag", "env=prod", "--since", since)
    assert [r["id"] for r in rows] == [late]


@pytest.mark.parametrize(
    "argv",
    [
        ("--since", "last tuesday"),
        ("--until", "2026-13-45"),
        ("--tag", "env"),
        ("--project", "nowhere"),
    ],
)
def test_list_with_bad_input_prints_one_line_and_fails(
    cli: Cli, capstan: Capstan, argv: tuple[str, ...]
) -> None:
    code, out, err = cli.local(capstan)("requests", "list", *argv)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {argv[0]}")


def test_show_prints_every_field(cli: Cli, capstan: Capstan, tree: Tree) -> None:
    [request_id] = insert(capstan, event(tree, T0, tags={"env": "prod"}))
    code, out, err = cli.local(capstan)("requests", "show", request_id)
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.splitlines())
    assert fields["id"].strip() == request_id
    assert fields["tags"].strip() == '{"env":"prod"}'
    assert {"model", "deployment", "status", "latency_ms", "payload", "attempts"} <= set(fields)


def test_show_json_matches_the_listing(cli: Cli, capstan: Capstan, tree: Tree) -> None:
    [request_id] = insert(capstan, event(tree, T0))
    shown = cli.local(capstan).json("requests", "show", request_id)
    assert [shown] == cli.json("requests", "list")


# A fixed id: xdist workers must collect the same parameters.
@pytest.mark.parametrize("request_id", ["01a21475-77e1-70c4-a24b-3b6bf69ae846", "not-an-id"])
def test_show_of_an_unknown_id_prints_one_line_and_fails(
    cli: Cli, capstan: Capstan, request_id: str
) -> None:
    code, out, err = cli.local(capstan)("requests", "show", request_id)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert request_id in err


def test_a_project_key_lists_only_its_project_remotely(
    cli: Cli, capstan: Capstan, tree: Tree, server: RunningServer
) -> None:
    [own] = insert(capstan, event(tree, T0))
    insert(capstan, event(tree, T0, project_id=tree.fraud_id))
    key = cli.local(capstan).json("keys", "create", "--role", "developer", "--project", "scoring")
    rows = cli.remote(server, key["key"]).json("requests", "list")
    assert [r["id"] for r in rows] == [own]
