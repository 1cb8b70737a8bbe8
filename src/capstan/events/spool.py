"""The on-disk spool: one locked directory per process, append-only segment files inside.

Layout under the spool root (shared by every worker process on the host):

    <root>/<host>-<pid>-<random>/lock            flock(LOCK_EX) held for the process lifetime
    <root>/<host>-<pid>-<random>/000000000001.jsonl   one JSON event per line, oldest first
    <root>/rejected/<dir name>.jsonl             events the database refused (dead letters)

A directory whose lock can be taken belongs to a dead process, because the kernel drops a
process's flocks when it exits, SIGKILL included. A directory is created under a dot-name and
renamed only once its lock is held, so no scanner ever sees a live directory unlocked. This only
holds on a local filesystem; flock over NFS is not to be trusted.

Everything here except `OwnSpool.append` and `OwnSpool.rotate` does blocking I/O and is meant
to run in a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

LOCK = "lock"
SUFFIX = ".jsonl"
REJECTED = "rejected"
STARTING = ".starting-"
_REOPEN_AFTER_S = 1.0
_NEWLINE = ord("\n")
_SEGMENT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


@dataclass
class Segment:
    path: Path
    lines: int
    seq: int = 0  # closing order in this process (what flush waits on); 0 for adopted ones


def try_lock(path: Path) -> int | None:
    """An fd holding LOCK_EX on `path`, or None when a live process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Locked a file another adopter unlinked while tearing the directory down: not ours.
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def remove_directory(directory: Path) -> None:
    """Lock file last: while it exists, scanners see the directory as taken, not as free."""
    with contextlib.suppress(OSError):
        os.unlink(directory / LOCK)
        os.rmdir(directory)


def segment_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))


class OwnSpool:
    """This process's directory and its active segment. `append` and `rotate` run on the event
    loop thread and never block on anything but a local write; fsync happens elsewhere, on fds
    handed over by `take_sync_work`."""

    def __init__(self, root: Path, directory: Path, lock_fd: int) -> None:
        self.root = root
        self.directory = directory
        self.name = directory.name
        self._lock_fd = lock_fd
        self._names = 0  # file names only need to be unique and roughly ordered
        self._closed_total = 0
        self._spare: tuple[Path, int] | None = None
        self._spare_pending = False
        self.fd: int | None = None
        self.lines = 0
        self._offset = 0
        self._path = directory
        self._retry_at = 0.0
        self.opened_at = 0.0
        self._unsynced: list[int] = []
        self._directory_dirty = False
        self.closed: deque[Segment] = deque()
        self.reopen()

    @classmethod
    def create(cls, root: Path) -> OwnSpool:
        root.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        starting = root / f"{STARTING}{name}"
        starting.mkdir()
        lock_fd = try_lock(starting / LOCK)
        if lock_fd is None:  # pragma: no cover - a fresh random name nobody else knows
            raise RuntimeError(f"could not lock the new spool directory {starting}")
        directory = root / name
        os.rename(starting, directory)
        return cls(root, directory, lock_fd)

    def append(self, line: bytes) -> bool:
        """One `os.write` on an O_APPEND fd: once it returns, a SIGKILL cannot lose the line."""
        fd = self.fd
        if fd is None:
            return False
        try:
            written = os.write(fd, line)
        except OSError:
            written = -1
        if written == len(line):
            self.lines += 1
            self._offset += written
            return True
        self._write_failed(fd)
        return False

    def _write_failed(self, fd: int) -> None:
        """Disk full or I/O error: cut the torn tail off, close the segment, retry later."""
        log.error("cannot write to the event spool %s; keeping events in memory", self._path)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, self._offset)
        self._close_active()
        self._retry_at = time.monotonic() + _REOPEN_AFTER_S

    def rotate(self) -> Segment | None:
        """Close the active segment (when it holds anything) and start the next one."""
        if self.fd is None or self.lines == 0:
            return None
        segment = self._close_active()
        self.reopen()
        return segment

    def _close_active(self) -> Segment | None:
        fd, self.fd = self.fd, None
        if fd is None:
            return None
        if self.lines == 0:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            return None
        self._unsynced.append(fd)  # closed by the sync thread, after its fsync
        self._closed_total += 1
        segment = Segment(self._path, self.lines, self._closed_total)
        self.closed.append(segment)
        self.lines = 0
        return segment

    def reopen(self, *, force: bool = False) -> bool:
        """Make a fresh active segment when there is none: the spare a worker thread created
        ahead of time if there is one (no file creation on the request path), else a new file
        now. Rate-limited after a failure."""
        if self.fd is not None:
            return True
        if self._spare is not None:
            (path, fd), self._spare = self._spare, None
        else:
            if not force and time.monotonic() < self._retry_at:
                return False
            path = self._next_path()
            try:
                fd = open_segment(path)
            except OSError as exc:
                log.error("cannot open a spool segment %s: %s", path, exc)
                self._retry_at = time.monotonic() + _REOPEN_AFTER_S
                return False
        self.fd, self._path, self.lines, self._offset = fd, path, 0, 0
        self.opened_at = time.monotonic()
        self._directory_dirty = True
        return True

    def _next_path(self) -> Path:
        self._names += 1
        return self.directory / f"{self._names:012d}{SUFFIX}"

    def reserve_spare(self) -> Path | None:
        """The name for the next spare segment, when one is wanted and none is on its way."""
        if self._spare is not None or self._spare_pending:
            return None
        self._spare_pending = True
        return self._next_path()

    def set_spare(self, path: Path, fd: int | None) -> None:
        self._spare_pending = False
        if fd is not None:
            self._spare = (path, fd)

    def take_sync_work(self) -> tuple[list[int], int | None]:
        """Fds the sync thread now owns: closed segments to fsync and close, plus a duplicate of
        the active one (so a rotation meanwhile cannot close it under the thread's feet)."""
        closing, self._unsynced = self._unsynced, []
        active = None
        if self.fd is not None and self.lines:
            active = os.dup(self.fd)
            closing.append(active)
        if self._directory_dirty:
            self._directory_dirty = False
            with contextlib.suppress(OSError):
                closing.append(os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC))
        return closing, active

    def close(self) -> bool:
        """Close for good: fsync, then remove the directory when nothing is left in it, and
        release the lock either way. True when the directory is gone."""
        self._close_active()
        if self._spare is not None:
            (path, fd), self._spare = self._spare, None
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
        fds, _ = self.take_sync_work()
        sync_and_close(fds)
        empty = not segment_files(self.directory)
        if empty:
            remove_directory(self.directory)
        os.close(self._lock_fd)
        return empty


def open_segment(path: Path) -> int:
    return os.open(path, _SEGMENT_FLAGS, 0o644)


def sync_and_close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.fsync(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


def read_bytes(path: Path) -> bytes:
    """A segment as written (empty if another adopter already removed it)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def count_lines(content: bytes) -> int:
    """The events in a segment whose every line is whole (blank lines at its end ignored);
    counted in place, since a copy of a segment holds the GIL for as long as it takes."""
    end = len(content)
    while end and content[end - 1] == _NEWLINE:
        end -= 1
    return content.count(b"\n", 0, end) + 1 if end else 0


def read_segment(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The events in a segment and the number of lines that were not events. The last line of
    a segment whose writer died mid-write may be torn; any other bad line means damage, and is
    counted too. A segment another adopter already finished and removed reads as empty."""
    events: list[dict[str, Any]] = []
    corrupt = 0
    for line in read_bytes(path).split(b"\n"):
        if not line:
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict):
            events.append(event)
        else:
            corrupt += 1
    if corrupt:
        log.warning("skipped %d unreadable line(s) in spool segment %s", corrupt, path)
    return events, corrupt


def remove_segments(segments: list[Segment]) -> None:
    for segment in segments:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment.path)


def write_rejected(root: Path, name: str, events: list[dict[str, Any]]) -> None:
    """Keep events the database refused where an operator can find and fix them."""
    folder = root / REJECTED
    folder.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE, default=str) for e in events)
    fd = os.open(folder / f"{name}{SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC)
    try:
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
