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
            task_name=f"sync-task-{task_id}",
            group="imagesync-sync",
        )
    except Exception:
        logger.exception("Could not enqueue sync task #%s; the watchdog will retry.", task_id)


def run_sync_task(task_id: int) -> None:
    """Claim and run one sync task; a no-op when another worker already claimed it."""
    from imagesync.sync.run import SyncRun

    run = SyncRun.claim(task_id)
    if run is not None:
        run.execute()


def scheduled_sync() -> dict[str, int]:
    """The daily synchronization of every project that has a registry."""
    from imagesync.sync.scheduled import scheduled_sync

    return scheduled_sync()


def purge_history() -> dict[str, int]:
    """Delete history older than HISTORY_RETENTION_DAYS (daily)."""
    from imagesync.history import purge

    return purge()


def watchdog() -> dict[str, int]:
    """Finish tasks whose worker stopped responding; re-enqueue lost queued tasks."""
    from imagesync.sync.watchdog import watchdog

    return watchdog()
