"""Provider credentials: a literal key sealed in the vault inside the config change's own
transaction, and every credential reference resolved when the routing table is built.

`SecretVault.put` runs its own transaction, which would split a provider write in two (and on
SQLite wait on the write lock its caller already holds), so the literal key is sealed here with
the vault's own pieces (its keyring, the `binding` its ciphertexts are tied to, its table lock
on PostgreSQL) and audited like any vault write. Reading goes the other way in bulk: one query
for every secret the table needs, decrypted in memory, so a reload costs a few queries however
many providers there are.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from capstan.clock import utcnow
from capstan.gateway.config.specs import ENV_REF, SECRET_REF
from capstan.governance.secrets.keyring import UnknownMasterKey
from capstan.governance.secrets.vault import MAX_NAME, NAME_PATTERN, SecretVault, binding
from capstan.identity.changes import state_of
from capstan.identity.principal import Principal
from capstan.store.schema import StoredSecret

log = logging.getLogger(__name__)
_SECRETS_WRITE_LOCK = "LOCK TABLE secrets IN ROW EXCLUSIVE MODE"


def secret_name_for(provider: str) -> str:
    """`provider-<name>-api-key`, or, when the provider's name has characters or a length the
    vault does not accept, a readable prefix plus a digest of the exact name (no collisions)."""
    plain = f"provider-{provider}-api-key"
    if len(plain) <= MAX_NAME and NAME_PATTERN.match(plain):
        return plain
    readable = re.sub(r"[^A-Za-z0-9._-]", "-", provider)[:50]
    digest = hashlib.sha256(provider.encode()).hexdigest()[:16]
    return f"provider-{readable}-{digest}-api-key"


def lock_secrets(session: Session) -> None:
    """Take the vault's writer lock first, before any audit append, in the same order as the
    vault, so a concurrent master-key rotation queues instead of deadlocking."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_SECRETS_WRITE_LOCK)


def seal_key(
    session: Session,
    vault: SecretVault,
    principal: Principal,
    org_id: uuid.UUID,
    provider: str,
    key: str,
) -> str:
    """Store `key` as the provider's vault secret in `session`'s transaction; its name back."""
    name = secret_name_for(provider)
    keyring = vault.keyring = vault.keyring.reloaded()
    row = _secret(session, org_id, name)
    before = state_of(row) if row is not None else None
    if row is None:
        row = StoredSecret(org_id=org_id, name=name)
        row.updated_at = row.created_at = utcnow()
        session.add(row)
    else:
        row.updated_at = utcnow()
    row.description = f"API key of gateway provider {provider}"
    row.key_id, row.nonce, row.ciphertext = keyring.encrypt(key.encode(), binding(org_id, name))
    action = "secret.create" if before is None else "secret.update"
    vault.changes.record(session, principal, action, row, before=before, bump=False)
    return name


def drop_key(
    session: Session, vault: SecretVault, principal: Principal, org_id: uuid.UUID, name: str
) -> None:
    """Delete a key Capstan stored for a provider (gone with the provider or its literal key)."""
    row = _secret(session, org_id, name)
    if row is None:
        return
    before = state_of(row)
    session.delete(row)
    session.flush()
    vault.changes.audit.append(
        session,
        actor=principal.actor,
        action="secret.delete",
        resource_type=StoredSecret.__tablename__,
        resource_id=str(row.id),
        before=before,
        after=None,
    )


def _secret(session: Session, org_id: uuid.UUID, name: str) -> StoredSecret | None:
    return session.scalars(
        select(StoredSecret).where(StoredSecret.org_id == org_id, StoredSecret.name == name)
    ).first()


@dataclass
class Resolver:
    """Turns `env:NAME` / `secret:NAME` into values for one routing-table load. What cannot be
    resolved comes back as None and is noted in `problems`, so one missing key disables one
    provider instead of failing the whole load."""

    environ: Mapping[str, str]
    secrets: dict[str, str | None] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def load_secrets(
        self, session: Session, vault: SecretVault, org_id: uuid.UUID, refs: Iterable[str | None]
    ) -> None:
        names = {m.group(1) for ref in refs if ref and (m := SECRET_REF.match(ref))}
        if not names:
            return
        rows = session.scalars(
            select(StoredSecret).where(
                StoredSecret.org_id == org_id, StoredSecret.name.in_(sorted(names))
            )
        ).all()
        for row in rows:
            self.secrets[row.name] = _decrypt(vault, row)

    def resolve(self, owner: str, ref: str | None) -> str | None:
        if ref is None:
            return None
        if env := ENV_REF.match(ref):
            value = self.environ.get(env.group(1)) or None
            if value is None:
                self.problems[owner] = f"environment variable {env.group(1)} is not set"
            return value
        if secret := SECRET_REF.match(ref):
            value = self.secrets.get(secret.group(1))
            if value is None:
                self.problems[owner] = f"secret {secret.group(1)} is missing or unreadable"
            return value
        self.problems[owner] = "credential reference is not env:NAME or secret:NAME"
        return None


def _decrypt(vault: SecretVault, row: StoredSecret) -> str | None:
    sealed = (row.key_id, row.nonce, row.ciphertext)
    aad = binding(row.org_id, row.name)
    try:
        try:
            return vault.keyring.decrypt(*sealed, aad).decode()
        except UnknownMasterKey:  # another process rotated the master key since we loaded it
            vault.keyring = vault.keyring.reloaded()
            return vault.keyring.decrypt(*sealed, aad).decode()
    except Exception as exc:  # one unreadable secret must not take the whole table down
        log.warning("secret %s cannot be decrypted: %s", row.name, exc)
        return None
