"""`capstan serve` as a real child process, for tests that kill it, stop it or run workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from tests.servers import free_port

CAPSTAN = str(Path(sys.executable).parent / "capstan")
MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmctISE="


@dataclass
class CapstanProcess:
    """One `capstan serve` on `port`, with its home and database; `start` again after `kill`
    to restart it on the same home (and so the same spool)."""

    home: Path
    database_url: str
    port: int = field(default_factory=free_port)
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.home.parent / f"capstan-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTAN_")}
        env.update(
            CAPSTAN_HOME=str(self.home),
            CAPSTAN_DATABASE_URL=self.database_url,
            CAPSTAN_MASTER_KEY=MASTER_KEY,
            CAPSTAN_LOG_LEVEL="warning",
        )
        env.update(self.extra_env)
        return env

    def init(self) -> str:
        """Migrate, create the organization and return a fresh admin key."""
        done = subprocess.run(
            [CAPSTAN, "init", "--json"], env=self.env(), capture_output=True, check=True
        )
        key: str = orjson.loads(done.stdout)["admin_key"]
        return key

    def start(self, timeout_s: float = 30.0) -> None:
        args = [CAPSTAN, "serve", "--port", str(self.port), "--workers", str(self.workers)]
        # A file, not a pipe: a pipe nobody reads would block the server once full.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                args, env=self.env(), stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                output = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"capstan serve did not start: {output}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL to the whole process group: no shutdown hook runs, exactly like a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the workers too, if any
            self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait: the graceful path (drain, flush, exit)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)
