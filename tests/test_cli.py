"""The `capstan` CLI: same results locally and against a server, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from capstan.cli.main import run
from tests.conftest import TEST_MASTER_KEY, Capstan
from tests.servers import RunningServer

CAPSTAN = str(Path(sys.executable).parent / "capstan")


class Cli:
    """Runs the CLI in-process, against the local store or, with `remote()`, a server."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def local(self, capstan: Capstan) -> Cli:
        self.monkeypatch.delenv("CAPSTAN_URL", raising=False)
        self.monkeypatch.delenv("CAPSTAN_API_KEY", raising=False)
        self.monkeypatch.setenv("CAPSTAN_HOME", str(capstan.settings.home))
        self.monkeypatch.setenv("CAPSTAN_DATABASE_URL", capstan.settings.resolved_database_url)
        self.monkeypatch.setenv("CAPSTAN_MASTER_KEY", TEST_MASTER_KEY)
        return self

    def remote(self, server: RunningServer, key: str) -> Cli:
        self.monkeypatch.setenv("CAPSTAN_URL", server.url)
        self.monkeypatch.setenv("CAPSTAN_API_KEY", key)
        return self

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = run(list(argv))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_init_json_prints_the_admin_key_once(
    cli: Cli, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSTAN_HOME", str(settings.home))
    monkeypatch.setenv("CAPSTAN_DATABASE_URL", settings.resolved_database_url)
    first = cli.json("init")
    second = cli.json("init")
    assert first["admin_key"].startswith("cap_")
    assert second["admin_key"] is None


def test_local_and_remote_listings_are_the_same(
    cli: Cli, capstan: Capstan, server: RunningServer
) -> None:
    cli.local(capstan)
    assert cli("departments", "create", "risk")[0] == 0
    assert cli("teams", "create", "credit", "--department", "risk")[0] == 0
    local = [cli.json(group, "list") for group in ("departments", "teams", "keys")]
    cli.remote(server, capstan.admin_key)
    remote = [cli.json(group, "list") for group in ("departments", "teams", "keys")]
    assert local == remote
    assert [d["name"] for d in remote[0]] == ["risk"]


def test_a_created_key_is_printed_once_and_works(
    cli: Cli, capstan: Capstan, server: RunningServer
) -> None:
    cli.local(capstan)
    cli("departments", "create", "risk")
    created = cli.json("keys", "create", "--role", "admin", "--department", "risk")
    assert set(created) == {"id", "key"}
    cli.remote(server, created["key"])
    assert [d["name"] for d in cli.json("departments", "list")] == ["risk"]
    listed = cli.json("keys", "list")
    assert created["key"] not in json.dumps(listed)


def test_keys_revoke_and_rotate(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)
    first = cli.json("keys", "create", "--role", "service")
    rotated = cli.json("keys", "rotate", first["id"])
    revoked = cli.json("keys", "revoke", rotated["id"])
    assert revoked["revoked_at"] is not None
    active = {k["id"] for k in cli.json("keys", "list")}
    assert first["id"] not in active
    assert rotated["id"] not in active


def test_audit_verify_passes_on_an_untouched_chain(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)
    code, out, _ = cli("audit", "verify")
    assert code == 0
    assert out.startswith("audit chain ok")


def test_audit_verify_exits_1_naming_the_tampered_seq(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)
    for name in ("a", "b", "c"):
        cli("departments", "create", name)
    with capstan.services.store.write() as session:
        session.execute(text("UPDATE audit_log SET action = 'nothing.happened' WHERE seq = 3"))
    code, _, err = cli("audit", "verify")
    assert code == 1
    assert err.strip().splitlines() == [
        "error: audit chain broken at seq 3: hash does not match the entry's contents"
    ]


def test_audit_log_filters_and_export_formats(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)
    cli("departments", "create", "risk")
    entries = cli.json("audit", "log", "--resource", "departments")
    assert [e["action"] for e in entries] == ["department.create"]
    code, jsonl, _ = cli("audit", "export", "--format", "jsonl")
    assert code == 0
    every = cli.json("audit", "log", "--limit", "1000")
    assert [json.loads(line)["seq"] for line in jsonl.splitlines()] == [e["seq"] for e in every]
    code, csv_text, _ = cli("audit", "export", "--format", "csv", "--since", "2000-01-01")
    assert csv_text.splitlines()[0].startswith("seq,time,actor")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["keys", "create"], "--role"),
        (["keys", "create", "--role", "wizard"], "body.role"),
        (["teams", "create", "t", "--department", "nowhere"], "no department 'nowhere'"),
        (["keys", "create", "--role", "service", "--expires", "someday"], "--expires"),
        (["audit", "export", "--format", "xml"], "--format"),
        (["departments", "create", "x" * 101], "body.name"),
    ],
)
def test_bad_arguments_print_one_line_and_exit_non_zero(
    cli: Cli, capstan: Capstan, argv: list[str], needle: str
) -> None:
    cli.local(capstan)
    code, _, err = cli(*argv)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert needle in lines[0]


def test_a_cli_without_a_home_says_to_run_init_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTAN_")}
    env["CAPSTAN_HOME"] = str(tmp_path / "nowhere")
    result = subprocess.run(
        [CAPSTAN, "departments", "list"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: no Capstan home at {tmp_path / 'nowhere'}: run `capstan init` first"
    ]


def test_an_unreachable_server_is_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTAN_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CAPSTAN_API_KEY", "cap_x")
    code, _, err = cli("departments", "list")
    assert code == 1
    assert err.startswith("error: cannot reach Capstan at http://127.0.0.1:9")
