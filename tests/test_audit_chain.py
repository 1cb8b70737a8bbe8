"""The chain arithmetic, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from capstan.governance.audit.chain import (
    GENESIS_HASH,
    canonical_json,
    digest,
    entry_hash,
    verify_chain,
)


def build_chain(length: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for seq in range(1, length + 1):
        fields = {
            "seq": seq,
            "time": f"2026-11-25T06:00:{seq % 60:02d}.000000Z",
            "actor": f"key:{seq}",
            "action": "department.create",
            "resource_type": "departments",
            "resource_id": f"r{seq}",
            "before_digest": None,
            "after_digest": digest({"name": f"d{seq}"}),
        }
        entry = {**fields, "prev_hash": prev, "hash": entry_hash(fields, prev)}
        entries.append(entry)
        prev = entry["hash"]
    return entries


def test_an_untouched_chain_verifies() -> None:
    assert verify_chain(build_chain(20)) == (20, None)


def test_an_empty_chain_verifies() -> None:
    assert verify_chain([]) == (0, None)


@given(
    st.integers(min_value=1, max_value=10),
    st.sampled_from(["actor", "action", "resource_id", "time", "after_digest"]),
)
def test_changing_any_field_of_any_entry_names_that_entry(seq: int, field: str) -> None:
    chain = build_chain(10)
    chain[seq - 1][field] = "tampered"
    checked, broken = verify_chain(chain)
    assert broken is not None
    assert broken.seq == seq
    assert checked == seq - 1


def test_recomputing_a_tampered_entrys_hash_breaks_the_next_link() -> None:
    chain = build_chain(5)
    chain[1]["actor"] = "someone-else"
    chain[1]["hash"] = entry_hash(chain[1], chain[1]["prev_hash"])
    _, broken = verify_chain(chain)
    assert broken is not None
    assert broken.seq == 3


def test_a_deleted_entry_is_reported_as_missing() -> None:
    chain = build_chain(5)
    del chain[2]
    _, broken = verify_chain(chain)
    assert broken is not None
    assert broken.seq == 3
    assert "missing" in broken.reason


def test_canonical_json_is_independent_of_key_order() -> None:
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1}) == b'{"a":2,"b":1}'


def test_digests_cover_dates_and_are_none_without_state() -> None:
    moment = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    assert digest(None) is None
    assert digest({"at": moment}) != digest({"at": moment.replace(minute=1)})
