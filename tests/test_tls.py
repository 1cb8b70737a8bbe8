"""Encryption in transit: given a certificate and key, Capstan serves HTTPS and only HTTPS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.certificates import Certificate, self_signed
from tests.conftest import Capstan
from tests.servers import RunningServer, free_port, start_server

CAPSTAN = Path(sys.executable).parent / "capstan"
STARTUP_SECONDS = 20.0


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return self_signed(tmp_path)


@pytest.fixture
def tls_server(capstan: Capstan, certificate: Certificate) -> Iterator[RunningServer]:
    running = start_server(capstan.settings, certfile=certificate.cert, keyfile=certificate.key)
    yield running
    running.stop()


# The in-process server needs one real installation; TLS does not depend on the database.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@sqlite_only
def test_the_server_answers_over_https(tls_server: RunningServer, certificate: Certificate) -> None:
    assert tls_server.url.startswith("https://")

    with httpx.Client(verify=certificate.trusting_context(), timeout=10) as client:
        response = client.get(f"{tls_server.url}/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@sqlite_only
def test_the_api_is_served_over_https(
    tls_server: RunningServer, certificate: Certificate, capstan: Capstan
) -> None:
    headers = {"Authorization": f"Bearer {capstan.admin_key}"}
    with httpx.Client(verify=certificate.trusting_context(), headers=headers, timeout=10) as c:
        response = c.get(f"{tls_server.url}/api/v1/departments")

    assert response.status_code == 200


@sqlite_only
def test_plain_http_to_the_tls_port_fails(tls_server: RunningServer) -> None:
    plain = tls_server.url.replace("https://", "http://", 1)

    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/healthz", timeout=5)


@sqlite_only
def test_a_client_that_does_not_trust_the_certificate_refuses_it(
    tls_server: RunningServer,
) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/healthz", timeout=5)


def test_capstan_serve_with_tls_flags_serves_https(
    tmp_path: Path, certificate: Certificate
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTAN_")}
    env["CAPSTAN_HOME"] = str(tmp_path / "serve-home")
    log = tmp_path / "serve.log"
    command = [
        str(CAPSTAN),
        "serve",
        "--tls-cert",
        str(certificate.cert),
        "--tls-key",
        str(certificate.key),
        "--port",
        str(port),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        response = _poll_healthz(f"https://127.0.0.1:{port}", certificate, process)
        assert response is not None, log.read_text(errors="replace")
        assert response.status_code == 200
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _poll_healthz(
    base: str, certificate: Certificate, process: subprocess.Popen[bytes]
) -> httpx.Response | None:
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(verify=certificate.trusting_context(), timeout=2) as client:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = client.get(f"{base}/healthz")
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.status_code == 200:
                return response
            time.sleep(0.2)
    return None
