"""Process tuning for a long-running server, applied by `create_app` (what `capstan serve` runs)
and never in tests or one-shot commands, which build many apps in one process.

Both are measured in docs/benchmarks.md:
- `gc.freeze()` after start-up moves everything start-up built (FastAPI, SQLAlchemy, pydantic,
  the routing table) out of the collector's reach; without it, each full collection walks those
  objects and stalls the event loop for tens of milliseconds (p99 at concurrency 16: 90 ms
  before, under 10 ms after); and young collections run less often (`GC_THRESHOLDS`).
- Two malloc arenas instead of glibc's eight per core: the data plane's threads (database
  inserts, fsync, key lookups) otherwise each grow an arena of their own (RSS about 13 MB
  lower under load, no measurable cost in speed).
- A fixed mmap threshold (256 KiB): glibc raises its threshold each time a large block is
  freed, after which the request-event insert documents (megabytes, one per batch) come from
  the heap and their pages stay resident; fixed, they are mapped and returned whole (RSS
  under load 150-170 MB with batches of 5,000 events before, about 145 MB after).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # glibc's mallopt parameter numbers
_M_MMAP_THRESHOLD = -3
# A young-generation collection every 20,000 net allocations instead of 700: a model call
# allocates a few hundred objects, nearly all freed by reference counting, so the default
# collected every other request for nothing (+4-5 % throughput, memory flat over 100k calls).
GC_THRESHOLDS = (20_000, 20, 20)
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 256 * 1024


def tune_malloc(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> None:
    """glibc only, and only before the process starts its threads; elsewhere a no-op."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return
    if mallopt(_M_ARENA_MAX, arenas) != 1:
        log.debug("mallopt(M_ARENA_MAX) refused")
    if mallopt(_M_MMAP_THRESHOLD, mmap_threshold) != 1:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")


def freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
