"""The sync engine with small fake registry clients: reconcile rules, task lifecycle, grants,
concurrency, cancel and the watchdog.

Tests that run a task use `transactional_db`: the engine syncs repositories in worker threads,
each with its own database connection, which must see committed rows.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

import imagesync.tasks
from imagesync.models import (
    AuditEvent,
    AuthorizationGrant,
    Change,
    Image,
    Project,
    Registry,
    Repository,
    SyncRefused,
    SyncTask,
    SyncTaskQuerySet,
    SyncTaskRepository,
    latest_tag,
)
from imagesync.registries.base import ImageInfo, RegistryError
from imagesync.sync.pool import db_guard
from imagesync.sync.run import REGISTRY_LISTING_PATH, SyncRun
from imagesync.sync.scheduled import scheduled_sync
from imagesync.sync.watchdog import watchdog
from imagesync.tasks import run_sync_task
from tests.support.fakes import T0, FakeClient, digest, image


@pytest.fixture
def proj(transactional_db, project):
    """The `project` persona's project, committed for the worker threads to see."""
    return project


def make_registry(project, name="local", kind="other") -> Registry:
    return Registry.objects.create(
        project=project, kind=kind, name=name, endpoint=f"https://{name}.example.com"
    )


def in_thread(func, *args) -> threading.Thread:
    """A thread that closes its own database connection, as the engine's threads do."""

    def target():
        try:
            func(*args)
        finally:
            connection.close()

    return threading.Thread(target=target)


def run(project, **kw) -> SyncTask:
    task = SyncTask.objects.request(project, **kw)
    run_sync_task(task.pk)
    task.refresh_from_db()
    return task


def inventory(project) -> dict[str, str]:
    return {
        f"{path}:{tag}": dig
        for path, tag, dig in Image.objects.filter(project=project).values_list(
            "repository__path", "tag", "digest"
        )
    }


# --- reconcile --------------------------------------------------------------------------------


def test_a_first_sync_adds_every_image_and_marks_the_newest_tag_latest(proj, fakes):
    registry = make_registry(proj)
    fakes["local"] = FakeClient(
        {
            "team/api": [image("1.0", minutes=1), image("2.0", minutes=5)],
            "web": [image("latest", minutes=3)],
        }
    )
    task = run(proj)

    assert task.status == SyncTask.Status.SUCCEEDED
    assert (task.repositories_total, task.repositories_done, task.repositories_failed) == (2, 2, 0)
    assert task.images_added == 3 and task.worker and task.finished_at
    assert inventory(proj) == {
        "team/api:1.0": digest("1.0"),
        "team/api:2.0": digest("2.0"),
        "web:latest": digest("latest"),
    }
    api = Repository.objects.get(path="team/api")
    assert (api.namespace, api.name, api.image_count) == ("team", "api", 2)
    assert api.last_synced_at is not None
    latest = set(Image.objects.filter(is_latest=True).values_list("repository__path", "tag"))
    assert latest == {("team/api", "2.0"), ("web", "latest")}
    assert Image.objects.get(tag="2.0").platforms == ["linux/amd64"]
    registry.refresh_from_db()
    assert registry.last_synced_at is not None
    assert fakes["local"].closed
    statuses = set(task.results.values_list("status", flat=True))
    assert statuses == {SyncTaskRepository.Status.FINISHED}


def test_a_resync_updates_repushed_tags_removes_deleted_ones_and_keeps_the_rest(proj, fakes):
    make_registry(proj)
    fake = fakes["local"] = FakeClient(
        {"team/api": [image("1.0", minutes=1), image("2.0", minutes=2), image("old", minutes=0)]}
    )
    run(proj)
    first_seen = Image.objects.get(tag="1.0").first_seen_at
    synced_before = Image.objects.get(tag="1.0").last_synced_at

    fake.repos["team/api"] = [
        image("1.0", minutes=1),
        image("2.0", "2.0-rebuilt", minutes=9),
        image("3.0", minutes=4),
    ]
    task = run(proj)

    assert task.status == SyncTask.Status.SUCCEEDED
    assert (task.images_added, task.images_updated, task.images_removed, task.images_unchanged) == (
        1,
        1,
        1,
        1,
    )
    assert inventory(proj) == {
        "team/api:1.0": digest("1.0"),
        "team/api:2.0": digest("2.0-rebuilt"),
        "team/api:3.0": digest("3.0"),
    }
    unchanged = Image.objects.get(tag="1.0")
    assert unchanged.first_seen_at == first_seen
    assert unchanged.last_synced_at > synced_before
    assert Image.objects.get(tag="2.0").registry_updated_at == T0 + timedelta(minutes=9)
    assert list(Image.objects.filter(is_latest=True).values_list("tag", flat=True)) == ["2.0"]
    assert Repository.objects.get(path="team/api").image_count == 3
    # the second listing got the stored digests, so unchanged tags need no manifest fetch
    assert fake.known_seen[-1] >= 3


def test_is_latest_falls_back_to_created_time_then_tag_name():
    no_times = [
        ImageInfo(tag="a", digest=digest("a")),
        ImageInfo(tag="b", digest=digest("b")),
    ]
    assert latest_tag(no_times) == "b"
    created_only = [
        ImageInfo(tag="z", digest=digest("z"), created=T0),
        ImageInfo(tag="y", digest=digest("y"), created=T0 + timedelta(days=1)),
    ]
    assert latest_tag(created_only) == "y"
    mixed = created_only + [ImageInfo(tag="x", digest=digest("x"), updated=T0 + timedelta(days=2))]
    assert latest_tag(mixed) == "x"


@pytest.mark.parametrize(
    "error",
    [
        RegistryError("timeout", "registry.example.com did not answer in time (tag list)."),
        RegistryError("bad_response", "The registry sent malformed JSON (tag list page 3)."),
        RegistryError("unreachable", "Cannot reach registry.example.com (tag list)."),
    ],
    ids=["timeout", "truncated page", "connection lost"],
)
def test_it_keeps_images_when_tag_listing_fails(proj, fakes, error):
    make_registry(proj)
    fake = fakes["local"] = FakeClient(
        {"team/api": [image("1.0"), image("2.0")], "web": [image("latest")]}
    )
    run(proj)
    before = inventory(proj)

    fake.repos["team/api"] = error
    fake.repos["web"] = [image("latest"), image("new")]
    task = run(proj)

    assert task.status == SyncTask.Status.PARTIALLY_SUCCEEDED
    assert task.failure_code == error.code
    assert error.message in task.failure_reason and "local/team/api" in task.failure_reason
    assert task.repositories_failed == 1 and task.repositories_done == 2
    after = inventory(proj)
    assert {k: v for k, v in after.items() if k.startswith("team/api")} == {
        k: v for k, v in before.items() if k.startswith("team/api")
    }
    assert "web:new" in after
    result = task.results.get(repository_path="team/api")
    assert (result.status, result.reason_code, result.reason_message) == (
        SyncTaskRepository.Status.FAILED,
        error.code,
        error.message,
    )
    assert Repository.objects.get(path="team/api").image_count == 2


def test_a_failed_repository_listing_removes_nothing(proj, fakes):
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"team/api": [image("1.0")], "web": [image("latest")]})
    run(proj)

    fake.repository_error = RegistryError("auth_failed", "Authentication failed (catalog).")
    task = run(proj)

    assert task.status == SyncTask.Status.FAILED
    assert task.failure_code == "auth_failed"
    assert "Authentication failed" in task.failure_reason
    assert Repository.objects.filter(removed_at__isnull=False).count() == 0
    assert len(inventory(proj)) == 2
    assert set(task.results.values_list("repository_path", "status")) == {
        ("team/api", "failed"),
        ("web", "failed"),
    }


def test_a_registry_that_cannot_even_list_its_first_repositories_fails_the_task(proj, fakes):
    make_registry(proj)
    fake = fakes["local"] = FakeClient({})
    fake.repository_error = RegistryError("unreachable", "Cannot reach local.example.com.")
    task = run(proj)
    assert task.status == SyncTask.Status.FAILED
    result = task.results.get()
    assert result.repository is None and result.reason_code == "unreachable"
    assert result.repository_path == REGISTRY_LISTING_PATH


def test_a_complete_listing_marks_vanished_repositories_removed_and_returning_ones_back(
    proj, fakes
):
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"team/api": [image("1.0")], "gone": [image("x")]})
    run(proj)

    del fake.repos["gone"]
    task = run(proj)
    gone = Repository.objects.get(path="gone")
    assert gone.removed_at is not None and gone.image_count == 0
    assert set(inventory(proj)) == {"team/api:1.0"}
    assert task.images_removed == 1 and task.repositories_total == 1

    fake.repos["gone"] = [image("y")]
    run(proj)
    gone.refresh_from_db()
    assert gone.removed_at is None
    assert set(inventory(proj)) == {"team/api:1.0", "gone:y"}


def test_an_empty_tag_list_leaves_no_images_for_the_repository(proj, fakes):
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"team/api": [image("1.0"), image("2.0")]})
    run(proj)
    fake.repos["team/api"] = []
    task = run(proj)
    assert task.status == SyncTask.Status.SUCCEEDED
    assert inventory(proj) == {}
    assert Repository.objects.get(path="team/api").image_count == 0


def test_reconciling_thousands_of_tags_takes_a_handful_of_queries(
    db, project, registry, django_assert_max_num_queries
):
    # SQLite caps the parameters of a statement, so Django splits bulk writes finer there (no
    # round trips in-process); PostgreSQL gets batches of 500. The history's rows (a change
    # and an interval per added tag) are bulk writes too.
    many = 24 if connection.vendor == "postgresql" else 180
    repo = Repository.objects.create(registry=registry, type="other", path="big", name="big")
    listing = [image(f"t{i}", minutes=i) for i in range(2000)]
    with django_assert_max_num_queries(many):
        counts = repo.reconcile(listing)
    assert counts.added == 2000
    assert Image.objects.filter(repository=repo, project=project).count() == 2000
    assert Change.objects.filter(repository=repo, kind="added").count() == 2000
    with django_assert_max_num_queries(4):
        counts = repo.reconcile(listing)
    assert (counts.unchanged, counts.added, counts.updated) == (2000, 0, 0)
    assert Change.objects.count() == 2000  # an unchanged re-sync writes no history
    changed = listing[:1000] + [image(f"t{i}", f"new{i}", minutes=i) for i in range(1000, 1500)]
    with django_assert_max_num_queries(many):
        counts = repo.reconcile(changed)
    assert (counts.unchanged, counts.updated, counts.removed) == (1000, 500, 500)
    assert Image.objects.filter(repository=repo).count() == 1500
    kinds = Counter(Change.objects.values_list("kind", flat=True))
    assert kinds == {"added": 2000, "repushed": 500, "removed": 500}


# --- task lifecycle -----------------------------------------------------------------------------


def test_a_second_request_is_refused_naming_the_active_task(db, project, registry, operator):
    first = SyncTask.objects.request(project, user=operator)
    with pytest.raises(SyncRefused) as refused:
        SyncTask.objects.request(project, user=operator)
    assert refused.value.message == (
        f"A synchronization is already in progress: task #{first.pk} (queued)."
    )
    assert refused.value.active_task == first
    assert SyncTask.objects.filter(project=project).count() == 1


def test_the_database_constraint_refuses_a_racing_second_request(
    db, project, registry, monkeypatch
):
    first = SyncTask.objects.request(project)
    SyncTask.objects.filter(pk=first.pk).update(status=SyncTask.Status.RUNNING)
    real = SyncTaskQuerySet.refuse_if_active
    calls = []

    def late_check(queryset, p):  # the first check ran before the other request committed
        calls.append(p)
        if len(calls) > 1:
            real(queryset, p)

    monkeypatch.setattr(SyncTaskQuerySet, "refuse_if_active", late_check)
    with pytest.raises(SyncRefused) as refused:
        SyncTask.objects.request(project)
    assert refused.value.message == (
        f"A synchronization is already in progress: task #{first.pk} (running)."
    )


def test_a_request_records_the_user_and_enqueues_after_commit(
    db, project, registry, operator, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda func, *args, **kw: enqueued.append((func, args))
    )
    with django_capture_on_commit_callbacks(execute=True):
        task = SyncTask.objects.request(
            project, scope="types", types=["other", "harbor"], user=operator
        )
        assert enqueued == []
    assert enqueued == [("imagesync.tasks.run_sync_task", (task.pk,))]
    assert (task.status, task.scope_types, task.created_by) == (
        "queued",
        ["other", "harbor"],
        operator,
    )
    event = AuditEvent.objects.get(action="sync.start")
    assert event.actor == operator and event.project == project and str(task.pk) in event.target


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scope": "types", "types": []}, "Choose at least one repository type"),
        ({"scope": "types", "types": ["docker"]}, "Unknown repository type 'docker'"),
        ({"scope": "repositories", "repositories": []}, "Choose at least one repository"),
        ({"scope": "everything"}, "Unknown synchronization scope"),
    ],
)
def test_an_invalid_scope_is_refused_with_a_message(db, project, registry, kwargs, message):
    with pytest.raises(SyncRefused, match=message):
        SyncTask.objects.request(project, **kwargs)
    assert not SyncTask.objects.exists()


def test_repositories_of_another_project_or_removed_ones_are_refused(
    db, project, registry, other_project
):
    elsewhere = Registry.objects.create(
        project=other_project, kind="other", name="x", endpoint="https://x.example.com"
    )
    foreign = Repository.objects.create(registry=elsewhere, type="other", path="a", name="a")
    removed = Repository.objects.create(
        registry=registry, type="other", path="b", name="b", removed_at=timezone.now()
    )
    for repo in (foreign, removed):
        with pytest.raises(SyncRefused, match="do not belong to this project"):
            SyncTask.objects.request(project, scope="repositories", repositories=[repo])


def test_a_project_without_registries_cannot_be_synchronized(db, project):
    with pytest.raises(SyncRefused, match="no registry connections"):
        SyncTask.objects.request(project)


def test_two_workers_racing_for_one_task_run_it_once(proj, fakes):
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"a": [image("1")], "b": [image("2")]}, delay=0.2)
    task = SyncTask.objects.request(proj)
    threads = [in_thread(run_sync_task, task.pk) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run_sync_task(task.pk)  # a late third delivery is a no-op too
    task.refresh_from_db()
    assert task.status == SyncTask.Status.SUCCEEDED
    assert sorted(fake.calls) == ["a", "b"]
    assert task.results.count() == 2 and task.images_added == 2


def test_only_one_claim_wins(db, project, registry):
    task = SyncTask.objects.request(project)
    assert (SyncRun.claim(task.pk) is not None) is True
    assert (SyncRun.claim(task.pk) is not None) is False


def test_cancel_stops_between_repositories(proj, fakes, settings):
    settings.SYNC_WORKERS = 1
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"a": [image("1")], "b": [image("2")], "c": [image("3")]})
    task = SyncTask.objects.request(proj)
    fake.hooks["a"] = lambda: SyncTask.objects.get(pk=task.pk).cancel()
    run_sync_task(task.pk)
    task.refresh_from_db()

    assert task.status == SyncTask.Status.CANCELLED
    assert "Cancelled on request after 1 of 3 repositories" in task.failure_reason
    assert fake.calls == ["a"]
    assert dict(task.results.values_list("repository_path", "status")) == {
        "a": "finished",
        "b": "skipped",
        "c": "skipped",
    }
    assert set(inventory(proj)) == {"a:1"}
    assert AuditEvent.objects.filter(action="sync.cancel").count() == 1


def test_a_queued_task_is_cancelled_at_once_and_never_runs(db, project, registry, operator):
    task = SyncTask.objects.request(project)
    assert task.cancel(operator) is True
    assert task.status == SyncTask.Status.CANCELLED and task.finished_at
    run_sync_task(task.pk)
    task.refresh_from_db()
    assert task.status == SyncTask.Status.CANCELLED
    assert task.cancel(operator) is False
    SyncTask.objects.request(project)  # the project may be synchronized again


def test_retry_covers_only_the_failed_repositories(proj, fakes, operator):
    make_registry(proj)
    fake = fakes["local"] = FakeClient(
        {"a": [image("1")], "b": RegistryError("rate_limited", "Rate limited."), "c": [image("3")]}
    )
    first = run(proj)
    assert first.status == SyncTask.Status.PARTIALLY_SUCCEEDED

    fake.repos["b"] = [image("2")]
    retry = first.retry_failed(operator)
    assert retry.retry_of == first and retry.scope == SyncTask.Scope.REPOSITORIES
    assert list(retry.scope_repositories.values_list("path", flat=True)) == ["b"]
    run_sync_task(retry.pk)
    retry.refresh_from_db()
    assert retry.status == SyncTask.Status.SUCCEEDED and retry.repositories_total == 1
    assert AuditEvent.objects.filter(action="sync.retry").count() == 1
    with pytest.raises(SyncRefused, match="no failed repositories"):
        retry.retry_failed(operator)


def test_the_heartbeat_keeps_going_during_a_long_listing(proj, fakes, settings):
    settings.SYNC_HEARTBEAT_INTERVAL = 1
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"slow": [image("1")]})
    task = SyncTask.objects.request(proj)
    beats = set()

    def slow_listing():  # 2.6 s inside list_images, watching the task row meanwhile
        deadline = time.monotonic() + 2.6
        while time.monotonic() < deadline:
            with db_guard():
                beats.add(SyncTask.objects.get(pk=task.pk).heartbeat_at)
            time.sleep(0.1)

    fake.hooks["slow"] = slow_listing
    run_sync_task(task.pk)
    assert len(beats) >= 3  # the claim's beat, then one per second while listing


def test_a_repository_shows_running_from_the_start_of_its_listing(proj, fakes):
    """Manage Task's drill-down says which repositories are being listed right now: the
    result is running, with its start time, while the registry answers -- for a repository
    already in the inventory (its start is written with the read of its stored tags) as for
    a new one."""
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"known": [image("1")], "new": []})
    run(proj)
    fake.repos["new"] = [image("2")]
    task = SyncTask.objects.request(proj)
    seen = {}

    def watcher(path):
        def look():
            with db_guard():
                result = SyncTaskRepository.objects.get(task=task, repository_path=path)
                seen[path] = (result.status, result.started_at)

        return look

    for path in ("known", "new"):
        fake.hooks[path] = watcher(path)
    before = timezone.now()
    run_sync_task(task.pk)
    for path in ("known", "new"):
        status, started_at = seen[path]
        assert status == SyncTaskRepository.Status.RUNNING
        assert before <= started_at <= timezone.now()
    task.refresh_from_db()
    assert task.status == SyncTask.Status.SUCCEEDED
    assert inventory(proj) == {"known:1": digest("1"), "new:2": digest("2")}


def test_a_slow_registry_does_not_hold_up_the_others(proj, fakes, settings):
    settings.SYNC_WORKERS = 4
    make_registry(proj, "slow")
    make_registry(proj, "fast")
    slow = fakes["slow"] = FakeClient(
        {f"s{i}": [image(f"s{i}")] for i in range(3)}, max_concurrency=1, delay=0.3
    )
    fast = fakes["fast"] = FakeClient({f"f{i}": [image(f"f{i}")] for i in range(6)}, delay=0.05)
    task = run(proj)
    assert task.status == SyncTask.Status.SUCCEEDED
    assert slow.max_in_flight == 1  # the registry's own cap
    assert fast.max_in_flight > 1
    results = {r.repository_path: r for r in task.results.all()}
    last_fast = max(results[f"f{i}"].finished_at for i in range(6))
    last_slow = max(results[f"s{i}"].finished_at for i in range(3))
    assert last_fast < last_slow


def test_types_scope_lists_only_registries_that_serve_those_types(proj, fakes):
    make_registry(proj, "local")
    make_registry(proj, "harbor", kind="harbor")
    fakes["local"] = FakeClient({"a": [image("1")]})
    harbor = fakes["harbor"] = FakeClient({"lib/x": [image("9")]}, type="harbor")
    task = run(proj, scope="types", types=["harbor"])
    assert task.status == SyncTask.Status.SUCCEEDED
    assert set(inventory(proj)) == {"lib/x:9"}
    assert harbor.calls == ["lib/x"]


def test_an_interrupted_task_is_not_overwritten_by_its_late_worker(proj, fakes, settings):
    settings.SYNC_WORKERS = 1
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"a": [image("1")], "b": [image("2")]})
    task = SyncTask.objects.request(proj)

    def interrupted_meanwhile():
        SyncTask.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
        assert watchdog()["interrupted"] == 1

    fake.hooks["a"] = interrupted_meanwhile
    run_sync_task(task.pk)
    task.refresh_from_db()
    assert task.status == SyncTask.Status.INTERRUPTED
    assert "no heartbeat for" in task.failure_reason
    assert fake.calls == ["a"]  # it stopped handing out repositories


# --- watchdog -----------------------------------------------------------------------------------


def test_the_watchdog_interrupts_a_task_whose_heartbeat_stopped(db, project, registry, settings):
    settings.SYNC_HEARTBEAT_TIMEOUT = 120
    task = SyncTask.objects.request(project)
    assert SyncRun.claim(task.pk) is not None
    repo = Repository.objects.create(registry=registry, type="other", path="a", name="a")
    SyncTaskRepository.objects.create(
        task=task, repository=repo, repository_type="other", repository_path="a"
    )
    now = timezone.now()
    SyncTask.objects.filter(pk=task.pk).update(heartbeat_at=now - timedelta(seconds=60))
    assert watchdog(now)["interrupted"] == 0

    SyncTask.objects.filter(pk=task.pk).update(heartbeat_at=now - timedelta(seconds=300))
    assert watchdog(now)["interrupted"] == 1
    task.refresh_from_db()
    assert task.status == SyncTask.Status.INTERRUPTED and task.finished_at == now
    assert task.failure_reason == (
        "The worker stopped responding (no heartbeat for 300 s); the task was interrupted."
    )
    assert task.results.get().status == SyncTaskRepository.Status.SKIPPED
    SyncTask.objects.request(project)  # no longer blocks the project


def test_the_watchdog_requeues_a_lost_queued_task_once_then_gives_up(
    db, project, registry, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.SYNC_HEARTBEAT_TIMEOUT = 60
    enqueued = []
    monkeypatch.setattr(imagesync.tasks, "enqueue_sync_task", enqueued.append)
    task = SyncTask.objects.request(project, enqueue=False)
    created = task.created_at
    with django_capture_on_commit_callbacks(execute=True):
        assert watchdog(created + timedelta(minutes=4))["requeued"] == 0
        assert watchdog(created + timedelta(minutes=6))["requeued"] == 1
        assert watchdog(created + timedelta(minutes=7))["requeued"] == 0
    assert enqueued == [task.pk]
    task.refresh_from_db()
    assert task.requeued_at == created + timedelta(minutes=6)
    assert task.worker == ""  # no pseudo worker name shown for a task nobody claimed
    assert watchdog(created + timedelta(minutes=11))["abandoned"] == 1
    task.refresh_from_db()
    assert task.status == SyncTask.Status.INTERRUPTED
    assert "No worker picked the task up" in task.failure_reason


# --- grants -------------------------------------------------------------------------------------


def grant(project, policy):
    return AuthorizationGrant.objects.create(project=project, policy=policy)


def test_missing_grants_fail_the_scheduled_run_naming_the_policies(proj, fakes):
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"a": [image("1")]})
    task = run(proj, trigger="scheduled")
    assert task.status == SyncTask.Status.FAILED
    assert task.failure_code == "missing_authorization"
    assert "SWROperatePolicy and CCEOperatePolicy" in task.failure_reason
    assert fake.calls == [] and inventory(proj) == {}

    grant(proj, AuthorizationGrant.Policy.SWR_OPERATE)
    task = run(proj, trigger="scheduled")
    assert task.status == SyncTask.Status.FAILED
    assert "CCEOperatePolicy" in task.failure_reason
    assert "SWROperatePolicy" not in task.failure_reason

    grant(proj, AuthorizationGrant.Policy.CCE_OPERATE)
    assert run(proj, trigger="scheduled").status == SyncTask.Status.SUCCEEDED
    # a manual sync needs neither
    AuthorizationGrant.objects.filter(project=proj).update(revoked_at=timezone.now())
    assert run(proj).status == SyncTask.Status.SUCCEEDED


def swr_type(path: str) -> str:
    return {"ee": "swr_enterprise", "shared": "swr_shared"}.get(path.split("/")[0], "swr_private")


def test_missing_swr_authorization_fails_only_the_swr_repositories(proj, fakes):
    make_registry(proj, "swr", kind="swr")
    make_registry(proj, "local")
    swr = fakes["swr"] = FakeClient(
        {"team/a": [image("1")], "shared/b": [image("2")], "ee/c": [image("3")]}, type=swr_type
    )
    fakes["local"] = FakeClient({"web": [image("latest")]})
    task = run(proj)
    assert task.status == SyncTask.Status.PARTIALLY_SUCCEEDED
    assert swr.calls == []
    assert set(inventory(proj)) == {"web:latest"}
    failed = task.results.get(status="failed")
    assert failed.reason_code == "swr_not_authorized" and failed.registry_name == "swr"

    grant(proj, AuthorizationGrant.Policy.SWR_AUTHORIZATION)
    task = run(proj)
    assert task.status == SyncTask.Status.SUCCEEDED
    types = dict(Repository.objects.values_list("path", "type"))
    assert types == {
        "team/a": "swr_private",
        "shared/b": "swr_shared",
        "ee/c": "swr_enterprise",
        "web": "other",
    }

    AuthorizationGrant.objects.filter(project=proj).update(revoked_at=timezone.now())
    task = run(proj, scope="repositories", repositories=Repository.objects.all())
    assert task.status == SyncTask.Status.PARTIALLY_SUCCEEDED
    assert set(
        task.results.filter(status="failed").values_list("repository_path", "reason_code")
    ) == {
        ("team/a", "swr_not_authorized"),
        ("shared/b", "swr_not_authorized"),
        ("ee/c", "swr_not_authorized"),
    }
    assert len(inventory(proj)) == 4  # their images stay


# --- scheduled sync -----------------------------------------------------------------------------


def test_the_scheduled_sync_skips_a_project_whose_sync_is_running(
    db, project, registry, other_project
):
    active = SyncTask.objects.request(project)
    Project.objects.create(name="empty")  # no registry: nothing to do
    make_registry(other_project, "x")
    assert scheduled_sync() == {"started": 1, "skipped": 1}
    skipped = SyncTask.objects.get(project=project, status=SyncTask.Status.SKIPPED)
    assert skipped.trigger == SyncTask.Trigger.SCHEDULED
    assert f"task #{active.pk} (queued)" in skipped.failure_reason
    queued = SyncTask.objects.get(project=other_project)
    assert (queued.trigger, queued.status) == ("scheduled", "queued")


def test_an_unexpected_client_or_storage_error_fails_only_that_repository(proj, fakes, monkeypatch):
    make_registry(proj)
    fake = fakes["local"] = FakeClient({"a": [image("1")], "b": [image("2")], "c": [image("3")]})
    run(proj)
    fake.hooks["a"] = lambda: 1 / 0
    real = Repository.reconcile

    def broken_for_b(repository, images, now=None, **kwargs):
        if repository.path == "b":
            raise ValueError("disk full")
        return real(repository, images, now, **kwargs)

    monkeypatch.setattr(Repository, "reconcile", broken_for_b)
    fake.repos["c"] = [image("3"), image("4")]
    task = run(proj)

    assert task.status == SyncTask.Status.PARTIALLY_SUCCEEDED
    failed = dict(
        task.results.filter(status="failed").values_list("repository_path", "reason_code")
    )
    assert failed == {"a": "internal_error", "b": "internal_error"}
    assert "disk full" not in task.failure_reason  # internals go to the log, not to users
    assert set(inventory(proj)) == {"a:1", "b:2", "c:3", "c:4"}


def test_a_write_failing_in_the_last_round_trip_fails_only_that_repository(
    proj, fakes, monkeypatch
):
    """On PostgreSQL a repository's image writes and their history wait for its transaction's
    last round trip (elsewhere they run at once): a write that fails there fails that
    repository like any storage error -- its previous images and history kept, nothing
    half-written -- and the other repositories are stored."""
    from imagesync import bulk, models

    make_registry(proj)
    fake = fakes["local"] = FakeClient({"a": [image("1")], "b": [image("2")]})
    run(proj)
    real = models._create_images
    b = Repository.objects.get(path="b")

    def broken_for_b(images, later=None):
        real(images, later=later)
        if images and images[0]["repository_id"] == b.pk:
            bulk.keep_or_run([("INSERT INTO no_such_table VALUES (1)", [])], later)

    monkeypatch.setattr(models, "_create_images", broken_for_b)
    fake.repos["a"] = [image("1"), image("3")]
    fake.repos["b"] = [image("2"), image("4")]
    task = run(proj)

    assert task.status == SyncTask.Status.PARTIALLY_SUCCEEDED
    failed = dict(
        task.results.filter(status="failed").values_list("repository_path", "reason_code")
    )
    assert failed == {"b": "internal_error"}
    assert set(inventory(proj)) == {"a:1", "a:3", "b:2"}
    added = Change.objects.filter(kind="added").values_list("repository_path", "tag")
    assert sorted(added) == [("a", "1"), ("a", "3"), ("b", "2")]


def test_a_requested_sync_runs_through_django_q_after_commit(proj, fakes, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs the queued function in-process
    make_registry(proj)
    fakes["local"] = FakeClient({"a": [image("1")]})
    from django.db import transaction

    with transaction.atomic():
        task = SyncTask.objects.request(proj)
        assert SyncTask.objects.get(pk=task.pk).status == SyncTask.Status.QUEUED
    task.refresh_from_db()
    assert task.status == SyncTask.Status.SUCCEEDED
    assert set(inventory(proj)) == {"a:1"}


def test_a_task_finished_by_the_watchdog_is_not_overwritten_by_its_late_worker(
    db, project, registry, settings
):
    settings.SYNC_HEARTBEAT_TIMEOUT = 60
    task = SyncTask.objects.request(project)
    assert task.claim("host:1") is True
    assert SyncTask.objects.get(pk=task.pk).claim("host:2") is False
    stale = timezone.now() - timedelta(minutes=5)
    SyncTask.objects.filter(pk=task.pk).update(heartbeat_at=stale)
    assert watchdog()["interrupted"] == 1
    assert task.beat() is False
    assert task.finish(SyncTask.Status.SUCCEEDED) is False
    task.refresh_from_db()
    assert task.status == SyncTask.Status.INTERRUPTED and task.worker == "host:1"


def test_cancelling_a_queued_task_ends_it_at_once_and_a_running_one_between_repositories(
    db, project, registry
):
    queued = SyncTask.objects.request(project)
    assert queued.request_cancel() is True
    assert queued.status == SyncTask.Status.CANCELLED and queued.finished_at
    assert queued.request_cancel() is False
    running = SyncTask.objects.request(project)
    running.claim("host:1")
    assert running.request_cancel() is True
    running.refresh_from_db()
    assert running.status == SyncTask.Status.RUNNING and running.cancel_requested


class RememberingClient(FakeClient):
    """A FakeClient that takes `previous=` and remembers what the engine passed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.previous: dict[str, dict] = {}

    def list_images(self, repository, known=None, *, previous=None):
        self.previous[repository.path] = previous
        return super().list_images(repository, known)


def test_the_engine_tells_the_client_which_tags_the_inventory_already_has(proj, fakes):
    make_registry(proj)
    fake = fakes["local"] = RememberingClient({"a": [image("1"), image("2")], "b": []})
    run(proj)
    assert fake.previous == {"a": {}, "b": {}}  # a first sync: every tag is new

    fake.repos["a"] = [image("1"), image("2", "re-pushed"), image("3")]
    run(proj)
    assert fake.previous["a"] == {"1": digest("1"), "2": digest("2")}


def test_a_client_without_the_previous_keyword_keeps_working(proj, fakes):
    make_registry(proj)
    fakes["local"] = FakeClient({"a": [image("1")]})  # list_images(repository, known=None)
    assert run(proj).status == SyncTask.Status.SUCCEEDED
    assert inventory(proj) == {"a:1": digest("1")}
