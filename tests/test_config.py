"""Settings come from `CAPSTAN_*` variables over the `settings:` section of `capstan.yaml` over
the defaults; a bad or unknown setting is a `ConfigError` that names it, and the CLI turns that
into one line on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from capstan.config import load_settings
from capstan.errors import ConfigError

CAPSTAN = Path(sys.executable).parent / "capstan"


@pytest.fixture(autouse=True)
def _in_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs where no `capstan.yaml` exists unless it writes one."""
    monkeypatch.chdir(tmp_path)


def _write_yaml(path: Path, document: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


# -- defaults --------------------------------------------------------------------------------


def test_defaults_put_home_in_dot_capstan() -> None:
    settings = load_settings()

    assert settings.home == Path(".capstan")
    assert settings.port == 4100
    assert settings.host == "127.0.0.1"


def test_the_default_database_is_sqlite_in_the_home_folder(tmp_path: Path) -> None:
    settings = load_settings()

    expected = tmp_path.resolve() / ".capstan" / "capstan.db"
    assert settings.resolved_database_url == f"sqlite:///{expected}"
    assert settings.is_sqlite


# -- sources and precedence -------------------------------------------------------------------


def test_environment_variables_set_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTAN_PORT", "4555")
    monkeypatch.setenv("CAPSTAN_DATABASE_URL", "postgresql+psycopg://db.internal/capstan")
    monkeypatch.setenv("CAPSTAN_HOME", "/srv/capstan")

    settings = load_settings()

    assert settings.port == 4555
    assert settings.resolved_database_url == "postgresql+psycopg://db.internal/capstan"
    assert not settings.is_sqlite
    assert settings.home == Path("/srv/capstan")


def test_the_settings_section_of_capstan_yaml_sets_settings(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "capstan.yaml", {"settings": {"port": 4600, "log_level": "debug"}})

    settings = load_settings()

    assert settings.port == 4600
    assert settings.log_level == "debug"


def test_capstan_config_points_at_a_yaml_file_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    config = _write_yaml(elsewhere / "prod.yaml", {"settings": {"port": 4700}})
    monkeypatch.setenv("CAPSTAN_CONFIG", str(config))

    assert load_settings().port == 4700


def test_a_missing_capstan_config_file_is_an_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSTAN_CONFIG", str(tmp_path / "missing.yaml"))

    with pytest.raises(ConfigError, match="CAPSTAN_CONFIG"):
        load_settings()


def test_the_environment_wins_over_the_yaml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_yaml(tmp_path / "capstan.yaml", {"settings": {"port": 4600, "workers": 3}})
    monkeypatch.setenv("CAPSTAN_PORT", "4800")

    settings = load_settings()

    assert settings.port == 4800
    assert settings.workers == 3


def test_other_top_level_sections_of_the_yaml_file_are_not_settings(tmp_path: Path) -> None:
    _write_yaml(
        tmp_path / "capstan.yaml",
        {
            "providers": [{"name": "openai", "api_key": "env:OPENAI_API_KEY"}],
            "aliases": {"default": "openai/gpt-4o-mini"},
            "settings": {"port": 4650},
        },
    )

    assert load_settings().port == 4650


def test_a_yaml_file_without_a_settings_section_leaves_the_defaults(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "capstan.yaml", {"providers": []})

    settings = load_settings()

    assert settings.port == 4100
    assert settings.home == Path(".capstan")


# -- rejected settings -------------------------------------------------------------------------


def test_a_bad_value_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTAN_PORT", "notaport")

    with pytest.raises(ConfigError, match="CAPSTAN_PORT") as raised:
        load_settings()

    assert raised.value.field == "port"


def test_an_out_of_range_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTAN_PORT", "70000")

    with pytest.raises(ConfigError, match="CAPSTAN_PORT"):
        load_settings()


def test_an_unknown_capstan_variable_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAPSTAN_DATABSE_URL", "sqlite:///typo.db")

    with pytest.raises(ConfigError, match="CAPSTAN_DATABSE_URL"):
        load_settings()


def test_client_variables_are_not_mistaken_for_typos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTAN_URL", "http://127.0.0.1:4100")
    monkeypatch.setenv("CAPSTAN_API_KEY", "cap_example")

    assert load_settings().port == 4100


def test_an_unknown_key_under_yaml_settings_is_an_error_naming_it(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "capstan.yaml", {"settings": {"databse_url": "sqlite:///typo.db"}})

    with pytest.raises(ConfigError, match="databse_url"):
        load_settings()


def test_a_settings_section_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "capstan.yaml", {"settings": ["port", 4100]})

    with pytest.raises(ConfigError, match="settings"):
        load_settings()


def test_a_tls_certificate_without_its_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTAN_TLS_CERT", "/etc/capstan/cert.pem")

    with pytest.raises(ConfigError, match="tls_key"):
        load_settings()


def test_a_database_that_is_neither_sqlite_nor_postgresql_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAPSTAN_DATABASE_URL", "mysql://root@127.0.0.1/capstan")

    with pytest.raises(ConfigError, match="CAPSTAN_DATABASE_URL"):
        load_settings()


# -- through the CLI ---------------------------------------------------------------------------


def test_the_cli_reports_a_bad_setting_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTAN_")}
    env.update(CAPSTAN_HOME=str(tmp_path / "home"), CAPSTAN_PORT="notaport")

    result = subprocess.run(
        [str(CAPSTAN), "init"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CAPSTAN_PORT" in lines[0]
    assert not (tmp_path / "home").exists()


# -- Redis namespace ---------------------------------------------------------------------------


def test_replicas_of_one_installation_share_a_redis_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAPSTAN_DATABASE_URL", "postgresql+psycopg://db.internal/capstan")

    assert load_settings().redis_namespace == load_settings().redis_namespace


def test_installations_with_different_databases_never_share_redis_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAPSTAN_DATABASE_URL", "postgresql+psycopg://db.internal/bank")
    bank = load_settings().redis_namespace
    monkeypatch.setenv("CAPSTAN_DATABASE_URL", "postgresql+psycopg://db.internal/insurer")

    assert load_settings().redis_namespace != bank


def test_an_explicit_redis_prefix_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTAN_REDIS_PREFIX", "prod-gateway:")

    assert load_settings().redis_namespace == "prod-gateway:"
