"""A gateway process starts without the heavy libraries: they load with the first call that
needs them (an experiment's status, a registry model, an upload), so a gateway that serves
LLM calls keeps its memory (the benchmark's budget is 150 MB under load) and its start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = (
    "numpy",
    "scipy",
    "onnxruntime",
    "sklearn",
    "skops",
    "pandas",
    "fsspec",
    "picklescan",
    "jinja2",
)


@pytest.mark.parametrize("module", ["capstan.app", "capstan.cli.main"])
def test_starting_imports_none_of_the_heavy_libraries(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_the_gateway_and_its_adapters_run_without_aiohttp() -> None:
    # aiohttp is a development dependency (the benchmark's floor proxy, a load-driving test):
    # the runtime lock, which `make demo` installs, does not hold it.
    modules = "capstan.app, capstan.gateway.providers.registry, capstan.finops.alerts"
    code = f"import sys, {modules}; print('aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
