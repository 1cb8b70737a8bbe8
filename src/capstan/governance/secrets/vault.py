"""The secret vault: named secrets per organization, sealed at rest, audited on every change.

Values go in through `put` and come out only through `reveal`, which the gateway calls to reach
providers; no HTTP route and no listing ever returns a value. Audit digests never see the
ciphertext or the nonce (`state_of` leaves them out), so the audit log proves a secret changed
without holding anything derived from its value.

Writes and a master-key rotation exclude each other (SQLite's write lock; on PostgreSQL a table
lock), and a write re-reads the keyring under that lock, so a secret written by a server while
the CLI rotates the key is sealed under a key that survives the rotation.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from capstan.clock import utcnow
from capstan.errors import InvalidInput, NotFound
from capstan.governance.secrets.keyring import MasterKeyring, UnknownMasterKey
from capstan.identity.changes import ChangeRecorder, state_of
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.identity.scope import ScopePath
from capstan.store.engine import Store
from capstan.store.schema import StoredSecret

log = logging.getLogger(__name__)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100
MAX_VALUE = 65_536
MAX_DESCRIPTION = 500
ROTATE_ACTION = "secrets.rotate-master-key"

# PostgreSQL: writers take ROW EXCLUSIVE (compatible with each other and with readers), a rotation
# takes EXCLUSIVE (waits for writers, blocks new ones, still lets reads through).
_LOCK_FOR_WRITE = "LOCK TABLE secrets IN ROW EXCLUSIVE MODE"
_LOCK_FOR_ROTATION = "LOCK TABLE secrets IN EXCLUSIVE MODE"


def binding(org_id: uuid.UUID, name: str) -> bytes:
    """The associated data a secret's ciphertext is bound to: its organization and name.

    Swapping two rows' ciphertexts, or copying one into another organization, makes decryption
    fail rather than reveal one secret under another's name. The names cannot contain ':'."""
    return f"capstan-secret:v1:{org_id}:{name}".encode()


def check_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME or not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"secret names are 1-{MAX_NAME} characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field="name",
        )
    return name


class SecretVault:
    def __init__(self, store: Store, changes: ChangeRecorder, keyring: MasterKeyring) -> None:
        self.store = store
        self.changes = changes
        self.keyring = keyring

    def put(
        self, principal: Principal, name: str, value: str, description: str = ""
    ) -> StoredSecret:
        """Create or replace a secret (value and description both). A newly created row has
        `updated_at == created_at`, which is how the API tells 201 from 200."""
        with self.store.write() as session:
            return self.put_in(session, principal, name, value, description)

    def put_in(
        self, session: Session, principal: Principal, name: str, value: str, description: str = ""
    ) -> StoredSecret:
        """`put` inside the caller's transaction (a gateway provider's key is stored with the
        provider). A transaction that writes other audited rows first takes `lock_for_write`
        before them, as the vault does, so a concurrent rotation queues instead of deadlocking."""
        org_id = self._require_org_writer(principal)
        check_name(name)
        if not 1 <= len(value) <= MAX_VALUE:
            raise InvalidInput(f"a secret value is 1-{MAX_VALUE} characters", field="value")
        if len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"at most {MAX_DESCRIPTION} characters", field="description")
        lock_for_write(session)
        keyring = self._reload()
        row = _find(session, org_id, name)
        before = state_of(row) if row is not None else None
        sealed = keyring.encrypt(value.encode(), binding(org_id, name))
        if row is None:
            row = StoredSecret(org_id=org_id, name=name)
            row.updated_at = row.created_at = utcnow()
            session.add(row)
        row.description = description
        row.key_id, row.nonce, row.ciphertext = sealed
        action = "secret.create" if before is None else "secret.update"
        self.changes.record(session, principal, action, row, before=before, bump=False)
        return row

    def list(self, principal: Principal) -> Sequence[StoredSecret]:
        """The organization's secrets by name, metadata only: the sealed columns are not even
        loaded, and touching them on a listed row raises instead of reading them."""
        principal.require(Permission.SECRETS_READ)
        statement = (
            select(StoredSecret)
            .options(
                defer(StoredSecret.ciphertext, raiseload=True),
                defer(StoredSecret.nonce, raiseload=True),
            )
            .where(StoredSecret.org_id == principal.scope.org_id)
            .order_by(StoredSecret.name)
        )
        with self.store.read() as session:
            return session.scalars(statement).all()

    def delete(self, principal: Principal, name: str) -> None:
        with self.store.write() as session:
            if not self.delete_in(session, principal, name):
                raise NotFound(f"no secret named {name!r}", field="name")

    def delete_in(self, session: Session, principal: Principal, name: str) -> bool:
        """`delete` inside the caller's transaction (see `put_in`); False if there was none."""
        org_id = self._require_org_writer(principal)
        lock_for_write(session)
        row = _find(session, org_id, name)
        if row is None:
            return False
        self.changes.record_deletion(session, principal, "secret.delete", row, bump=False)
        return True

    def reveal(self, name: str, org_id: uuid.UUID) -> str:
        """The plaintext, for the gateway's own use only (never over HTTP, so no principal)."""
        with self.store.read() as session:
            row = _find(session, org_id, name)
            if row is None:
                raise NotFound(f"no secret named {name!r}", field="name")
        return self._unseal(row)

    def reveal_in(
        self, session: Session, org_id: uuid.UUID, names: Iterable[str]
    ) -> dict[str, str]:
        """The plaintexts of `names` in one query, for the gateway's routing table. A secret
        that is missing or cannot be decrypted is left out (and logged), so one bad secret
        disables what uses it instead of everything."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        rows = session.scalars(
            select(StoredSecret).where(StoredSecret.org_id == org_id, StoredSecret.name.in_(wanted))
        ).all()
        plaintexts: dict[str, str] = {}
        for row in rows:
            try:
                plaintexts[row.name] = self._unseal(row)
            except Exception as exc:  # one unreadable secret must not take the rest down
                log.warning("secret %s cannot be decrypted: %s", row.name, exc)
        return plaintexts

    def rotate_master_key(self, principal: Principal) -> int:
        """Re-encrypt every secret under a new master key; returns how many were re-encrypted.

        The order makes a crash at any point lose nothing: (1) the new key is written and
        fsynced beside the old one, and every later load can decrypt with it; (2) all rows are
        re-encrypted and committed in one transaction, with the audit entry; (3) only then does
        the new key replace the old file. Re-running after a crash resumes with the staged key."""
        self._require_org_writer(principal)
        current = self._reload()
        staged = current.stage_rotation()
        new = staged.keyring
        with self.store.write() as session:
            _lock(session, _LOCK_FOR_ROTATION)
            rows = session.scalars(select(StoredSecret).order_by(StoredSecret.id)).all()
            for row in rows:
                aad = binding(row.org_id, row.name)
                plaintext = new.decrypt(row.key_id, row.nonce, row.ciphertext, aad)
                row.key_id, row.nonce, row.ciphertext = new.encrypt(plaintext, aad)
            session.flush()
            self.changes.audit.append(
                session,
                actor=principal.actor,
                action=ROTATE_ACTION,
                resource_type="master_key",
                resource_id=new.current_key_id,
                before={"key_id": staged.retired_key_id},
                after={"key_id": new.current_key_id},
            )
        current.complete_rotation(staged)
        self.keyring = new
        return len(rows)

    # -- helpers --------------------------------------------------------------------------------

    def _require_org_writer(self, principal: Principal) -> uuid.UUID:
        """Secrets belong to the organization, so only an organization-wide key may change them."""
        principal.require(Permission.SECRETS_WRITE)
        principal.require_within(ScopePath(principal.scope.org_id))
        return principal.scope.org_id

    def _reload(self) -> MasterKeyring:
        self.keyring = self.keyring.reloaded()
        return self.keyring

    def _unseal(self, row: StoredSecret) -> str:
        """A key id this process does not know means another process rotated the master key
        since this one loaded it: re-read the keys once before giving up."""
        sealed = (row.key_id, row.nonce, row.ciphertext)
        aad = binding(row.org_id, row.name)
        try:
            plaintext = self.keyring.decrypt(*sealed, aad)
        except UnknownMasterKey:
            plaintext = self._reload().decrypt(*sealed, aad)
        return plaintext.decode()


def _find(session: Session, org_id: uuid.UUID, name: str) -> StoredSecret | None:
    return session.scalars(
        select(StoredSecret).where(StoredSecret.org_id == org_id, StoredSecret.name == name)
    ).first()


def lock_for_write(session: Session) -> None:
    """Take the lock a secret write holds. `put_in` and `delete_in` take it themselves; a
    transaction that writes other audited rows before them takes it first (see `put_in`)."""
    _lock(session, _LOCK_FOR_WRITE)


def _lock(session: Session, statement: str) -> None:
    """Start the transaction holding the lock a write needs before it picks a key. On SQLite the
    first statement's `BEGIN IMMEDIATE` already takes the database write lock."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(statement)
