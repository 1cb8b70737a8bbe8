"""The audit chain in the store: written with each change, verifiable, concurrent-safe."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from capstan.bootstrap import system_principal
from capstan.clock import utcnow
from capstan.config import Settings
from capstan.errors import Conflict
from capstan.services import Services
from capstan.store.schema import AuditEntry
from tests.conftest import TEST_MASTER_KEY, Capstan


def admin_of(capstan: Capstan):  # type: ignore[no-untyped-def]
    return system_principal(capstan.services.directory.organization())


def entry_count(capstan: Capstan) -> int:
    with capstan.services.store.read() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


def test_a_change_writes_one_entry_naming_actor_action_and_resource(capstan: Capstan) -> None:
    before = entry_count(capstan)
    department = capstan.services.directory.create_department(admin_of(capstan), "risk")
    entries = capstan.services.audit.query(resource=str(department.id))
    assert entry_count(capstan) == before + 1
    assert [(e.actor, e.action, e.resource_type) for e in entries] == [
        ("system:init", "department.create", "departments")
    ]
    assert entries[0].before_digest is None
    assert entries[0].after_digest is not None


def test_a_failed_change_leaves_no_entry_and_no_gap(capstan: Capstan) -> None:
    admin = admin_of(capstan)
    capstan.services.directory.create_department(admin, "risk")
    count = entry_count(capstan)
    with pytest.raises(Conflict):
        capstan.services.directory.create_department(admin, "risk")
    capstan.services.directory.create_department(admin, "claims")
    assert entry_count(capstan) == count + 1
    assert capstan.services.audit.verify().ok


def test_an_untouched_chain_verifies(capstan: Capstan) -> None:
    for name in ("a", "b", "c"):
        capstan.services.directory.create_department(admin_of(capstan), name)
    result = capstan.services.audit.verify()
    assert result.ok
    assert result.checked == entry_count(capstan)


def test_changing_one_row_in_the_database_names_that_seq(capstan: Capstan) -> None:
    for name in ("a", "b", "c"):
        capstan.services.directory.create_department(admin_of(capstan), name)
    with capstan.services.store.write() as session:
        session.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    result = capstan.services.audit.verify()
    assert result.broken is not None
    assert result.broken.seq == 3


def test_deleting_a_row_names_the_missing_seq(capstan: Capstan) -> None:
    for name in ("a", "b", "c"):
        capstan.services.directory.create_department(admin_of(capstan), name)
    with capstan.services.store.write() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    broken = capstan.services.audit.verify().broken
    assert broken is not None
    assert broken.seq == 2


def test_query_filters_by_actor_and_since(capstan: Capstan) -> None:
    capstan.services.directory.create_department(admin_of(capstan), "a")
    assert capstan.services.audit.query(actor="nobody") == []
    assert capstan.services.audit.query(since=utcnow() + timedelta(minutes=1)) == []
    assert len(capstan.services.audit.query(actor="system:init")) == entry_count(capstan)


def test_export_writes_every_entry_as_jsonl_and_csv(capstan: Capstan) -> None:
    capstan.services.directory.create_department(admin_of(capstan), "a")
    lines = "".join(capstan.services.audit.export(since=None, fmt="jsonl")).splitlines()
    rows = "".join(capstan.services.audit.export(since=None, fmt="csv")).splitlines()
    assert len(lines) == entry_count(capstan)
    assert rows[0].startswith("seq,time,actor,action")
    assert len(rows) == entry_count(capstan) + 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_concurrent_threads_on_sqlite_leave_one_gap_free_chain(capstan: Capstan) -> None:
    admin = admin_of(capstan)
    start = entry_count(capstan)

    def writer(worker: int) -> None:
        for i in range(10):
            capstan.services.directory.create_department(admin, f"t{worker}-{i}")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = capstan.services.audit.verify()
    assert result.ok, result.broken
    assert result.checked == start + 40


def _write_departments(database_url: str, home: str, worker: int, count: int) -> None:
    settings = Settings(home=home, database_url=database_url, master_key=TEST_MASTER_KEY)
    services = Services.build(settings)
    try:
        admin = system_principal(services.directory.organization())
        for i in range(count):
            services.directory.create_department(admin, f"p{worker}-{i}")
    finally:
        services.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_eight_concurrent_processes_on_postgresql_leave_one_gap_free_chain(
    capstan: Capstan,
) -> None:
    start = entry_count(capstan)
    context = multiprocessing.get_context("spawn")
    url, home = capstan.settings.resolved_database_url, str(capstan.settings.home)
    with ProcessPoolExecutor(max_workers=8, mp_context=context) as pool:
        futures = [pool.submit(_write_departments, url, home, w, 15) for w in range(8)]
        for future in futures:
            future.result(timeout=120)
    result = capstan.services.audit.verify()
    assert result.ok, result.broken
    assert result.checked == start + 8 * 15
