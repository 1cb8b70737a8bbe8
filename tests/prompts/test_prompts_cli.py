"""`capstan prompts …`: push, list, show, history, diff, labels, rollback, render and
experiments from the command line, against a real installation, locally and remotely."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.cli import output
from capstan.cli.output import CliError
from capstan.cli.prompt_experiments import _variant
from capstan.cli.prompts import _split_ref, _var
from capstan.clock import utcnow
from capstan.events.store import insert_events
from tests.conftest import Capstan
from tests.events.eventdata import make_event
from tests.servers import RunningServer
from tests.test_cli import Cli

SYSTEM = "You answer questions about {{ product }} for {{ tier }} customers."
PROMPT: dict[str, Any] = {
    "name": "support-reply",
    "model": "chat-default",
    "params": {"temperature": 0.2, "max_tokens": 400},
    "variables": {"product": "string", "tier": {"type": "string", "enum": ["free", "pro"]}},
    "messages": [{"role": "system", "content": SYSTEM}],
}
CHANGED = "You answer questions about {{ product }} for {{ tier }} customers, briefly."


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, capstan: Capstan
) -> Cli:
    # Wide enough that no cell wraps (Rich reads COLUMNS only when its console is created).
    monkeypatch.setattr(output.console, "width", 200)
    return Cli(capsys, monkeypatch).local(capstan)


def write(path: Path, content: str = SYSTEM, **fields: Any) -> Path:
    document = {**PROMPT, "messages": [{"role": "system", "content": content}], **fields}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def ok(cli: Cli, *argv: str) -> str:
    code, out, err = cli(*argv)
    assert code == 0, err
    return out


def fails(cli: Cli, *argv: str) -> str:
    """The one line a failure prints: non-zero exit, nothing on stdout, no traceback."""
    code, out, err = cli(*argv)
    assert code != 0
    assert out == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture
def two_versions(cli: Cli, tmp_path: Path) -> Path:
    """support-reply v1 and v2 (v2 says `briefly`), production on v1."""
    file = write(tmp_path / "support-reply.yaml")
    ok(cli, "prompts", "push", str(file), "-m", "initial")
    ok(cli, "prompts", "push", str(write(file, CHANGED)), "--message", "shorter answers")
    ok(cli, "prompts", "label", "support-reply", "production", "1")
    return file


# -- push ----------------------------------------------------------------------------------


def test_push_creates_a_version_only_when_the_content_changes(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path / "support-reply.yaml")
    assert ok(cli, "prompts", "push", str(file)).strip() == "created support-reply v1"
    again = ok(cli, "prompts", "push", str(file), "-m", "another message")
    assert again.strip() == "unchanged support-reply v1 (content identical)"
    [listed] = cli.json("prompts", "list")
    assert listed["latest_version"] == 1
    pushed = cli.json("prompts", "push", str(write(file, CHANGED)), "--message", "briefly")
    assert (pushed["version"], pushed["created"], pushed["message"]) == (2, True, "briefly")
    assert [v["version"] for v in cli.json("prompts", "history", "support-reply")["versions"]] == [
        2,
        1,
    ]


def test_push_of_a_missing_or_broken_file_is_one_line(cli: Cli, tmp_path: Path) -> None:
    missing = fails(cli, "prompts", "push", str(tmp_path / "nope.yaml"))
    assert missing.startswith("error: cannot read")
    assert "nope.yaml" in missing
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: support-reply\nmessages: [\n  - role: system\n", encoding="utf-8")
    assert "is not valid YAML at line" in fails(cli, "prompts", "push", str(broken))
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    assert "a prompt file is a mapping" in fails(cli, "prompts", "push", str(listing))


def test_push_refused_by_the_server_names_the_problem(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path / "typo.yaml", params={"temprature": 0.2})
    error = fails(cli, "prompts", "push", str(file))
    assert "unknown model parameter 'temprature'" in error
    assert error.endswith("(HTTP 422)")


# -- reading -------------------------------------------------------------------------------


def test_list_shows_the_newest_version_and_labels(cli: Cli, two_versions: Path) -> None:
    ok(cli, "prompts", "label", "support-reply", "staging", "v2")
    out = ok(cli, "prompts", "list")
    [row] = [line for line in out.splitlines() if "support-reply" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["support-reply", "2", "production=1, staging=2", ""]


def test_show_by_version_label_and_newest(cli: Cli, two_versions: Path) -> None:
    out = ok(cli, "prompts", "show", "support-reply@1")
    fields = dict(line.split(":", 1) for line in out.split("\n\n")[0].splitlines())
    assert fields["version"].strip() == "1"
    assert fields["labels"].strip() == "production"
    assert fields["model"].strip() == "chat-default"
    assert json.loads(fields["params"]) == {"temperature": 0.2, "max_tokens": 400}
    assert fields["message"].strip() == "initial"
    assert fields["author"].strip().startswith("local:")
    assert len(fields["content_hash"].strip()) == 64
    assert out.rstrip().endswith(f"[system] {SYSTEM}")
    assert cli.json("prompts", "show", "support-reply@production")["version"] == 1
    newest = ok(cli, "prompts", "show", "support-reply")
    assert "version:       2" in newest
    assert newest.rstrip().endswith(f"[system] {CHANGED}")


def test_show_of_an_unknown_label_or_version_is_one_line(cli: Cli, two_versions: Path) -> None:
    assert "has no label 'canary'" in fails(cli, "prompts", "show", "support-reply@canary")
    assert "has no version 9" in fails(cli, "prompts", "show", "support-reply@9")
    assert "no prompt 'nothing'" in fails(cli, "prompts", "show", "nothing")


def test_history_lists_versions_and_label_moves(cli: Cli, two_versions: Path) -> None:
    assert ok(cli, "prompts", "label", "support-reply", "production", "2").strip() == (
        "support-reply: production → v2"
    )
    out = ok(cli, "prompts", "history", "support-reply")
    versions, moves = out.split("Label moves (newest first)")
    assert versions.index("shorter answers") < versions.index("initial")
    [moved] = [line for line in moves.splitlines() if "v1 → v2" in line]
    assert moved.split()[2:6] == ["production", "v1", "→", "v2"]
    assert "local:" in moved
    assert any("- → v1" in line for line in moves.splitlines())


def test_diff_shows_the_changed_line(cli: Cli, two_versions: Path) -> None:
    out = ok(cli, "prompts", "diff", "support-reply", "1", "2")
    assert out.startswith("--- support-reply@1\n+++ support-reply@2\n")
    assert f"\n-  content: {SYSTEM}\n+  content: {CHANGED}\n" in out
    assert ok(cli, "prompts", "diff", "support-reply", "v2", "v2").strip() == "no difference"


def test_rollback_moves_the_label_back(cli: Cli, two_versions: Path) -> None:
    ok(cli, "prompts", "label", "support-reply", "production", "2")
    out = ok(cli, "prompts", "rollback", "support-reply", "production")
    assert out.strip() == "support-reply: production back to v1"
    assert cli.json("prompts", "show", "support-reply@production")["version"] == 1
    history = ok(cli, "prompts", "history", "support-reply")
    [undone] = [line for line in history.splitlines() if "(undone)" in line]
    assert "v1 → v2" in undone
    assert any("v2 → v1" in line and "rollback" in line for line in history.splitlines())
    error = fails(cli, "prompts", "rollback", "support-reply", "production")
    assert "no earlier version to go back to" in error


# -- render --------------------------------------------------------------------------------


def test_render_fills_the_variables(cli: Cli, two_versions: Path) -> None:
    args = ("prompts", "render", "support-reply@production")
    out = ok(cli, *args, "--var", "product=Capstan", "--var", "tier=pro")
    assert out.strip() == "[system] You answer questions about Capstan for pro customers."
    rendered = cli.json(
        "prompts", "render", "support-reply", "--var", "product=X", "--var", "tier=free"
    )
    assert rendered["version"] == 2
    assert rendered["messages"] == [
        {"role": "system", "content": "You answer questions about X for free customers, briefly."}
    ]


def test_render_reads_values_as_yaml(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "count.yaml"
    document = {
        "name": "count",
        "variables": {"n": "integer", "flag": "boolean", "word": "string"},
        "messages": [{"role": "user", "content": "{{ n + 1 }} {{ flag }} {{ word }}"}],
    }
    file.write_text(yaml.safe_dump(document), encoding="utf-8")
    ok(cli, "prompts", "push", str(file))
    args = ("prompts", "render", "count", "--var", "n=3", "--var", "flag=true")
    assert ok(cli, *args, "--var", "word=hello").strip() == "[user] 4 True hello"
    error = fails(cli, *args, "--var", "word=2026-01-31", "--var", "n=three")
    assert "variable `n` must be an integer, got string" in error


def test_push_and_render_a_text_prompt(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "greeting.yaml"
    document = {"name": "greeting", "variables": {"who": "string"}, "text": "Hello {{ who }}!"}
    file.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert ok(cli, "prompts", "push", str(file)).strip() == "created greeting v1"
    assert ok(cli, "prompts", "show", "greeting").rstrip().endswith("\n\nHello {{ who }}!")
    assert ok(cli, "prompts", "render", "greeting", "--var", "who=Ada").strip() == "Hello Ada!"


def test_render_without_a_variable_is_one_line(cli: Cli, two_versions: Path) -> None:
    error = fails(cli, "prompts", "render", "support-reply", "--var", "product=Capstan")
    assert error.startswith("error: missing variable `tier`")
    assert "(HTTP 400)" in error
    error = fails(
        cli, "prompts", "render", "support-reply", "--var", "tier=gold", "--var", "product=x"
    )
    assert "`tier` must be one of: free, pro" in error
    assert "--var: 'product' is not NAME=VALUE" in fails(
        cli, "prompts", "render", "support-reply", "--var", "product"
    )


def test_var_and_ref_parsing() -> None:
    assert _var("n=3") == ("n", 3)
    assert _var("flag=true") == ("flag", True)
    assert _var("x=hello") == ("x", "hello")
    assert _var("x=a=b") == ("x", "a=b")
    assert _var("x=") == ("x", "")
    assert _var("day=2026-01-31") == ("day", "2026-01-31")
    assert _var("tags=[a, b]") == ("tags", ["a", "b"])
    assert _var("x=[a") == ("x", "[a")
    assert _var("handle=@ada") == ("handle", "@ada")
    assert _var("note=# hi") == ("note", "# hi")
    assert _var("x=null") == ("x", None)
    with pytest.raises(CliError, match="is not NAME=VALUE"):
        _var("=3")
    assert _split_ref("p") == ("p", {})
    assert _split_ref("p@7") == ("p", {"version": 7})
    assert _split_ref("p@production") == ("p", {"label": "production"})
    with pytest.raises(CliError):
        _split_ref("p@")
    assert _variant("2=50") == {"version": 2, "weight": 50}
    assert _variant("v3") == {"version": 3}
    with pytest.raises(CliError, match="is not VERSION"):
        _variant("2=half")


# -- experiments ---------------------------------------------------------------------------


def test_experiment_start_list_status_stop(cli: Cli, capstan: Capstan, two_versions: Path) -> None:
    args = ("prompts", "experiment", "start", "briefly", "--prompt", "support-reply")
    out = ok(cli, *args, "--variant", "1=50", "--variant", "2=50", "--min-samples", "10")
    assert out.strip() == (
        "started experiment briefly on support-reply@production: v1=50, v2=50, sticky by user"
    )
    [listed] = cli.json("prompts", "experiment", "list")
    assert (listed["name"], listed["status"], listed["min_samples"]) == ("briefly", "running", 10)
    table = ok(cli, "prompts", "experiment", "list")
    assert "v1=50, v2=50" in table
    assert "running" in table

    empty = ok(cli, "prompts", "experiment", "status", "briefly")
    assert "experiment briefly on support-reply@production: running" in empty
    assert "no winner yet — " in empty

    org = capstan.services.directory.organization()
    now = utcnow()
    events = [
        make_event(
            org_id=org.id,
            created_at=now - timedelta(seconds=i),
            prompt_name="support-reply",
            prompt_version=version,
            experiment_id=listed["id"],
            latency_ms=(400.0 if version == 1 else 200.0) + i,
            cost_micros=1_500 if version == 1 else 1_000,
            prompt_tokens=100,
            completion_tokens=50 if version == 1 else 30,
        )
        for version in (1, 2)
        for i in range(40)
    ]
    insert_events(capstan.services.store, events)
    status = cli.json("prompts", "experiment", "status", "briefly")
    assert [s["requests"] for s in status["summaries"]] == [40, 40]
    out = ok(cli, "prompts", "experiment", "status", listed["id"])
    [control] = [line.split() for line in out.splitlines() if line.strip().startswith("v1 ")]
    assert control[:3] == ["v1", "40", "0"]
    assert "0.001500" in control  # mean cost in USD
    assert "150.0" in control  # tokens
    assert any(line.split()[:2] == ["latency_ms", "v2"] for line in out.splitlines())
    last = out.strip().splitlines()[-1]
    expected = f"winner: v{status['winner']} — " if status["winner"] else "no winner yet — "
    assert last == expected + status["reason"]

    out = ok(cli, "prompts", "experiment", "stop", "briefly", "--promote", "2")
    assert out.strip() == "stopped experiment briefly; support-reply: production → v2"
    assert cli.json("prompts", "show", "support-reply@production")["version"] == 2
    [stopped] = cli.json("prompts", "experiment", "list")
    assert (stopped["status"], stopped["promoted_version"]) == ("stopped", 2)
    assert "is not running" in fails(cli, "prompts", "experiment", "stop", "briefly")


def test_experiment_mistakes_are_one_line(cli: Cli, two_versions: Path) -> None:
    args = ("prompts", "experiment", "start", "x", "--prompt", "support-reply")
    assert "--variant: 'one' is not VERSION[=WEIGHT]" in fails(
        cli, *args, "--variant", "one", "--variant", "2"
    )
    assert "has no version 7" in fails(cli, *args, "--variant", "1", "--variant", "7")
    assert "no experiment 'nothing'" in fails(cli, "prompts", "experiment", "status", "nothing")


# -- remote --------------------------------------------------------------------------------


def test_remote_is_the_same_as_local(
    cli: Cli, capstan: Capstan, server: RunningServer, two_versions: Path
) -> None:
    local = [
        cli.json("prompts", "list"),
        cli.json("prompts", "history", "support-reply"),
        cli.json("prompts", "show", "support-reply@production"),
    ]
    cli.remote(server, capstan.admin_key)
    remote = [
        cli.json("prompts", "list"),
        cli.json("prompts", "history", "support-reply"),
        cli.json("prompts", "show", "support-reply@production"),
    ]
    assert local == remote
    error = fails(cli, "prompts", "render", "support-reply", "--var", "product=Capstan")
    assert error.startswith("error: missing variable `tier`")
    out = ok(cli, "prompts", "push", str(two_versions))
    assert out.strip() == "unchanged support-reply v2 (content identical)"
