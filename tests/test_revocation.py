"""A revoked key stops working on every replica within a second."""

from __future__ import annotations

import time

import httpx
import pytest

from capstan.config import Settings
from capstan.errors import Unauthenticated
from capstan.identity.key_material import hash_key
from tests.apiclient import bearer, make_key
from tests.conftest import Capstan
from tests.databases import require_redis
from tests.servers import RunningServer, start_server


def seconds_until_refused(client: httpx.Client, key: str, limit: float = 3.0) -> float:
    start = time.monotonic()
    while client.get("/api/v1/keys", headers=bearer(key)).status_code != 401:
        if time.monotonic() - start > limit:
            return float("inf")
        time.sleep(0.02)
    return time.monotonic() - start


def revoke_on_one_and_time_the_other(
    first: RunningServer, second: RunningServer, admin_key: str
) -> float:
    with (
        httpx.Client(base_url=first.url, headers=bearer(admin_key)) as one,
        httpx.Client(base_url=second.url) as two,
    ):
        victim = make_key(one, "admin")
        assert two.get("/api/v1/keys", headers=bearer(victim["key"])).status_code == 200
        assert one.post(f"/api/v1/keys/{victim['id']}/revoke").status_code == 200
        return seconds_until_refused(two, victim["key"])


def test_a_key_revoked_on_one_replica_fails_on_another_within_one_second(
    capstan: Capstan, server: RunningServer
) -> None:
    replica = start_server(capstan.settings)
    try:
        assert revoke_on_one_and_time_the_other(server, replica, capstan.admin_key) < 1.0
    finally:
        replica.stop()


@pytest.mark.redis
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_with_redis_a_revocation_is_pushed_to_replicas_without_waiting_for_a_poll(
    capstan: Capstan,
) -> None:
    redis_url = require_redis()
    # A 30 s poll interval: only the Redis channel can deliver the change within a second.
    settings = Settings(
        **{**capstan.settings.model_dump(), "redis_url": redis_url, "config_poll_interval": 30.0}
    )
    first, second = start_server(settings), start_server(settings)
    try:
        time.sleep(0.3)  # both replicas subscribed
        assert revoke_on_one_and_time_the_other(first, second, capstan.admin_key) < 1.0
    finally:
        first.stop()
        second.stop()


def test_a_lookup_that_raced_a_revocation_is_not_cached(capstan: Capstan) -> None:
    """A lookup reads the key, the key is revoked and the cache cleared, then the lookup
    finishes: its stale answer must not be cached, or the revocation would be undone."""
    authenticator = capstan.services.authenticator
    principal = authenticator.authenticate(capstan.admin_key)
    authenticator.clear()
    digest = hash_key(capstan.admin_key)
    _, generation = authenticator._cached(digest)
    stale = authenticator._lookup(digest)  # read before the revocation lands
    assert principal.key_id is not None
    capstan.services.keys.revoke(principal, principal.key_id)
    authenticator.clear()  # what the config watcher does on the version bump
    authenticator._remember(digest, stale, generation)
    with pytest.raises(Unauthenticated, match="revoked"):
        authenticator.authenticate(capstan.admin_key)
