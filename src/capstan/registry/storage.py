"""Model artifacts in any fsspec store, addressed by model/version/file and checked by SHA-256.

Versions are immutable, so an object is written once and never replaced: a second `put` to the
same address is a conflict, not an update. The registry records the digest at registration and
every read checks it, so an artifact altered in the bucket (by hand, by a bug, by an attacker
with write access to storage only) is refused instead of being served.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from capstan.errors import CapstanError, Conflict, InvalidInput, NotFound

CHUNK_SIZE = 1024 * 1024  # streamed in 1 MiB pieces: artifacts can be larger than memory allows


class ArtifactTampered(CapstanError):
    """The stored bytes are not the bytes that were registered."""

    status = 409
    slug = "artifact-tampered"
    title = "Artifact tampered"

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__(
            f"artifact {uri} has SHA-256 {actual}, but {expected} was registered",
            uri=uri,
            expected=expected,
            actual=actual,
        )
        self.uri = uri
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    uri: str
    sha256: str
    size: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    """`root` is a local folder or an fsspec URL (`file://`, `memory://`, `s3://bucket/prefix`);
    `storage_options` go to the filesystem (credentials, endpoint) as fsspec expects them."""

    def __init__(self, root: str, **storage_options: Any) -> None:
        # The filesystem is opened on first use: every process builds the store, few touch it.
        self._url = root
        self._options = storage_options

    @cached_property
    def fs(self) -> Any:
        """The store's fsspec filesystem (uploads write beside the versions)."""
        return self._opened[0]

    @cached_property
    def root(self) -> str:
        return str(self._opened[1]).rstrip("/")

    @cached_property
    def _root_uri(self) -> str:
        """URIs handed out are this prefix plus model/version/file; reads accept nothing else,
        so a URI from the database cannot point the store at arbitrary objects."""
        return str(self.fs.unstrip_protocol(f"{self.root}/_"))[:-1]

    @cached_property
    def _opened(self) -> tuple[Any, str]:
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]

        fs, path = url_to_fs(self._url, **self._options)
        return fs, str(path)

    def put(
        self, source: Path | bytes, *, model: str, version: int, filename: str
    ) -> StoredArtifact:
        path = self._object_path(model, version, filename)
        uri = str(self.fs.unstrip_protocol(path))
        if self.fs.exists(path):
            raise _exists(uri)
        parent = path.rsplit("/", 1)[0]
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        try:
            # "xb" (exclusive create) closes the race between the check above and the write
            # where the backend supports it (local, memory, S3 conditional writes).
            handle = self.fs.open(path, "xb")
        except FileExistsError as exc:
            raise _exists(uri) from exc
        digest = hashlib.sha256()
        size = 0
        try:
            with handle:
                for chunk in _chunks(source):
                    digest.update(chunk)
                    handle.write(chunk)
                    size += len(chunk)
        except BaseException:
            # A half-written object would block the retry (versions are never overwritten).
            self._remove_quietly(path)
            raise
        return StoredArtifact(uri=uri, sha256=digest.hexdigest(), size=size)

    def open_verified(self, uri: str, sha256: str) -> bytes:
        """The whole artifact, after its digest is checked.

        Bytes rather than a file: every flavor loads from memory (onnxruntime's
        `InferenceSession(bytes)`, `skops.io.loads`, xgboost's `Booster.load_model(bytearray)`,
        LightGBM's `Booster(model_str=…)`), and the models served here are small to medium.
        The digest must be checked before anything parses the bytes, so they are read whole.
        """
        path = self._path_of(uri)
        digest = hashlib.sha256()
        buffer = bytearray()
        try:
            with self.fs.open(path, "rb") as handle:
                while chunk := handle.read(CHUNK_SIZE):
                    digest.update(chunk)
                    buffer += chunk
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {uri} is not in the store", uri=uri) from exc
        actual = digest.hexdigest()
        if actual != sha256.lower():
            raise ArtifactTampered(uri, sha256.lower(), actual)
        return bytes(buffer)

    def _object_path(self, model: str, version: int, filename: str) -> str:
        _check_segment("model", model)
        _check_segment("filename", filename)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidInput(f"version must be a non-negative integer, not {version!r}")
        return f"{self.root}/{model}/{version}/{filename}"

    def _path_of(self, uri: str) -> str:
        if not uri.startswith(self._root_uri):
            raise InvalidInput(f"artifact {uri} is not under this store ({self._root_uri})")
        parts = uri[len(self._root_uri) :].split("/")
        if len(parts) != 3 or not parts[1].isdigit():
            raise InvalidInput(f"artifact {uri} is not a model/version/file address")
        return self._object_path(parts[0], int(parts[1]), parts[2])

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(OSError):
            self.fs.rm(path)


def _chunks(source: Path | bytes) -> Iterator[bytes]:
    if isinstance(source, Path):
        with source.open("rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk
        return
    view = memoryview(source)
    for start in range(0, len(view), CHUNK_SIZE):
        yield bytes(view[start : start + CHUNK_SIZE])


def _check_segment(what: str, value: str) -> None:
    # One path segment each: a "/" or ".." would write outside the version's folder.
    if not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise InvalidInput(f"{what} {value!r} cannot be part of an artifact path", field=what)


def _exists(uri: str) -> Conflict:
    return Conflict(f"artifact {uri} already exists; versions are immutable", uri=uri)
