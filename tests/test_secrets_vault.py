"""The secret vault on a real, migrated store: sealing, audit, authorization, key rotation."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from capstan.config import Settings
from capstan.errors import Forbidden, InvalidInput, NotFound
from capstan.governance.audit import AuditLog
from capstan.governance.secrets.keyring import DecryptionFailed, MasterKeyring, encode_key
from capstan.governance.secrets.vault import SecretVault
from capstan.identity.changes import ChangeRecorder
from capstan.identity.config_version import ConfigVersions
from capstan.identity.principal import Principal
from capstan.identity.roles import Role
from capstan.identity.scope import ScopePath
from capstan.store import Store, create_store, migrate
from capstan.store.schema import Organization, StoredSecret

VALUE = "sk-live-0123456789abcdef"


@dataclass
class Installation:
    store: Store
    audit: AuditLog
    changes: ChangeRecorder
    settings: Settings
    vault: SecretVault
    admin: Principal

    def vault_after_restart(self) -> SecretVault:
        """A fresh process: keys loaded again from settings and files."""
        return SecretVault(self.store, self.changes, MasterKeyring.load(self.settings))

    def rows(self) -> list[StoredSecret]:
        with self.store.read() as session:
            return list(session.scalars(select(StoredSecret).order_by(StoredSecret.name)))


def install(tmp_path: Path, settings: Settings) -> Iterator[Installation]:
    store = create_store(f"sqlite:///{tmp_path}/c.db")
    migrate.upgrade(store)
    audit = AuditLog(store)
    changes = ChangeRecorder(audit, ConfigVersions(store))
    with store.write() as session:
        org = Organization(name="acme")
        session.add(org)
    admin = Principal(actor="test", role=Role.ADMIN, scope=ScopePath(org.id))
    vault = SecretVault(store, changes, MasterKeyring.load(settings))
    yield Installation(store, audit, changes, settings, vault, admin)
    store.dispose()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Installation]:
    """Key in `$CAPSTAN_HOME/master.key` (file mode)."""
    yield from install(tmp_path, Settings(home=tmp_path / "home"))


@pytest.fixture
def env_site(tmp_path: Path) -> Iterator[Installation]:
    """Key in CAPSTAN_MASTER_KEY (env mode)."""
    key = SecretStr(encode_key(bytes(range(32))))
    yield from install(tmp_path, Settings(home=tmp_path / "home", master_key=key))


def test_value_is_stored_encrypted(site: Installation) -> None:
    site.vault.put(site.admin, "openai", VALUE)
    (row,) = site.rows()
    assert VALUE.encode() not in row.ciphertext
    assert row.key_id == site.vault.keyring.current_key_id
    assert len(row.nonce) == 12


def test_reveal_returns_what_was_put(site: Installation) -> None:
    site.vault.put(site.admin, "openai", VALUE, description="prod key")
    assert site.vault.reveal("openai", site.admin.scope.org_id) == VALUE


def test_put_again_replaces_the_value_and_is_audited_as_an_update(
    site: Installation,
) -> None:
    created = site.vault.put(site.admin, "openai", "first")
    updated = site.vault.put(site.admin, "openai", "second", description="rotated")
    assert created.created_at == created.updated_at
    assert updated.id == created.id
    assert updated.updated_at > updated.created_at
    assert site.vault.reveal("openai", site.admin.scope.org_id) == "second"
    actions = [e.action for e in site.audit.query(resource="secrets")]
    assert actions == ["secret.create", "secret.update"]


def test_list_never_exposes_the_value(site: Installation) -> None:
    site.vault.put(site.admin, "openai", VALUE, description="prod key")
    (listed,) = site.vault.list(site.admin)
    assert (listed.name, listed.description) == ("openai", "prod key")
    with pytest.raises(Exception, match="ciphertext"):
        _ = listed.ciphertext  # not loaded, and refuses to load


def test_reveal_of_a_missing_secret_is_not_found(site: Installation) -> None:
    with pytest.raises(NotFound) as caught:
        site.vault.reveal("nope", site.admin.scope.org_id)
    assert caught.value.field == "name"


def test_delete_removes_the_secret_and_is_audited(site: Installation) -> None:
    site.vault.put(site.admin, "openai", VALUE)
    site.vault.delete(site.admin, "openai")
    assert site.rows() == []
    last = site.audit.query(resource="secrets")[-1]
    assert (last.action, last.after_digest) == ("secret.delete", None)
    assert site.audit.verify().ok


def test_delete_of_a_missing_secret_is_not_found(site: Installation) -> None:
    with pytest.raises(NotFound):
        site.vault.delete(site.admin, "nope")


def test_swapped_ciphertexts_fail_to_decrypt(site: Installation) -> None:
    """The ciphertext is bound to its organization and name, so rows cannot be swapped."""
    site.vault.put(site.admin, "a", "value of a")
    site.vault.put(site.admin, "b", "value of b")
    a, b = site.rows()
    with site.store.write() as session:
        session.execute(
            update(StoredSecret)
            .where(StoredSecret.id == a.id)
            .values(nonce=b.nonce, ciphertext=b.ciphertext)
        )
    with pytest.raises(DecryptionFailed):
        site.vault.reveal("a", site.admin.scope.org_id)


@pytest.mark.parametrize("name", ["", "-leading-dash", "has space", "slash/name", "x" * 101])
def test_invalid_names_are_rejected(site: Installation, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        site.vault.put(site.admin, name, VALUE)
    assert caught.value.field == "name"


def test_a_developer_cannot_put(site: Installation) -> None:
    developer = Principal(actor="dev", role=Role.DEVELOPER, scope=site.admin.scope)
    with pytest.raises(Forbidden):
        site.vault.put(developer, "openai", VALUE)
    assert site.rows() == []


def test_an_admin_scoped_below_the_organization_cannot_put(site: Installation) -> None:
    scope = ScopePath(site.admin.scope.org_id, department_id=site.admin.scope.org_id)
    team_admin = Principal(actor="dept", role=Role.ADMIN, scope=scope)
    with pytest.raises(Forbidden):
        site.vault.put(team_admin, "openai", VALUE)


def test_rotation_re_encrypts_every_row_under_the_new_key(site: Installation) -> None:
    for name in ("openai", "anthropic", "cohere"):
        site.vault.put(site.admin, name, f"value of {name}")
    old_key = site.vault.keyring.current_key_id
    entries_before = site.audit.verify().checked

    count = site.vault.rotate_master_key(site.admin)

    new_key = site.vault.keyring.current_key_id
    assert count == 3
    assert new_key != old_key
    assert {row.key_id for row in site.rows()} == {new_key}
    restarted = site.vault_after_restart()
    assert restarted.keyring.key_ids == [new_key]
    for name in ("openai", "anthropic", "cohere"):
        assert restarted.reveal(name, site.admin.scope.org_id) == f"value of {name}"
    home = site.settings.home
    assert not (home / "master.key.next").exists()
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    verified = site.audit.verify()
    assert verified.ok
    assert verified.checked == entries_before + 1
    last = site.audit.query(resource="master_key")[-1]
    assert (last.action, last.resource_id) == ("secrets.rotate-master-key", new_key)


def test_a_server_started_before_a_rotation_still_reveals_after_it(
    site: Installation,
) -> None:
    running = site.vault_after_restart()
    site.vault.put(site.admin, "openai", VALUE)
    site.vault.rotate_master_key(site.admin)
    assert running.reveal("openai", site.admin.scope.org_id) == VALUE


def test_after_a_crash_with_master_key_next_left_behind_every_row_still_decrypts(
    site: Installation,
) -> None:
    """A crash after step 1 of a rotation (the next key written) or after step 2 (rows
    committed under it) leaves `master.key.next` beside `master.key`; loading reads both."""
    org_id = site.admin.scope.org_id
    site.vault.put(site.admin, "under-old", "old value")
    old_key = site.vault.keyring.current_key_id
    staged = site.vault.keyring.stage_rotation()  # crash right after writing the next key

    after_crash = site.vault_after_restart()
    after_crash.put(site.admin, "under-next", "next value")
    key_ids = {row.name: row.key_id for row in site.rows()}
    assert key_ids == {"under-old": old_key, "under-next": staged.keyring.current_key_id}
    assert after_crash.reveal("under-old", org_id) == "old value"
    assert after_crash.reveal("under-next", org_id) == "next value"


def test_rotating_again_after_a_crash_resumes_with_the_staged_key(site: Installation) -> None:
    site.vault.put(site.admin, "openai", VALUE)
    staged = site.vault.keyring.stage_rotation()  # then the process died

    after_crash = site.vault_after_restart()
    assert after_crash.rotate_master_key(site.admin) == 1

    assert after_crash.keyring.current_key_id == staged.keyring.current_key_id
    restarted = site.vault_after_restart()
    assert restarted.keyring.key_ids == [staged.keyring.current_key_id]
    assert restarted.reveal("openai", site.admin.scope.org_id) == VALUE


def test_rotation_with_an_env_key_stages_the_new_key_for_the_operator(
    env_site: Installation,
) -> None:
    env_site.vault.put(env_site.admin, "openai", VALUE)
    env_key = env_site.vault.keyring.current_key_id

    env_site.vault.rotate_master_key(env_site.admin)

    new_file = env_site.settings.home / "master.key.new"
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert not (env_site.settings.home / "master.key").exists()
    # Until the operator switches CAPSTAN_MASTER_KEY, a restart still reads every secret.
    restarted = env_site.vault_after_restart()
    assert restarted.keyring.current_key_id == env_key
    assert restarted.reveal("openai", env_site.admin.scope.org_id) == VALUE
    # After the switch (new key current, old one previous) it does too.
    switched = env_site.settings.model_copy(
        update={
            "master_key": SecretStr(new_file.read_text().strip()),
            "previous_master_keys": [env_site.settings.master_key],
        }
    )
    new_file.unlink()
    vault = SecretVault(env_site.store, env_site.changes, MasterKeyring.load(switched))
    assert vault.reveal("openai", env_site.admin.scope.org_id) == VALUE


def test_http_api_stores_lists_and_deletes_but_never_returns_a_value(site: Installation) -> None:
    from capstan.app import build_app
    from capstan.services import Services

    settings = site.settings.model_copy(update={"database_url": str(site.store.engine.url)})
    services = Services.build(settings)
    app = build_app(settings, services=services, local_principal=site.admin)

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://capstan") as http:
            return [
                await http.put("/api/v1/secrets/openai", json={"value": VALUE, "description": "p"}),
                await http.put("/api/v1/secrets/openai", json={"value": VALUE + "2"}),
                await http.get("/api/v1/secrets"),
                await http.delete("/api/v1/secrets/openai"),
                await http.delete("/api/v1/secrets/openai"),
            ]

    try:
        created, replaced, listed, deleted, missing = asyncio.run(calls())
    finally:
        services.close()
    assert (created.status_code, replaced.status_code) == (201, 200)
    assert set(listed.json()["items"][0]) == {
        "id", "name", "description", "key_id", "created_at", "updated_at"
    }  # fmt: skip
    assert listed.json()["next_cursor"] is None
    assert all(VALUE not in r.text for r in (created, replaced, listed))
    assert (deleted.status_code, missing.status_code) == (204, 404)
