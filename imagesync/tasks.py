"""The only module django-q2 knows: it passes ids, not objects.

Schedules (see imagesync/schedules.py) call `scheduled_sync` and `purge_history` daily and
`watchdog` every minute;
`SyncTask.enqueue` (the console, the API, `manage.py sync_images` and the watchdog) queues
`run_sync_task` through `enqueue_sync_task`.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def enqueue_sync_task(task_id: int) -> None:
    """Hand the task id to django-q2. A failure here is logged, not raised: the watchdog
    re-enqueues a queued task that no worker picked up."""
    try:
        from django_q.tasks import async_task

        async_task(
            "imagesync.tasks.run_sync_task",
            task_id,
            distribute=True,
            task_name=f"sync-task-{task_id}",
            group="imagesync-sync",
        )
    except Exception:
        logger.exception("Could not enqueue sync task #%s; the watchdog will retry.", task_id)


def enqueue_sync_jobs(job_ids: list[int]) -> None:
    """Offer the jobs of a running task to every worker process. A message whose job was
    already taken is a no-op; a lost one costs nothing, since the processes taking part in
    the task claim queued jobs from the database too."""
    try:
        from django_q.tasks import async_task

        for job_id in job_ids:
            async_task(
                "imagesync.tasks.run_sync_job",
                job_id,
                task_name=f"sync-job-{job_id}",
                group="imagesync-sync",
            )
    except Exception:
        logger.exception("Could not enqueue sync jobs %s; this worker runs them.", job_ids)


def run_sync_task(task_id: int, distribute: bool = False) -> None:
    """Claim and run one sync task; a no-op when another worker already claimed it. From the
    queue (`distribute`), its jobs are offered to the other worker processes too; called
    directly (tests, `sync_images --wait`) this process runs them all."""
    from django_q.conf import Conf

    from imagesync.sync.run import SyncRun

    # django-q2's sync mode (tests) would run each offered job inline, inside this call.
    announce = enqueue_sync_jobs if distribute and not Conf.SYNC else None
    run = SyncRun.claim(task_id, announce=announce)
    if run is not None:
        run.execute()


def run_sync_job(job_id: int) -> None:
    """Claim one job of a running task and help with the task until all its jobs are done;
    a no-op when the job was already taken."""
    from imagesync.sync.run import join_job

    join_job(job_id, announce=enqueue_sync_jobs)


def scheduled_sync() -> dict[str, int]:
    """The daily synchronization of every project that has a registry."""
    from imagesync.sync.scheduled import scheduled_sync

    return scheduled_sync()


def purge_history() -> dict[str, int]:
    """Delete history older than HISTORY_RETENTION_DAYS (daily)."""
    from imagesync.history import purge

    return purge()


def enqueue_event_refresh(registry_id: int) -> None:
    """Queue a refresh of the repositories that registry events marked on a connection (see
    imagesync/events.py). A failure is logged: the marks stay, and the next event enqueues."""
    try:
        from django_q.tasks import async_task

        async_task(
            "imagesync.tasks.refresh_registry_events",
            registry_id,
            task_name=f"event-refresh-{registry_id}",
            group="imagesync-events",
        )
    except Exception:
        logger.exception("Could not enqueue the event refresh of registry %s.", registry_id)


def refresh_registry_events(registry_id: int, wait: bool = True) -> int | None:
    """Refresh the repositories registry events marked on a connection, after the burst's
    coalescing window, as one SyncTask with the trigger "event"; its id (None: nothing to do)."""
    from imagesync.events import refresh_registry

    return refresh_registry(registry_id, wait=wait)


def watchdog() -> dict[str, int]:
    """Finish tasks whose worker stopped responding; re-enqueue lost queued tasks and the
    registry event refreshes that no worker took."""
    from imagesync.events import requeue_forgotten
    from imagesync.sync.watchdog import watchdog

    found = watchdog(announce=enqueue_sync_jobs)
    found["event_refreshes_requeued"] = requeue_forgotten()
    return found
