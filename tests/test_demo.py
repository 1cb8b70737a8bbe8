"""`capstan demo`: one command gives a seeded installation, a fresh admin key and a server."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.servers import free_port

CAPSTAN = Path(sys.executable).parent / "capstan"
KEY = re.compile(r"\b(cap_[0-9A-Za-z]+)")
DEMO_DEPARTMENTS = {"retail-banking", "claims", "clinical"}
STARTUP_SECONDS = 30.0


@dataclass
class Demo:
    url: str
    admin_key: str
    output: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def _demo_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTAN_")}
    env["CAPSTAN_HOME"] = str(home)
    return env


@contextmanager
def running_demo(cwd: Path) -> Iterator[Demo]:
    """`capstan demo` in `cwd`, up and answering /healthz; terminated on exit, always."""
    port = free_port()
    process = subprocess.Popen(
        [str(CAPSTAN), "demo", "--port", str(port)],
        cwd=cwd,
        env=_demo_env(cwd / ".capstan"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        key = _admin_key(lines, output)
        assert key is not None, "no admin key printed:\n" + "".join(output)
        url = f"http://127.0.0.1:{port}"
        assert _healthy(url, process), "the demo server never became healthy:\n" + "".join(output)
        yield Demo(url, key, output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def _admin_key(lines: queue.Queue[str | None], output: list[str]) -> str | None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return None
        if line is None:
            return None
        output.append(line)
        if "admin key" in line.lower() and (match := KEY.search(line)):
            return match.group(1)
    return None


def _healthy(url: str, process: subprocess.Popen[str]) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.get("/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    return False


def test_demo_prints_an_admin_key_that_works(tmp_path: Path) -> None:
    with running_demo(tmp_path) as demo, demo.client() as client:
        response = client.get("/api/v1/keys")

    assert demo.admin_key.startswith("cap_")
    assert response.status_code == 200
    names = {key["name"] for key in response.json()["items"]}
    assert "demo admin" in names


def test_demo_seeds_the_demo_departments(tmp_path: Path) -> None:
    with running_demo(tmp_path) as demo, demo.client() as client:
        response = client.get("/api/v1/departments")

    assert response.status_code == 200
    assert {d["name"] for d in response.json()["items"]} == DEMO_DEPARTMENTS


def test_demo_seeds_teams_projects_and_people(tmp_path: Path) -> None:
    with running_demo(tmp_path) as demo, demo.client() as client:
        teams = client.get("/api/v1/teams").json()["items"]
        projects = client.get("/api/v1/projects").json()["items"]
        users = client.get("/api/v1/users").json()["items"]

    assert {"credit-risk", "claims-automation", "clinical-informatics"} <= {
        t["name"] for t in teams
    }
    assert {"loan-decisions", "claims-triage", "discharge-summaries"} <= {
        p["name"] for p in projects
    }
    assert "ana.ruiz@example.com" in {u["email"] for u in users}


def test_demo_seeds_a_budget_and_a_rate_limit(tmp_path: Path) -> None:
    with running_demo(tmp_path) as demo, demo.client() as client:
        budgets = client.get("/api/v1/budgets").json()
        limits = client.get("/api/v1/rate-limits").json()

    assert [b["name"] for b in budgets] == ["retail-banking-monthly"]
    assert [(r["name"], r["requests"]) for r in limits] == [("support-assistant-per-minute", 600)]


def test_demo_serves_its_prompt_through_an_experiment(tmp_path: Path) -> None:
    with running_demo(tmp_path) as demo, demo.client() as client:
        experiments = client.get("/api/v1/experiments").json()
        response = client.post(
            "/v1/chat/completions",
            json={
                "prompt": {"name": "support-reply", "variables": {"product": "a checking account"}},
                "messages": [{"role": "user", "content": "Are there monthly fees?"}],
            },
        )

    assert [(e["name"], e["status"]) for e in experiments] == [("support-reply-shorter", "running")]
    assert response.status_code == 200, response.text
    assert response.headers["x-capstan-prompt-version"] in {"1", "2"}


def test_running_demo_again_in_the_same_home_prints_a_new_key_and_seeds_nothing_twice(
    tmp_path: Path,
) -> None:
    with running_demo(tmp_path) as first:
        pass

    with running_demo(tmp_path) as second, second.client() as client:
        departments = client.get("/api/v1/departments").json()["items"]
        keys = client.get("/api/v1/keys").json()["items"]

    assert second.admin_key != first.admin_key
    assert sorted(d["name"] for d in departments) == sorted(DEMO_DEPARTMENTS)
    assert [k["name"] for k in keys].count("demo admin") == 2


def test_demo_serves_every_alias_on_the_simulator_and_says_so(tmp_path: Path) -> None:
    import openai

    with running_demo(tmp_path) as demo:
        sdk = openai.OpenAI(base_url=demo.url + "/v1", api_key=demo.admin_key, max_retries=0)
        for alias in (
            "chat-default",
            "chat-anthropic",
            "chat-gemini",
            "chat-cohere",
            "chat-bedrock",
        ):
            reply = sdk.chat.completions.create(
                model=alias, messages=[{"role": "user", "content": "hello demo"}]
            )
            assert (reply.choices[0].message.content or "").startswith("Echo: hello demo.")
        assert sdk.embeddings.create(model="embed-default", input="x").data
        owners = {model.owned_by for model in sdk.models.list()}
    assert {"simulated-openai", "simulated-anthropic", "simulated-bedrock"} <= owners


def test_demo_serves_its_credit_risk_model_to_records(tmp_path: Path) -> None:
    applicant = {
        "income": 85000,
        "debt_to_income": 0.2,
        "credit_history_years": 12,
        "loan_amount": 20000,
        "late_payments_2y": 0,
        "employment_years": 6,
    }
    with running_demo(tmp_path) as demo, demo.client() as client:
        response = client.post("/v2/models/credit-risk/infer", json={"inputs": [applicant]})

    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] in (0, 1)
    low, high = prediction["probabilities"]
    assert abs(low + high - 1) < 1e-5
    assert prediction["label"] == int(high >= 0.5)
    assert (tmp_path / ".capstan" / "demo" / "loan_applications.csv").exists()
