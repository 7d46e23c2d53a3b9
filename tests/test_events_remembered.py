"""The receiver remembers a token's receiver between requests (PostgreSQL): a notification
that only needs storing is written by one statement that also checks the receiver and its
connection are unchanged. Whatever changed since -- the secret rotated, events turned off,
the connection removed or its options changed, the flood limit reached -- must be answered
exactly as without the memory. On SQLite nothing is remembered; the same answers hold."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from imagesync import events
from imagesync.events import EventReceiver, RefreshPending, RegistryEvent
from imagesync.models import Registry
from tests.support.registry_events import (
    distribution_envelope,
    events_turned_on,
    hook_post,
    swr_ee_event,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_coalescing_wait(settings):
    settings.REGISTRY_EVENTS_COALESCE_MS = 0


@pytest.fixture
def warm(client, registry):
    """Events on, and one notification accepted: the process now knows the receiver."""
    receiver, secret = events_turned_on(registry)
    body = distribution_envelope([("push", "team/api", "warm")])
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 202
    return receiver, secret


def push(client, receiver, secret, tag: str = "1.0", path: str = "team/api"):
    body = distribution_envelope([("push", path, tag)])
    return hook_post(client, receiver, body, f"Bearer {secret}").status_code


def test_a_known_receiver_stores_a_notification_in_one_statement(client, warm):
    receiver, secret = warm
    with CaptureQueriesContext(connection) as queries:
        assert push(client, receiver, secret, "2.0") == 202
    assert RegistryEvent.objects.filter(receiver=receiver).count() == 2
    assert RefreshPending.objects.get(path="team/api").task is None
    if connection.vendor == "postgresql":
        assert len(queries) == 1, [q["sql"][:80] for q in queries.captured_queries]


def test_a_rotated_secret_is_refused_at_once_by_a_process_that_knew_the_old_one(client, warm):
    receiver, old = warm
    new = EventReceiver.objects.get(pk=receiver.pk).rotate()
    assert push(client, receiver, old, "2.0") == 401
    assert push(client, receiver, new, "3.0") == 202
    receiver.refresh_from_db()
    assert receiver.refused_secret == 1
    stored = RegistryEvent.objects.filter(receiver=receiver).count()
    assert stored == 2  # the warm-up's and the new secret's; nothing from the old secret


def test_turned_off_after_it_was_known_is_404(client, warm):
    receiver, secret = warm
    EventReceiver.objects.get(pk=receiver.pk).disable()
    assert push(client, receiver, secret, "2.0") == 404
    assert RegistryEvent.objects.filter(receiver=receiver).count() == 1


def test_a_connection_removed_after_it_was_known_is_counted_and_does_nothing(client, warm):
    receiver, secret = warm
    Registry.objects.get(pk=receiver.registry_id).remove()
    assert push(client, receiver, secret, "2.0") == 202
    receiver.refresh_from_db()
    assert receiver.ignored_removed == 1
    assert not RefreshPending.objects.exists()


def test_options_changed_after_it_was_known_decide_the_types_followed(client, project):
    swr = Registry.objects.create(
        project=project,
        kind="swr",
        name="swr",
        endpoint="https://swr-api.cn-north-4.myhuaweicloud.com",
        options={"region": "cn-north-4", "project_id": "p"},
    )
    receiver, secret = events_turned_on(swr)
    first = swr_ee_event("ns/app", "1.0")
    assert hook_post(client, receiver, first, f"Bearer {secret}").status_code == 202
    assert RefreshPending.objects.count() == 1
    RefreshPending.objects.all().delete()
    Registry.objects.filter(pk=swr.pk).update(options={**swr.options, "enterprise": False})
    second = swr_ee_event("ns/app", "2.0")
    assert hook_post(client, receiver, second, f"Bearer {secret}").status_code == 202
    receiver.refresh_from_db()
    assert receiver.ignored_type == 1 and not RefreshPending.objects.exists()


def test_the_flood_limit_holds_for_a_known_receiver(client, warm, settings):
    receiver, secret = warm
    settings.REGISTRY_EVENTS_PER_MINUTE = 3  # the warm-up was the first of the minute
    statuses = [push(client, receiver, secret, str(i)) for i in range(4)]
    assert statuses == [202, 202, 429, 429]
    receiver.refresh_from_db()
    assert receiver.refused_rate_limited == 2


def test_refusals_and_ignored_events_of_a_known_receiver_are_counted(client, warm):
    receiver, secret = warm
    assert hook_post(client, receiver, b"{not json", f"Bearer {secret}").status_code == 400
    pull = distribution_envelope([("pull", "team/api", "warm")])
    assert hook_post(client, receiver, pull, f"Bearer {secret}").status_code == 202
    again = distribution_envelope([("push", "team/api", "warm")])
    duplicate = json.loads(again)
    duplicate["events"][0]["id"] = "same-id"
    body = json.dumps(duplicate).encode()
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 202
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 202
    receiver.refresh_from_db()
    assert (receiver.refused_malformed, receiver.ignored_pull, receiver.duplicates) == (1, 1, 1)
    assert RegistryEvent.objects.filter(receiver=receiver).count() == 2


def test_the_memory_is_bounded(client, registry, monkeypatch):
    monkeypatch.setattr(events, "_KNOWN_MAX", 2)
    receiver, secret = events_turned_on(registry)
    assert push(client, receiver, secret) == 202
    assert len(events._known) <= 2


def test_a_redis_connection_that_was_cut_is_made_again(monkeypatch, redis_url):
    """The receiver keeps its own Redis connection per thread: after the server dropped it,
    the next count fails (and is not trusted), the one after it counts again."""
    import uuid

    import redis
    from django.core.cache.backends.redis import RedisCache

    server = redis.Redis.from_url(redis_url)
    redis_cache = RedisCache(redis_url, {})
    monkeypatch.setattr(events, "cache", redis_cache)
    monkeypatch.setattr(events._redis, "conn", None, raising=False)
    key = f"test:{uuid.uuid4().hex}"
    assert [events._count(key, 60), events._count(key, 60)] == [1, 2]
    backend = redis_cache._cache
    mine = events._redis_command(backend, "CLIENT", "ID")
    server.client_kill_filter(_id=mine)
    with pytest.raises(redis.ConnectionError):
        events._count(key, 60)
    assert events._count(key, 60) == 3
    assert 0 < server.ttl(redis_cache.make_and_validate_key(key)) <= 60
    assert events._add(key + ":q", 5) is True and events._add(key + ":q", 5) is False
    server.delete(
        redis_cache.make_and_validate_key(key), redis_cache.make_and_validate_key(key + ":q")
    )
