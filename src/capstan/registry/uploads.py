"""Artifact uploads: the file first (`POST /api/v1/uploads`, raw bytes), then the version that
names it (`POST /api/v1/models/{name}/versions`, JSON).

Two steps keep a large artifact out of a JSON body and need no multipart parser; the upload is
written to the artifact store itself (`_uploads/<id>/<file>`), so with several replicas the
registration may land on another one than the upload. Registration takes the upload: scans
it, loads it, stores it under its version and deletes the upload.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capstan.errors import InvalidInput, NotFound
from capstan.ids import new_id
from capstan.registry.storage import ArtifactStore

FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
PREFIX = "_uploads"
UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    filename: str
    sha256: str
    size: int


def check_filename(filename: str) -> str:
    if not FILENAME.match(filename) or ".." in filename:
        raise InvalidInput(
            "an artifact file name is 1 to 200 letters, digits, '.', '_' or '-' (no folders)",
            field="filename",
        )
    return filename


class Uploads:
    """Uploads live in the artifact store's own filesystem, beside the versions."""

    def __init__(self, store: ArtifactStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes

    @property
    def fs(self) -> Any:
        return self.store.fs

    @property
    def root(self) -> str:
        return self.store.root

    def _path(self, upload_id: str, filename: str) -> str:
        return f"{self.root.rstrip('/')}/{PREFIX}/{upload_id}/{filename}"

    async def receive(self, filename: str, chunks: AsyncIterator[bytes]) -> Upload:
        """Write the body to the store as it arrives, hashing it; past `max_bytes` the
        partial upload is removed and the request refused."""
        check_filename(filename)
        upload_id = str(new_id())
        path = self._path(upload_id, filename)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        digest, size = hashlib.sha256(), 0
        try:
            with self.fs.open(path, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InvalidInput(
                            f"the artifact exceeds the {self.max_bytes:,}-byte limit",
                            field="body",
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            self.fs.rm(path.rsplit("/", 1)[0], recursive=True)
            raise
        if size == 0:
            self.fs.rm(path.rsplit("/", 1)[0], recursive=True)
            raise InvalidInput("the artifact is empty", field="body")
        return Upload(upload_id, filename, digest.hexdigest(), size)

    def _folder(self, upload_id: str) -> str:
        """The upload's folder; an id that is not one of ours never becomes a path."""
        if not UPLOAD_ID.fullmatch(upload_id):
            raise NotFound(f"no upload {upload_id!r}", field="upload")
        return f"{self.root.rstrip('/')}/{PREFIX}/{upload_id}"

    @contextmanager
    def local_copy(self, upload_id: str) -> Iterator[Path]:
        """The upload as a local file (scanners and loaders read files), removed after."""
        folder = self._folder(upload_id)
        names = self.fs.ls(folder, detail=False) if self.fs.exists(folder) else []
        if len(names) != 1:
            raise NotFound(f"no upload {upload_id!r}", field="upload")
        filename = str(names[0]).rsplit("/", 1)[-1]
        with tempfile.TemporaryDirectory(prefix="capstan-upload-") as scratch:
            local = Path(scratch) / filename
            self.fs.get(str(names[0]), str(local))
            yield local

    def discard(self, upload_id: str) -> None:
        if not UPLOAD_ID.fullmatch(upload_id):
            return
        folder = self._folder(upload_id)
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)
