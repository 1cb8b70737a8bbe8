"""Dead workers' spool directories: found by taking their lock, replayed, then removed.

A directory whose lock can be taken belongs to a process that is gone (the kernel releases a
dead process's flock, SIGKILL included); holding that lock while replaying also keeps two live
adopters from working on the same directory.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from capstan.events.spool import (
    LOCK,
    REJECTED,
    STARTING,
    Segment,
    remove_directory,
    segment_files,
    try_lock,
)

_STALE_STARTING_S = 60.0


@dataclass
class Orphan:
    """A dead process's directory, locked by this process while its segments are replayed."""

    directory: Path
    lock_fd: int
    segments: deque[Segment] = field(default_factory=deque)

    @property
    def lines(self) -> int:
        return sum(segment.lines for segment in self.segments)

    def finish(self) -> None:
        """All segments replayed: remove the directory, then let go of the lock."""
        remove_directory(self.directory)
        os.close(self.lock_fd)

    def release(self) -> None:
        """Give the directory back, leftovers included, for whichever process adopts it next."""
        os.close(self.lock_fd)


def find_orphans(root: Path, own: str, held: set[str]) -> list[Orphan]:
    """Lock every directory under `root` whose owner is dead; skip `own` and those in `held`.
    The line counts come from counting newlines, so a torn last line is not counted."""
    orphans: list[Orphan] = []
    if not root.is_dir():
        return orphans
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in (own, REJECTED) or name in held or not entry.is_dir():
            continue
        if name.startswith("."):
            _clear_stale_start(entry)
            continue
        try:
            fd = try_lock(entry / LOCK)
        except OSError:  # the directory vanished, or is not ours to touch
            continue
        if fd is None:
            continue
        orphan = Orphan(entry, fd)
        for path in segment_files(entry):
            with contextlib.suppress(OSError):
                orphan.segments.append(Segment(path, path.read_bytes().count(b"\n")))
        if orphan.segments:
            orphans.append(orphan)
        else:
            orphan.finish()
    return orphans


def _clear_stale_start(entry: Path) -> None:
    """A process that died between mkdir and rename leaves an empty dot-directory behind."""
    if not entry.name.startswith(STARTING):
        return
    with contextlib.suppress(OSError):
        if time.time() - entry.stat().st_mtime > _STALE_STARTING_S:
            fd = try_lock(entry / LOCK)
            if fd is not None and not segment_files(entry):
                remove_directory(entry)
            if fd is not None:
                os.close(fd)
