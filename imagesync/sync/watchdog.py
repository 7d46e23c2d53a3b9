"""The watchdog: no task shows "running" forever, and no queued task waits forever."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from imagesync import reasons
from imagesync.models import SyncJob, SyncTask
from imagesync.sync.run import end_jobs
from imagesync.sync.work import Announce, requeue_stale_jobs

logger = logging.getLogger(__name__)


def watchdog(now: datetime | None = None, announce: Announce | None = None) -> dict[str, int]:
    """Re-queue the jobs of running tasks whose worker died while other workers go on (and
    offer them through `announce`), finish running tasks whose heartbeat stopped as
    interrupted (every worker on them died), and look after queued tasks whose queue entry
    was lost.

    A job is re-queued when its own heartbeat is older than SYNC_HEARTBEAT_TIMEOUT while its
    task's is not; it is given up (its repositories recorded as failed) after
    SYNC_JOB_ATTEMPTS runs, and the task ends when its last job is done.

    Queued tasks: after 5 x SYNC_HEARTBEAT_TIMEOUT unclaimed, the task is enqueued again once
    (a duplicate entry is harmless: the claim is conditional) and `requeued_at` notes it. If it
    is still unclaimed after another 5 x SYNC_HEARTBEAT_TIMEOUT while no sync task runs at all
    -- the workers are idle, since this watchdog itself runs on one -- it is finished as
    interrupted so that the project can be synchronized again."""
    now = now or timezone.now()
    jobs_requeued = _look_after_jobs(now, announce)
    interrupted = _interrupt_silent(now)
    requeued, abandoned = _look_after_queued(now)
    return {
        "interrupted": interrupted,
        "requeued": requeued,
        "abandoned": abandoned,
        "jobs_requeued": jobs_requeued,
    }


def _look_after_jobs(now: datetime, announce: Announce | None) -> int:
    cutoff = now - timedelta(seconds=settings.SYNC_HEARTBEAT_TIMEOUT)
    alive = SyncTask.objects.filter(status=SyncTask.Status.RUNNING, heartbeat_at__gte=cutoff)
    with_stale_jobs = alive.filter(
        jobs__status=SyncJob.Status.RUNNING, jobs__heartbeat_at__lt=cutoff
    ).distinct()
    requeued = 0
    for task in with_stale_jobs:
        count = requeue_stale_jobs(task, now)
        requeued += count
        if count and announce is not None:
            queued = task.jobs.filter(status=SyncJob.Status.QUEUED)
            announce(list(queued.values_list("pk", flat=True)))
        if not task.jobs.exclude(status=SyncJob.Status.DONE).exists():
            task.conclude()  # its last job was given up: the task ends now
    return requeued


def _interrupt_silent(now: datetime) -> int:
    cutoff = now - timedelta(seconds=settings.SYNC_HEARTBEAT_TIMEOUT)
    stale = SyncTask.objects.filter(status=SyncTask.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True)
    )
    interrupted = 0
    for task in stale.only("pk", "heartbeat_at", "started_at", "created_at"):
        last = task.heartbeat_at or task.started_at or task.created_at
        silent = int((now - last).total_seconds())
        reason = (
            f"The worker stopped responding (no heartbeat for {silent} s); "
            "the task was interrupted."
        )
        if task.interrupt(reasons.INTERRUPTED, reason, now):
            interrupted += 1
            task.skip_unfinished(
                reasons.INTERRUPTED, "Not synchronized: the worker stopped responding."
            )
            end_jobs(task)
            logger.warning("Sync task #%s interrupted: no heartbeat for %s s.", task.pk, silent)
    return interrupted


def _look_after_queued(now: datetime) -> tuple[int, int]:
    grace = timedelta(seconds=settings.SYNC_HEARTBEAT_TIMEOUT * 5)
    requeued = abandoned = 0
    for task in SyncTask.objects.filter(
        status=SyncTask.Status.QUEUED, created_at__lt=now - grace, requeued_at__isnull=True
    ):
        if task.mark_requeued(now):
            requeued += 1
            task.enqueue()
    if SyncTask.objects.filter(status=SyncTask.Status.RUNNING).exists():
        return requeued, abandoned
    for task in SyncTask.objects.filter(
        status=SyncTask.Status.QUEUED, created_at__lt=now - 2 * grace, requeued_at__isnull=False
    ):
        minutes = int((now - task.created_at).total_seconds() // 60)
        abandoned += task.abandon(
            reasons.NEVER_STARTED,
            f"No worker picked the task up in {minutes} minutes, even after it was "
            "queued again; the task was interrupted. Start it again.",
            now,
        )
    return requeued, abandoned
