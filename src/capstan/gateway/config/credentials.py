"""Provider credentials: a literal key stored in the vault inside the config change's own
transaction, and every credential reference resolved when the routing table is built.

Storing goes through `SecretVault.put_in`, so a provider write and its key commit together.
Reading goes the other way in bulk: one query for every secret the table needs, decrypted in
memory, so a reload costs a few queries however many providers there are.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from capstan.gateway.config.specs import ENV_REF, SECRET_REF
from capstan.governance.secrets.vault import MAX_NAME, NAME_PATTERN, SecretVault
from capstan.identity.principal import Principal


def secret_name_for(provider: str) -> str:
    """`provider-<name>-api-key`, or, when the provider's name has characters or a length the
    vault does not accept, a readable prefix plus a digest of the exact name (no collisions)."""
    plain = f"provider-{provider}-api-key"
    if len(plain) <= MAX_NAME and NAME_PATTERN.match(plain):
        return plain
    readable = re.sub(r"[^A-Za-z0-9._-]", "-", provider)[:50]
    digest = hashlib.sha256(provider.encode()).hexdigest()[:16]
    return f"provider-{readable}-{digest}-api-key"


def seal_key(
    session: Session, vault: SecretVault, principal: Principal, provider: str, key: str
) -> str:
    """Store `key` as the provider's vault secret in `session`'s transaction; its name back."""
    name = secret_name_for(provider)
    vault.put_in(session, principal, name, key, f"API key of gateway provider {provider}")
    return name


@dataclass
class Resolver:
    """Turns `env:NAME` / `secret:NAME` into values for one routing-table load. What cannot be
    resolved comes back as None and is noted in `problems`, so one missing key disables one
    provider instead of failing the whole load."""

    environ: Mapping[str, str]
    secrets: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def load_secrets(
        self, session: Session, vault: SecretVault, org_id: uuid.UUID, refs: Iterable[str | None]
    ) -> None:
        names = {m.group(1) for ref in refs if ref and (m := SECRET_REF.match(ref))}
        self.secrets.update(vault.reveal_in(session, org_id, names))

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
