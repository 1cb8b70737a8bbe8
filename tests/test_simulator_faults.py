"""The simulator's faults (latency, slow streams, 429 bursts, errors, cut streams, hangs), its
admin routes, and the `capstan upstream-sim` command that serves it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest

from tests.servers import RunningServer, free_port
from tests.simulator_fixtures import anthropic_sdk, openai_sdk, received, set_faults

CAPSTAN = Path(sys.executable).parent / "capstan"
STARTUP_SECONDS = 20.0


# Each test starts, and ends, with no faults (ending one also frees any hung request).
pytestmark = pytest.mark.usefixtures("simulator_state")


def ask(client: openai.OpenAI, model: str = "gpt-4o") -> str | None:
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}]
    )
    return completion.choices[0].message.content


def test_latency_delays_the_response(simulator: RunningServer) -> None:
    set_faults(simulator, latency_ms=300)
    started = time.monotonic()
    ask(openai_sdk(simulator))
    assert time.monotonic() - started >= 0.3


def test_ttft_delays_the_first_streamed_token(simulator: RunningServer) -> None:
    set_faults(simulator, "gpt-slow-start", ttft_ms=400)
    started = time.monotonic()
    stream = openai_sdk(simulator).chat.completions.create(
        model="gpt-slow-start", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    first = next(iter(stream))
    first_token_s = time.monotonic() - started
    rest = list(stream)
    assert first.choices[0].delta.role == "assistant"
    assert first_token_s >= 0.4
    assert time.monotonic() - started < first_token_s + 0.3
    assert rest[-1].choices[0].finish_reason == "stop"


def test_tokens_per_second_paces_the_stream(simulator: RunningServer) -> None:
    set_faults(simulator, tokens_per_s=40)
    started = time.monotonic()
    chunks = list(
        openai_sdk(simulator).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "pace me"}], stream=True
        )
    )
    words = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert time.monotonic() - started >= (len(words) - 1) / 40


def test_a_429_burst_is_retried_after_retry_after_then_succeeds(
    simulator: RunningServer,
) -> None:
    set_faults(simulator, burst_429=2, retry_after_s=0.05)
    assert ask(openai_sdk(simulator, max_retries=2))
    statuses = httpx.get(f"{simulator.url}/_sim/faults").json()
    assert statuses["*"]["burst_429"] == 0
    assert len(received(simulator)) == 3


def test_a_429_burst_answers_anthropic_clients_too(simulator: RunningServer) -> None:
    set_faults(simulator, burst_429=1, retry_after_s=0.05)
    client = anthropic_sdk(simulator, max_retries=1)
    message = client.messages.create(
        model="claude-simulated", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_error_rate_one_fails_every_call(simulator: RunningServer) -> None:
    set_faults(simulator, error_rate=1.0, error_status=503)
    client = openai_sdk(simulator)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as raised:
            ask(client)
        assert raised.value.status_code == 503


def test_faults_apply_to_their_model_only(simulator: RunningServer) -> None:
    set_faults(simulator, "gpt-doomed", error_rate=1.0)
    client = openai_sdk(simulator)
    with pytest.raises(openai.InternalServerError):
        ask(client, "gpt-doomed")
    assert ask(client, "gpt-4o")


def test_a_cut_openai_stream_fails_in_the_client(simulator: RunningServer) -> None:
    set_faults(simulator, cut_after_chunks=3)
    stream = openai_sdk(simulator).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "cut me off"}], stream=True
    )
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        received.extend(stream)
    contents = [c for c in received if c.choices and c.choices[0].delta.content]
    assert len(contents) == 3
    assert not any(c.choices and c.choices[0].finish_reason for c in received)


def test_a_cut_anthropic_stream_never_completes_the_message(simulator: RunningServer) -> None:
    set_faults(simulator, cut_after_chunks=2)
    client = anthropic_sdk(simulator)
    stream = client.messages.create(
        model="claude-simulated",
        max_tokens=64,
        messages=[{"role": "user", "content": "cut"}],
        stream=True,
    )
    kinds: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):  # the Anthropic SDK does not wrap it
        kinds.extend(event.type for event in stream)
    assert kinds.count("content_block_delta") == 2
    assert "message_stop" not in kinds


def test_a_hang_times_the_client_out(simulator: RunningServer) -> None:
    set_faults(simulator, hang=True)
    with pytest.raises(openai.APITimeoutError):
        ask(openai_sdk(simulator, timeout=0.5))


def test_faults_can_be_set_listed_and_cleared(simulator: RunningServer) -> None:
    url = f"{simulator.url}/_sim/faults"
    put = httpx.put(url, json={"model": "gpt-4o", "latency_ms": 5, "context_window": 100})
    assert put.status_code == 200
    listed = httpx.get(url).json()
    assert listed["gpt-4o"]["latency_ms"] == 5
    assert listed["gpt-4o"]["context_window"] == 100
    assert httpx.delete(url).status_code == 204
    assert httpx.get(url).json() == {}


def test_an_unknown_fault_setting_is_refused(simulator: RunningServer) -> None:
    response = httpx.put(f"{simulator.url}/_sim/faults", json={"explode": True})
    assert response.status_code == 400
    assert "explode" in response.json()["error"]


def test_the_request_log_hides_credentials(simulator: RunningServer) -> None:
    headers = {
        "Authorization": "Bearer sk-secret",
        "x-api-key": "sk-ant-secret",
        "api-key": "azure-secret",
        "x-trace": "kept",
    }
    httpx.post(
        f"{simulator.url}/v1/chat/completions",
        headers=headers,
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "log me"}]},
    )
    logged = received(simulator)[-1]
    assert logged["path"] == "/v1/chat/completions"
    assert logged["headers"]["x-trace"] == "kept"
    assert not {"authorization", "x-api-key", "api-key"} & set(logged["headers"])
    assert "secret" not in str(logged)


def test_the_upstream_sim_command_serves_and_answers() -> None:
    port = free_port()
    command = [str(CAPSTAN), "upstream-sim", "--port", str(port), "--latency-ms", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                models = httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer k"})
                break
            except httpx.ConnectError:
                assert process.poll() is None, "the simulator exited"
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        assert models.status_code == 200
        client = openai.OpenAI(api_key="k", base_url=f"{base}/v1", max_retries=0)
        assert (ask(client) or "").startswith("Echo: hello.")
        assert httpx.get(f"{base}/_sim/faults").json()["*"]["latency_ms"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
