"""Peers that run in their own virtual environments under `.bench/` (git-ignored).

`python -m bench peers` creates them (several minutes: LiteLLM's proxy pulls a few hundred
packages); `python -m bench peers litellm` or `... granian` creates one. The gateway benchmark
skips a peer that is missing and prints the command that installs it.

- `litellm`: the latest `litellm[proxy]` release, the peer Capstan is compared with.
- `granian`: granian plus this checkout installed editable, to serve Capstan under granian and
  compare it with uvicorn (uvloop, httptools): `python -m bench gateway --servers`.
- `mlserver`: MLServer with its scikit-learn runtime, the serving peer of `python -m bench serving`.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_HOME = ROOT / ".bench"
PYTHON = "python3.11"


@dataclass(frozen=True)
class Peer:
    name: str
    steps: tuple[tuple[str, ...], ...]  # `pip install` arguments, one tuple per call
    executable: str  # what must exist in the venv's bin/ for the peer to count as installed

    @property
    def venv(self) -> Path:
        return BENCH_HOME / self.name

    @property
    def bin(self) -> Path:
        return self.venv / "bin" / self.executable

    def installed(self) -> bool:
        return self.bin.exists()

    def version(self, package: str) -> str | None:
        if not self.installed():
            return None
        code = f"import importlib.metadata as m; print(m.version({package!r}))"
        result = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code], capture_output=True, text=True
        )
        return result.stdout.strip() or None

    def install_hint(self) -> str:
        return f"{sys.executable} -m bench peers {self.name}"


PEERS = {
    "litellm": Peer("litellm", (("--upgrade", "litellm[proxy]"),), "litellm"),
    # Capstan's pinned dependencies, as in .venv, so the server is the only difference.
    "granian": Peer(
        "granian",
        (
            ("--require-hashes", "-r", str(ROOT / "requirements" / "runtime.lock")),
            ("--upgrade", "granian"),
            ("--no-deps", "-e", str(ROOT)),
        ),
        "granian",
    ),
    # Seldon's MLServer with its scikit-learn runtime (it has no ONNX runtime of its own): the
    # peer for serving in-house models (`python -m bench serving`).
    "mlserver": Peer("mlserver", (("--upgrade", "mlserver", "mlserver-sklearn"),), "mlserver"),
}


def install(peer: Peer) -> None:
    """Create the peer's venv, or bring it to the latest release of the peer."""
    print(f"installing {peer.name} into {peer.venv} ...", flush=True)
    if not (peer.venv / "bin" / "python").exists():
        subprocess.run([PYTHON, "-m", "venv", str(peer.venv)], check=True)
    pip = [str(peer.venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    for step in peer.steps:
        subprocess.run([*pip, "install", *step], check=True)
    print(f"{peer.name}: installed ({peer.bin})", flush=True)


def main(argv: list[str]) -> int:
    names = argv or list(PEERS)
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        print(f"error: unknown peer {', '.join(unknown)}; known: {', '.join(PEERS)}")
        return 2
    for name in names:
        install(PEERS[name])
    return 0
