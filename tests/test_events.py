"""Registry events: the receiver (authentication, limits, parsing, deduplication) and the
refresh it leads to (coalescing, reconcile through the connection's client, concurrency with a
full sync), with the fake registry client of tests/support/fakes.py."""

from __future__ import annotations

import json
import sys
import threading
import uuid

import pytest
from django.urls import reverse

from imagesync.events import EventReceiver, RefreshPending, RegistryEvent, refresh_registry
from imagesync.history import Change
from imagesync.models import Image, Registry, Repository, SyncRefused, SyncTask
from imagesync.tasks import run_sync_task
from tests.support.fakes import FakeClient, image
from tests.support.registry_events import (
    distribution_envelope,
    events_turned_on,
    hook_post,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_coalescing_wait(settings):
    settings.REGISTRY_EVENTS_COALESCE_MS = 0


@pytest.fixture
def events_on(registry):
    """(receiver, secret) of `registry` with events turned on."""
    return events_turned_on(registry)


def inventory(registry) -> dict[str, str]:
    rows = Image.objects.filter(repository__registry=registry)
    return {
        f"{path}:{tag}": digest
        for path, tag, digest in rows.values_list("repository__path", "tag", "digest")
    }


def event_tasks(project):
    return SyncTask.objects.filter(project=project, trigger=SyncTask.Trigger.EVENT)


# --- the receiver ---------------------------------------------------------------------------


def test_a_push_event_is_stored_once_and_marks_its_repository(client, events_on):
    receiver, secret = events_on
    body = distribution_envelope([("push", "team/api", "1.0")])
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 202
    assert hook_post(client, receiver, body, secret).status_code == 202  # verbatim, a retry
    assert RegistryEvent.objects.filter(receiver=receiver).count() == 1
    assert list(RefreshPending.objects.values_list("type", "path")) == [("other", "team/api")]
    receiver.refresh_from_db()
    assert receiver.duplicates == 1


@pytest.mark.parametrize("auth", [None, "", "Bearer ", "Bearer wrong", "Basic abc", "wrong"])
def test_a_wrong_or_missing_secret_is_401_counted_and_writes_nothing(client, events_on, auth):
    receiver, _secret = events_on
    body = distribution_envelope([("push", "team/api", "1.0")])
    assert hook_post(client, receiver, body, auth).status_code == 401
    receiver.refresh_from_db()
    assert receiver.refused_secret == 1
    assert not RegistryEvent.objects.exists() and not RefreshPending.objects.exists()


def test_one_connections_secret_never_works_for_another_url(client, project, events_on):
    _receiver, secret = events_on
    other = Registry.objects.create(
        project=project, kind="other", name="second", endpoint="https://r2.example.com"
    )
    other_receiver = EventReceiver.of(other)
    other_receiver.enable()
    body = distribution_envelope([("push", "team/api", "1.0")])
    assert hook_post(client, other_receiver, body, f"Bearer {secret}").status_code == 401


def test_the_receiver_url_names_neither_project_nor_registry(events_on, project, registry):
    receiver, _secret = events_on
    url = receiver.url()
    assert project.name not in url and registry.name not in url
    assert receiver.token in url and len(receiver.token) >= 24


def test_rotating_the_secret_stops_the_old_one_at_once(client, events_on):
    receiver, old = events_on
    new = receiver.rotate()
    assert new != old
    body = distribution_envelope([("push", "team/api", "1.0")])
    assert hook_post(client, receiver, body, f"Bearer {old}").status_code == 401
    assert hook_post(client, receiver, body, f"Bearer {new}").status_code == 202


def test_the_secret_is_stored_encrypted(events_on):
    receiver, secret = events_on
    stored = EventReceiver.objects.get(pk=receiver.pk).secret_encrypted
    assert secret not in stored and stored


def test_not_a_post_unknown_or_disabled_receivers(client, events_on):
    receiver, secret = events_on
    assert client.get(receiver.path()).status_code == 405
    unknown = reverse("imagesync:registry-events-receiver", args=["x" * 32])
    assert client.post(unknown, b"{}", content_type="application/json").status_code == 404
    receiver.disable()
    body = distribution_envelope([("push", "team/api", "1.0")])
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"events": 3}',
        b'{"events": [1]}',
        b"\xff\xfe",
        json.dumps(
            {"events": [{"action": "push", "target": {"repository": "../x", "tag": "1"}}]}
        ).encode(),
    ],
)
def test_a_malformed_body_is_400_and_counted(client, events_on, body):
    receiver, secret = events_on
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 400
    receiver.refresh_from_db()
    assert receiver.refused_malformed == 1
    assert not RefreshPending.objects.exists()


def test_a_body_over_the_cap_is_413(client, events_on, settings):
    settings.REGISTRY_EVENTS_MAX_BYTES = 2048
    receiver, secret = events_on
    body = distribution_envelope([("push", f"team/api{i}", "1.0") for i in range(40)])
    assert len(body) > 2048
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 413
    receiver.refresh_from_db()
    assert receiver.refused_too_large == 1 and not RefreshPending.objects.exists()


def test_a_flood_is_rate_limited_per_connection(client, events_on, settings):
    settings.REGISTRY_EVENTS_PER_MINUTE = 3
    receiver, secret = events_on
    statuses = [
        hook_post(
            client, receiver, distribution_envelope([("push", "a", str(i))]), secret
        ).status_code
        for i in range(5)
    ]
    assert statuses[:3] == [202, 202, 202] and statuses[3:] == [429, 429]
    receiver.refresh_from_db()
    assert receiver.refused_rate_limited == 2


def test_pulls_blobs_and_unknown_actions_are_accepted_and_ignored(client, events_on):
    receiver, secret = events_on
    body = distribution_envelope(
        [("pull", "team/api", "1.0"), ("mount", "team/api", None), ("frobnicate", "a", None)],
        blob_push="team/api",
    )
    assert hook_post(client, receiver, body, secret).status_code == 202
    receiver.refresh_from_db()
    assert (receiver.ignored_pull, receiver.ignored_blob, receiver.ignored_unknown) == (1, 2, 1)
    assert not RefreshPending.objects.exists() and not RegistryEvent.objects.exists()


def test_events_after_the_connection_was_removed_are_counted_and_do_nothing(client, events_on):
    receiver, secret = events_on
    receiver.registry.remove()
    body = distribution_envelope([("push", "team/api", "1.0")])
    assert hook_post(client, receiver, body, secret).status_code == 202
    receiver.refresh_from_db()
    assert receiver.registry is None and receiver.ignored_removed == 1
    assert not RefreshPending.objects.exists()


# --- the refresh ----------------------------------------------------------------------------


def test_a_push_event_refreshes_the_repository_as_an_event_task(client, fakes, events_on):
    receiver, secret = events_on
    registry = receiver.registry
    fakes[registry.name] = FakeClient({"team/api": [image("1.0")], "team/other": [image("x")]})
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1.0")]), secret)
    task_id = refresh_registry(registry.pk, wait=False)
    task = SyncTask.objects.get(pk=task_id)
    assert task.trigger == "event" and task.status == SyncTask.Status.SUCCEEDED
    assert list(task.results.values_list("repository_path", "status", "images_added")) == [
        ("team/api", "finished", 1)
    ]
    assert inventory(registry) == {"team/api:1.0": image("1.0").digest}  # team/other untouched
    assert list(Change.objects.values_list("source", "kind")) == [("event", "added")]
    assert fakes[registry.name].calls == ["team/api"]
    assert not RefreshPending.objects.exists()


def test_nothing_from_the_payload_is_written_into_the_inventory(client, fakes, events_on):
    receiver, secret = events_on
    fakes[receiver.registry.name] = FakeClient({"team/api": [image("2.0")]})
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "9.9")]), secret)
    refresh_registry(receiver.registry.pk, wait=False)
    assert inventory(receiver.registry) == {"team/api:2.0": image("2.0").digest}


def test_500_events_for_one_repository_cause_at_most_two_refreshes(client, fakes, events_on):
    receiver, secret = events_on
    registry = receiver.registry
    fakes[registry.name] = FakeClient({"team/api": [image("1.0")]})
    for i in range(500):
        body = distribution_envelope([("push", "team/api", f"v{i}")])
        assert hook_post(client, receiver, body, secret).status_code == 202
    assert RefreshPending.objects.count() == 1
    while refresh_registry(registry.pk, wait=False):
        pass
    assert 1 <= event_tasks(registry.project).count() <= 2
    assert fakes[registry.name].calls == ["team/api"]


def test_an_event_during_a_refresh_leads_to_one_more_refresh(client, fakes, events_on):
    receiver, secret = events_on
    registry = receiver.registry
    fake = fakes[registry.name] = FakeClient({"team/api": [image("1.0")]})

    def push_again():
        fake.hooks.pop("team/api")
        fake.repos["team/api"] = [image("1.0", "new content")]
        body = distribution_envelope([("push", "team/api", "1.0")])
        assert hook_post(client, receiver, body, secret).status_code == 202

    fake.hooks["team/api"] = push_again
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1.0")]), secret)
    refresh_registry(registry.pk, wait=False)
    assert RefreshPending.objects.filter(task__isnull=True).count() == 1  # released for later
    refresh_registry(registry.pk, wait=False)
    assert inventory(registry) == {"team/api:1.0": image("1.0", "new content").digest}
    assert not RefreshPending.objects.exists()


def test_a_delete_event_of_a_repository_that_no_longer_exists_removes_its_tags(
    client, fakes, events_on
):
    receiver, secret = events_on
    registry = receiver.registry
    fake = fakes[registry.name] = FakeClient({"team/api": [image("1.0"), image("2.0")]})
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1.0")]), secret)
    refresh_registry(registry.pk, wait=False)
    assert len(inventory(registry)) == 2
    del fake.repos["team/api"]  # the listing now answers not_found, the catalog lacks it
    hook_post(client, receiver, distribution_envelope([("delete", "team/api", None)]), secret)
    task = SyncTask.objects.get(pk=refresh_registry(registry.pk, wait=False))
    assert inventory(registry) == {}
    assert task.status == SyncTask.Status.SUCCEEDED and task.images_removed == 2
    assert Repository.objects.get(path="team/api").removed_at is not None
    assert set(Change.objects.filter(kind="removed").values_list("source", flat=True)) == {"event"}


def test_a_repository_the_registry_still_lists_but_cannot_read_keeps_its_tags(
    client, fakes, events_on
):
    from imagesync.registries.base import RegistryError

    receiver, secret = events_on
    registry = receiver.registry
    fake = fakes[registry.name] = FakeClient({"team/api": [image("1.0")]})
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1.0")]), secret)
    refresh_registry(registry.pk, wait=False)
    fake.repos["team/api"] = RegistryError("timeout", "The registry did not answer.")
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "2.0")]), secret)
    task = SyncTask.objects.get(pk=refresh_registry(registry.pk, wait=False))
    assert task.status == SyncTask.Status.FAILED and task.failure_code == "timeout"
    assert inventory(registry) == {"team/api:1.0": image("1.0").digest}


def test_a_full_sync_and_an_event_refresh_never_refuse_each_other(client, fakes, events_on):
    receiver, secret = events_on
    registry = receiver.registry
    project = registry.project
    fakes[registry.name] = FakeClient({"team/api": [image("1.0")]})
    full = SyncTask.objects.request(project, enqueue=False)  # queued: the project is busy
    with pytest.raises(SyncRefused):
        SyncTask.objects.request(project, enqueue=False)
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1.0")]), secret)
    refresh = SyncTask.objects.get(pk=refresh_registry(registry.pk, wait=False))
    assert refresh.status == SyncTask.Status.SUCCEEDED
    # An active refresh does not refuse a full sync either.
    run_sync_task(full.pk)
    RefreshPending.objects.all().delete()
    SyncTask.objects.filter(pk=refresh.pk).update(status=SyncTask.Status.RUNNING)
    assert SyncTask.objects.request(project, enqueue=False).status == SyncTask.Status.QUEUED


def test_an_older_full_sync_listing_never_overwrites_a_newer_refresh(client, fakes, events_on):
    """The race, made deterministic: the full sync lists team/api (old state), then a push
    and its refresh list and store the new state, then the full sync stores its older listing.
    The newer state must stay, and the full sync must still finish its other repositories."""
    receiver, secret = events_on
    registry = receiver.registry
    project = registry.project
    old, new = [image("1.0", "old")], [image("1.0", "new")]
    fake = fakes[registry.name] = FakeClient({"team/api": old, "team/db": [image("5")]})
    refreshed = threading.Event()

    def push_and_refresh_while_the_full_sync_lists():
        fake.hooks.pop("team/api")
        fake.repos["team/api"] = new
        body = distribution_envelope([("push", "team/api", "1.0")])
        assert hook_post(client, receiver, body, secret).status_code == 202
        refresh_registry(registry.pk, wait=False)
        refreshed.set()
        fake.repos["team/api"] = old  # what the full sync's listing had read before the push

    fake.hooks["team/api"] = push_and_refresh_while_the_full_sync_lists
    full = SyncTask.objects.request(project, enqueue=False)
    run_sync_task(full.pk)
    full.refresh_from_db()
    assert refreshed.is_set()
    assert full.status == SyncTask.Status.SUCCEEDED
    assert inventory(registry) == {"team/api:1.0": new[0].digest, "team/db:5": image("5").digest}
    changes = Change.objects.filter(repository_path="team/api").order_by("id")
    assert list(changes.values_list("source", "kind")) == [("event", "added")]


def test_events_for_a_type_the_connection_does_not_follow_are_counted(client, project, fakes):
    swr = Registry.objects.create(
        project=project,
        kind="swr",
        name="swr",
        endpoint="https://swr-api.cn-north-4.myhuaweicloud.com",
        options={"enterprise": False, "region": "cn-north-4", "project_id": "p"},
    )
    receiver = EventReceiver.of(swr)
    secret = receiver.enable()
    body = json.dumps(
        {"type": "PUSH_ARTIFACT", "event_data": {"repository": {"repo_full_name": "ns/app"}}}
    ).encode()
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 202
    receiver.refresh_from_db()
    assert receiver.ignored_type == 1 and not RefreshPending.objects.exists()


def test_swr_enterprise_events_need_the_projects_swr_authorization(client, project, fakes):
    swr = Registry.objects.create(
        project=project,
        kind="swr",
        name="swr",
        endpoint="https://swr-api.cn-north-4.myhuaweicloud.com",
        options={"region": "cn-north-4", "project_id": "p"},
    )
    fakes["swr"] = FakeClient({"ns/app": [image("1")]}, type="swr_enterprise")
    receiver = EventReceiver.of(swr)
    secret = receiver.enable()
    body = json.dumps(
        {"type": "PUSH_ARTIFACT", "event_data": {"repository": {"repo_full_name": "ns/app"}}}
    ).encode()
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 202
    assert RefreshPending.objects.count() == 1
    refresh_registry(swr.pk, wait=False)
    receiver.refresh_from_db()
    assert receiver.ignored_type == 1 and not Image.objects.exists()
    assert fakes["swr"].calls == []


def test_pending_marks_of_a_refresh_whose_worker_died_are_taken_again(client, fakes, events_on):
    receiver, secret = events_on
    registry = receiver.registry
    fakes[registry.name] = FakeClient({"team/api": [image("1.0")]})
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1.0")]), secret)
    dead = SyncTask.objects.create(
        project=registry.project, trigger="event", scope="repositories", status="interrupted"
    )
    RefreshPending.objects.update(task=dead)
    assert refresh_registry(registry.pk, wait=False) is not None
    assert inventory(registry) == {"team/api:1.0": image("1.0").digest}


def test_unique_tokens(registry, project):
    tokens = {EventReceiver.of(registry).token}
    for _ in range(5):
        reg = Registry.objects.create(
            project=project, kind="other", name=uuid.uuid4().hex[:8], endpoint="https://x.example"
        )
        tokens.add(EventReceiver.of(reg).token)
    assert len(tokens) == 6


def test_a_mark_made_while_a_refresh_runs_is_not_left_waiting(
    client, fakes, events_on, monkeypatch
):
    """The event for team/db arrives after the refresh claimed team/api, within the window
    whose refresh is already enqueued: the refresh enqueues another one when it ends."""
    receiver, secret = events_on
    registry = receiver.registry
    enqueued: list[int] = []
    monkeypatch.setattr("imagesync.tasks.enqueue_event_refresh", enqueued.append)
    fake = fakes[registry.name] = FakeClient({"team/api": [image("1")], "team/db": [image("2")]})

    def another_push():
        fake.hooks.pop("team/api")
        body = distribution_envelope([("push", "team/db", "2")])
        assert hook_post(client, receiver, body, secret).status_code == 202

    fake.hooks["team/api"] = another_push
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1")]), secret)
    assert enqueued == [registry.pk]  # the first mark; the second one found the window's key
    refresh_registry(registry.pk, wait=False)
    assert enqueued == [registry.pk, registry.pk]
    refresh_registry(registry.pk, wait=False)
    assert inventory(registry) == {"team/api:1": image("1").digest, "team/db:2": image("2").digest}


def test_the_watchdog_requeues_a_mark_that_no_refresh_took(client, events_on, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from imagesync.tasks import watchdog

    receiver, secret = events_on
    enqueued: list[int] = []
    monkeypatch.setattr("imagesync.tasks.enqueue_event_refresh", enqueued.append)
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1")]), secret)
    enqueued.clear()  # say the broker lost it
    assert watchdog()["event_refreshes_requeued"] == 0  # too recent to call it lost
    RefreshPending.objects.update(marked_at=timezone.now() - timedelta(minutes=2))
    assert watchdog()["event_refreshes_requeued"] == 1
    assert enqueued == [receiver.registry_id]


def test_a_lone_push_waits_only_the_quiet_time_a_burst_at_most_the_window(
    client, fakes, events_on, settings, monkeypatch
):
    from imagesync import events

    settings.REGISTRY_EVENTS_COALESCE_MS = 1000
    receiver, secret = events_on
    fakes[receiver.registry.name] = FakeClient({"team/api": [image("1")]})
    slept: list[float] = []
    real_sleep = events.time.sleep

    # time.sleep is the time module's: the refresh's threads (heartbeats, the registry's
    # slots) sleep through it too. Only the burst's wait counts here.
    def burst_wait() -> bool:
        return sys._getframe(2).f_code.co_name == "_wait_for_the_burst"

    def sleep(seconds):
        if burst_wait():
            slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(events.time, "sleep", sleep)
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1")]), secret)
    refresh_registry(receiver.registry_id)
    assert len(slept) == 1 and 0 < slept[0] <= events.QUIET_SECONDS

    def keep_pushing(seconds):  # a new event arrives during every wait of the burst
        real_sleep(seconds)
        if burst_wait():
            slept.append(seconds)
            hook_post(client, receiver, distribution_envelope([("push", "team/api", "x")]), secret)

    slept.clear()
    monkeypatch.setattr(events.time, "sleep", keep_pushing)
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "2")]), secret)
    refresh_registry(receiver.registry_id)
    assert sum(slept) <= 1.0 + events.QUIET_SECONDS


def test_an_event_right_after_a_quick_refresh_is_enqueued_again(
    client, fakes, events_on, settings, monkeypatch
):
    settings.REGISTRY_EVENTS_COALESCE_MS = 1000
    receiver, secret = events_on
    fakes[receiver.registry.name] = FakeClient({"team/api": [image("1")]})
    enqueued: list[int] = []
    monkeypatch.setattr("imagesync.tasks.enqueue_event_refresh", enqueued.append)
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1")]), secret)
    refresh_registry(receiver.registry_id, wait=False)  # done well within the window
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "2")]), secret)
    assert enqueued == [receiver.registry_id, receiver.registry_id]
