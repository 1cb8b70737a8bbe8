"""From a presented key to a `Principal`, without touching the database on the hot path.

Lookups are cached by key hash (misses too, so a flood of wrong keys cannot hammer the
database); the whole cache is dropped whenever the config version moves. Expiry is checked on
every call against the cached expiry, so an expired key fails on time without a lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from capstan.clock import utcnow
from capstan.errors import Unauthenticated
from capstan.identity.key_material import hash_key
from capstan.identity.principal import Principal
from capstan.identity.roles import Role
from capstan.identity.scope import ScopePath
from capstan.store.engine import Store
from capstan.store.schema import ApiKey, Project

CACHE_SIZE = 10_000


class _Revoked:
    """Cached marker for a key that exists but was revoked."""


_REVOKED = _Revoked()
_Entry = Principal | _Revoked | None


class Authenticator:
    def __init__(
        self, store: Store, *, clock: Callable[[], datetime] = utcnow, size: int = CACHE_SIZE
    ) -> None:
        self.store = store
        self.clock = clock
        self.size = size
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every clear()

    def authenticate(self, presented: str | None) -> Principal:
        digest = _digest(presented)
        found, generation = self._cached(digest)
        if found is _MISSING:
            found = self._remember(digest, self._lookup(digest), generation)
        return self._judge(found)

    async def authenticate_async(self, presented: str | None) -> Principal:
        """`authenticate` for the event loop: a cache miss reads the database in a thread."""
        digest = _digest(presented)
        found, generation = self._cached(digest)
        if found is _MISSING:
            looked_up = await asyncio.to_thread(self._lookup, digest)
            found = self._remember(digest, looked_up, generation)
        return self._judge(found)

    def authenticate_cached(self, presented: str | None) -> Principal | None:
        """`authenticate` when the answer is in the cache; None when only the database can
        tell (then `authenticate_async`). No coroutine: the gateway calls this on every call."""
        found, _ = self._cached(_digest(presented))
        return None if found is _MISSING else self._judge(found)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._generation += 1

    def _cached(self, digest: str) -> tuple[object, int]:
        """Without the lock (every model call comes here): each dict operation is atomic, and
        the generation is read first, so a lookup racing a clear is not cached (`_remember`)."""
        generation = self._generation
        found = self._cache.get(digest, _MISSING)
        if found is not _MISSING:
            with contextlib.suppress(KeyError):  # evicted or cleared meanwhile
                self._cache.move_to_end(digest)
        return found, generation

    def _remember(self, digest: str, found: _Entry, generation: int) -> _Entry:
        """Cache a lookup, unless the cache was cleared while it ran: the row it read may be
        the one a revocation just changed, and caching it would undo the revocation."""
        with self._lock:
            if generation == self._generation:
                self._cache[digest] = found
                if len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        return found

    def _judge(self, found: object) -> Principal:
        if found is None:
            raise Unauthenticated("unknown API key")
        if isinstance(found, _Revoked):
            raise Unauthenticated("this API key was revoked")
        assert isinstance(found, Principal)
        if found.expires_at is not None and found.expires_at <= self.clock():
            raise Unauthenticated("this API key has expired")
        return found

    def _lookup(self, digest: str) -> _Entry:
        with self.store.read() as session:
            key = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
            if key is None:
                return None
            if key.revoked_at is not None:
                return _REVOKED
            log_payloads = key.project_id is not None and bool(
                session.scalar(select(Project.log_payloads).where(Project.id == key.project_id))
            )
        return Principal(
            actor=f"key:{key.id}",
            role=Role(key.role),
            scope=ScopePath(key.org_id, key.department_id, key.team_id, key.project_id),
            key_id=key.id,
            expires_at=key.expires_at,
            user_id=key.user_id,
            log_payloads=log_payloads,
        )


_MISSING = object()


def _digest(presented: str | None) -> str:
    if not presented:
        raise Unauthenticated("an API key is required (Authorization: Bearer cap_…)")
    return hash_key(presented)
