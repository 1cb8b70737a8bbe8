"""Bringing a Capstan home to life: folder, master key, schema, organization, first admin key.

Idempotent: run again, it migrates to head and changes nothing else; the bootstrap admin key is
minted only while no active admin key exists, and is shown exactly once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import select

from capstan.config import Settings
from capstan.governance.secrets.keyring import MasterKeyring
from capstan.identity.api_keys import IssuedKey, KeyRequest
from capstan.identity.principal import Principal
from capstan.identity.roles import Role
from capstan.identity.scope import ScopePath
from capstan.services import Services
from capstan.store import migrate
from capstan.store.schema import ApiKey, Organization

SYSTEM_ACTOR = "system:init"
DEFAULT_ORGANIZATION = "default"


@dataclass(frozen=True, slots=True)
class InitResult:
    organization: Organization
    admin_key: IssuedKey | None


def prepare_home(settings: Settings) -> None:
    for folder in (settings.home, settings.artifacts_dir, settings.spool_dir):
        folder.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.home, 0o700)


def system_principal(org: Organization) -> Principal:
    return Principal(actor=SYSTEM_ACTOR, role=Role.ADMIN, scope=ScopePath(org.id))


def initialize(services: Services, organization: str = DEFAULT_ORGANIZATION) -> InitResult:
    prepare_home(services.settings)
    MasterKeyring.load(services.settings)
    migrate.upgrade(services.store)
    with services.store.write() as session:
        org = services.directory.ensure_organization(session, SYSTEM_ACTOR, organization)
        has_admin = session.scalars(
            select(ApiKey.id).where(ApiKey.role == Role.ADMIN.value, ApiKey.revoked_at.is_(None))
        ).first()
    issued = None
    if has_admin is None:
        request = KeyRequest(role=Role.ADMIN, name="bootstrap admin", service="bootstrap")
        issued = services.keys.create(system_principal(org), request)
    return InitResult(organization=org, admin_key=issued)
