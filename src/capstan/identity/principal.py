"""The authenticated caller, as every handler sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from capstan.errors import Forbidden
from capstan.identity.roles import Permission, Role, role_can
from capstan.identity.scope import ScopePath


@dataclass(frozen=True, slots=True)
class Principal:
    actor: str
    role: Role
    scope: ScopePath
    key_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    user_id: uuid.UUID | None = None
    # The key's project keeps request and response bodies in its request events.
    log_payloads: bool = False

    def require(self, permission: Permission) -> None:
        if not role_can(self.role, permission):
            raise Forbidden(f"the {self.role} role may not {permission}")

    def require_within(self, target: ScopePath) -> None:
        if not self.scope.contains(target):
            raise Forbidden(f"this key's {self.scope.level} scope does not cover that resource")
