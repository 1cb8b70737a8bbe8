"""The upstream stand-in: nginx answering every chat completion with one fixed reply.

It costs almost nothing per request (46,000+ req/s on one worker here), so whatever sits in
front of it is what the benchmark measures. nginx cannot read a request body, so streaming gets
its own path: a provider whose base URL is `<stand-in>/stream/v1` receives a fixed
`text/event-stream` body (three content chunks, a usage chunk, `data: [DONE]`), while
`<stand-in>/v1` answers a plain `chat.completion` with a realistic `usage`.

The configuration is generated into a temporary folder at run time and nginx runs in the
foreground (`daemon off`) with one worker, its error log and pid file in that folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from bench.procs import wait_ready

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODEL = "gpt-4o-mini-2024-07-18"
CREATED = 1_764_000_000
REPLY = "Hello! This is the fixed reply of the benchmark stand-in."

COMPLETION: dict[str, object] = {
    "id": "chatcmpl-bench000000000000000000000001",
    "object": "chat.completion",
    "created": CREATED,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": REPLY, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 14,
        "completion_tokens": 13,
        "total_tokens": 27,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_bench",
}


def _chunk(delta: dict[str, object], finish: str | None, usage: object = None) -> bytes:
    chunk = {
        "id": "chatcmpl-bench000000000000000000000002",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": usage,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def stream_body() -> bytes:
    words = ["Hello! ", "This is the fixed reply ", "of the benchmark stand-in."]
    events = [_chunk({"role": "assistant", "content": ""}, None)]
    events += [_chunk({"content": word}, None) for word in words]
    events.append(_chunk({}, "stop"))
    usage = {"prompt_tokens": 14, "completion_tokens": 13, "total_tokens": 27}
    events.append(_chunk({}, None, usage))
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)


def _quoted(body: bytes) -> str:
    """`body` as an nginx single-quoted string (no `'`, `\\` or `$`: `return` expands `$`)."""
    text = body.decode()
    if any(bad in text for bad in ("'", "\\", "$")):
        raise ValueError("the stand-in body must not contain ', \\ or $")
    return "'" + text + "'"


def nginx_conf(folder: Path, port: int) -> str:
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 {_quoted(orjson.dumps(COMPLETION))};
        }}
        location = /stream/v1/chat/completions {{
            default_type text/event-stream;
            return 200 {_quoted(stream_body())};
        }}
        location = /v1/models {{
            default_type application/json;
            return 200 '{{"object":"list","data":[]}}';
        }}
        location / {{ return 404; }}
    }}
}}
"""


@contextmanager
def standin(port: int) -> Iterator[str]:
    """Run nginx on `port` for the block; yields its base URL (`http://127.0.0.1:PORT`)."""
    with tempfile.TemporaryDirectory(prefix="capstan-standin-") as name:
        folder = Path(name)
        folder.chmod(0o755)
        conf = folder / "nginx.conf"
        conf.write_text(nginx_conf(folder, port))
        args = [NGINX, "-e", str(folder / "error.log"), "-p", str(folder), "-c", str(conf)]
        args += ["-g", "daemon off;"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(proc, f"{url}/v1/models", "nginx stand-in", folder / "error.log")
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)
