"""With CI=true the PostgreSQL and Redis tests are mandatory: a missing server fails the run.
Elsewhere they skip, saying why. Checked by running pytest on one such test against a port where
nothing listens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_TEST = "tests/test_migrations.py::test_the_migrated_schema_matches_the_models"


def run_postgres_test_without_server(ci: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CI": ci,
        "CAPSTAN_TEST_PG": f"postgresql://postgres@127.0.0.1:{free_port()}/test",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:xdist",
            "-q",
            "-rs",
            "-k",
            "postgresql",
            POSTGRES_TEST,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_with_ci_true_a_missing_postgresql_fails_the_run() -> None:
    result = run_postgres_test_without_server("true")
    assert result.returncode != 0
    assert "CI=true requires it" in result.stdout


def test_without_ci_a_missing_postgresql_skips_with_the_reason() -> None:
    result = run_postgres_test_without_server("false")
    assert result.returncode == 0
    assert "skipped" in result.stdout
    assert "set CI=true to make this a failure" in result.stdout
