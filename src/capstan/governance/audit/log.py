"""The audit log in the store: append inside the caller's transaction, read, verify, export.

Appends are serialized so concurrent writers still leave one gap-free chain: PostgreSQL takes a
transaction-scoped advisory lock (released by commit or rollback, so a failed change leaves no
gap), SQLite already holds the database write lock (`BEGIN IMMEDIATE`) for the transaction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from capstan.clock import isoformat, utcnow
from capstan.governance.audit.chain import (
    GENESIS_HASH,
    ChainBreak,
    digest,
    entry_hash,
    verify_chain,
)
from capstan.store.engine import Store
from capstan.store.schema import AuditEntry

# "capstan" in ASCII, as a 64-bit advisory lock key shared by every replica.
AUDIT_LOCK_KEY = 0x6361707374616E
EXPORT_FIELDS = (
    "seq",
    "time",
    "actor",
    "action",
    "resource_type",
    "resource_id",
    "before_digest",
    "after_digest",
    "prev_hash",
    "hash",
)
VERIFY_BATCH = 2_000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry as the API and the CLI show it."""

    seq: int
    time: datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str
    before_digest: str | None
    after_digest: str | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row: AuditEntry) -> AuditRecord:
        return cls(**{name: getattr(row, name) for name in EXPORT_FIELDS})

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in EXPORT_FIELDS}
        data["time"] = isoformat(self.time)
        return data


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked: int
    head_hash: str
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def append(
        self,
        session: Session,
        *,
        actor: str,
        action: str,
        resource_type: str,
        resource_id: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> AuditEntry:
        """Add the next entry to the chain, in `session`'s transaction."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
        last = session.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        fields: dict[str, Any] = {
            "seq": seq,
            "time": utcnow(),
            "actor": actor,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "before_digest": digest(before),
            "after_digest": digest(after),
        }
        entry = AuditEntry(
            **fields, prev_hash=prev_hash, hash=entry_hash(_hashable(fields), prev_hash)
        )
        session.add(entry)
        session.flush()
        return entry

    def query(
        self,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        resource: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Entries in seq order; `resource` matches a resource type or a resource id."""
        statement = select(AuditEntry).where(AuditEntry.seq > after_seq)
        if since is not None:
            statement = statement.where(AuditEntry.time >= since)
        if actor is not None:
            statement = statement.where(AuditEntry.actor == actor)
        if resource is not None:
            statement = statement.where(
                (AuditEntry.resource_type == resource) | (AuditEntry.resource_id == resource)
            )
        statement = statement.order_by(AuditEntry.seq).limit(limit)
        with self.store.read() as session:
            return [AuditRecord.of(row) for row in session.scalars(statement)]

    def verify(self) -> VerifyResult:
        """Recompute the whole chain, streaming it in batches so memory stays flat."""
        checked, broken = verify_chain(self._walk())
        head = GENESIS_HASH
        if checked:
            with self.store.read() as session:
                head = session.scalars(
                    select(AuditEntry.hash).where(AuditEntry.seq == checked)
                ).one()
        return VerifyResult(checked=checked, head_hash=head, broken=broken)

    def export(self, *, since: datetime | None, fmt: Literal["jsonl", "csv"]) -> Iterator[str]:
        """The log as JSON lines or CSV, in chunks, for `capstan audit export` and the API."""
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
            writer.writeheader()
            yield buffer.getvalue()
        after = 0
        while True:
            batch = self.query(since=since, after_seq=after, limit=VERIFY_BATCH)
            if not batch:
                return
            if fmt == "jsonl":
                yield "".join(orjson.dumps(r.as_dict()).decode() + "\n" for r in batch)
            else:
                buffer = io.StringIO()
                writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
                writer.writerows(r.as_dict() for r in batch)
                yield buffer.getvalue()
            after = batch[-1].seq

    def _walk(self) -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            with self.store.read() as session:
                rows = session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.seq > after)
                    .order_by(AuditEntry.seq)
                    .limit(VERIFY_BATCH)
                ).all()
            if not rows:
                return
            for row in rows:
                fields = {name: getattr(row, name) for name in EXPORT_FIELDS}
                yield _hashable(fields) | {"prev_hash": row.prev_hash, "hash": row.hash}
            after = rows[-1].seq


def _hashable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fields as they are hashed: time in its canonical text form."""
    out = dict(fields)
    out["time"] = isoformat(out["time"])
    return out
