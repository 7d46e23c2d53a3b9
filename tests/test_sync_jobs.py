"""The jobs of one sync task as the watchdog and late workers see them: a job whose worker
died is re-queued while the task lives, given up after SYNC_JOB_ATTEMPTS, and a repository
reached by two workers is counted once. (The real thing, with qcluster processes killed
mid-sync, is tests/test_scaleout.py.)"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from imagesync.models import Repository, SyncJob, SyncTask, SyncTaskRepository
from imagesync.sync.jobs import Job, RegistryRun
from imagesync.sync.limits import FileSlots
from imagesync.sync.run import SyncRun
from imagesync.sync.watchdog import watchdog
from tests.support.fakes import image


@pytest.fixture
def running(db, project, registry, settings):
    """A claimed task with one batch job of two repositories, run by a worker on attempt 1."""
    settings.SYNC_HEARTBEAT_TIMEOUT = 120
    settings.SYNC_JOB_ATTEMPTS = 3
    task = SyncTask.objects.request(project)
    assert SyncRun.claim(task.pk) is not None
    results = []
    for path in ("a", "b"):
        repo = Repository.objects.create(registry=registry, type="other", path=path, name=path)
        results.append(
            SyncTaskRepository.objects.create(
                task=task, repository=repo, repository_type="other", repository_path=path
            )
        )
    SyncTask.objects.filter(pk=task.pk).update(repositories_total=2)
    job = SyncJob.objects.create(
        task=task, kind=SyncJob.Kind.BATCH, registry=registry, result_ids=[r.pk for r in results]
    )
    assert job.claim("host:1")
    return task, job, results


def silence(job: SyncJob, seconds: int) -> None:
    SyncJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_the_watchdog_requeues_the_job_of_a_dead_worker_while_others_keep_the_task(running):
    task, job, _ = running
    silence(job, 300)  # its worker died; the task's heartbeat is fresh (others work on it)
    offered = []
    found = watchdog(announce=offered.extend)
    assert (found["jobs_requeued"], found["interrupted"]) == (1, 0)
    job.refresh_from_db()
    assert job.status == SyncJob.Status.QUEUED and job.worker == ""
    assert offered == [job.pk]
    task.refresh_from_db()
    assert task.status == SyncTask.Status.RUNNING

    # The dead worker's claim is gone: were it only slow, its next heartbeat tells it to stop.
    assert SyncJob(pk=job.pk, attempt=1, status=SyncJob.Status.RUNNING).beat() is False


def test_a_job_whose_workers_keep_dying_is_given_up_and_the_task_ends(running):
    task, job, results = running
    SyncJob.objects.filter(pk=job.pk).update(attempt=3)
    silence(job, 300)
    assert watchdog()["jobs_requeued"] == 0
    job.refresh_from_db()
    assert job.status == SyncJob.Status.DONE
    assert set(task.results.values_list("status", "reason_code")) == {("failed", "interrupted")}
    task.refresh_from_db()
    assert task.status == SyncTask.Status.FAILED
    assert task.repositories_failed == 2
    assert "stopped responding 3 times" in task.failure_reason


def test_a_task_whose_every_worker_died_is_interrupted_not_requeued(running):
    task, job, _ = running
    silence(job, 300)
    SyncTask.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    found = watchdog()
    assert (found["interrupted"], found["jobs_requeued"]) == (1, 0)
    job.refresh_from_db()
    assert job.status == SyncJob.Status.DONE


def test_a_repository_reached_by_two_workers_is_counted_once(running):
    task, job, results = running
    run = RegistryRun(registry=job.registry)
    repo = results[0].repository
    first = run._store(Job(task, results[0].pk, repo, repo.registry_id), [image("1.0")])
    late = run._store(Job(task, results[0].pk, repo, repo.registry_id), [image("1.0")])
    assert first.finished and late.finished
    task.refresh_from_db()
    assert (task.repositories_done, task.images_added) == (1, 1)


def test_file_slots_never_let_more_than_the_limit_in_at_once(tmp_path):
    slots = FileSlots(tmp_path / "slot", 2)
    inside, most, lock = [0], [0], threading.Lock()

    def request():
        with slots:
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2


def test_a_listing_is_stored_only_by_the_first_claim_and_only_when_it_is_the_newest(
    db, project, registry
):
    """Before a listing is stored, its repository's result is claimed and the listing taken
    (one statement on PostgreSQL): a result recorded elsewhere is left alone, a listing that
    started before the stored one is not stored, and a claim that goes on commits without
    waiting for the disk on PostgreSQL."""
    from django.db import connection, transaction

    from imagesync.sync.jobs import _claim
    from tests.support.factories import make_image, make_repository, make_result

    task = SyncTask.objects.request(project)
    now = timezone.now()

    def job_for(path: str, status: str, stored_listing=None) -> Job:
        repository = make_repository(registry, path)
        Repository.objects.filter(pk=repository.pk).update(listing_started_at=stored_listing)
        result = make_result(task, repository, status)
        return Job(task, result.pk, repository, registry.pk)

    def listing_of(job: Job):
        return Repository.objects.get(pk=job.repository.pk).listing_started_at

    def claim(job: Job, started):
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO on")
            taken, stored = _claim(job, started)
            claim.stored = stored
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute("SHOW synchronous_commit")
                    return taken, cursor.fetchone()[0]
            return taken, None

    fresh = job_for("fresh", SyncTaskRepository.Status.RUNNING, now - timedelta(hours=1))
    make_image(fresh.repository, "v1")
    taken, commit = claim(fresh, now)
    assert taken is True
    assert listing_of(fresh) == now
    assert commit in (None, "off")
    # The stored images were read in the same round trip, for the reconcile.
    assert [row[1] for row in claim.stored] == ["v1"]
    assert _claim(fresh, None) == (True, None)  # a listing's start not known: not read

    done = job_for("done", SyncTaskRepository.Status.FINISHED, now - timedelta(hours=1))
    taken, commit = claim(done, now)
    assert taken is None
    assert listing_of(done) == now - timedelta(hours=1)  # untouched
    assert commit in (None, "on")

    newer = job_for("newer", SyncTaskRepository.Status.PENDING, now + timedelta(seconds=5))
    taken, commit = claim(newer, now)
    assert taken is False
    assert listing_of(newer) == now + timedelta(seconds=5)
    assert commit in (None, "off")

    unknown = job_for("unknown", SyncTaskRepository.Status.PENDING, now + timedelta(seconds=5))
    assert claim(unknown, None)[0] is True  # no start to compare: stored
    assert listing_of(unknown) == now + timedelta(seconds=5)


def test_a_repository_result_is_claimed_once_and_commits_without_waiting_on_postgresql(
    db, project, registry
):
    """The statement that locks a repository's result row also lets the transaction's COMMIT
    return before its WAL reaches the disk on PostgreSQL -- only for a result still to be
    recorded, and only for that transaction."""
    from django.db import connection, transaction

    from imagesync.sync.jobs import _still_unfinished
    from tests.support.factories import make_repository, make_result

    task = SyncTask.objects.request(project)
    pending = make_result(task, make_repository(registry, "a"), SyncTaskRepository.Status.PENDING)
    done = make_result(task, make_repository(registry, "b"), SyncTaskRepository.Status.FINISHED)

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    postgresql = connection.vendor == "postgresql"
    with transaction.atomic():
        if postgresql:  # the test database's sessions may commit without waiting already
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO on")
        assert _still_unfinished(done.pk, commit_without_waiting=True) is False
        if postgresql:
            assert setting() == "on"
        assert _still_unfinished(pending.pk, commit_without_waiting=True) is True
        if postgresql:
            assert setting() == "off"
