"""The only module django-q2 knows: it passes ids, not objects.

Schedules (see imagesync/schedules.py and migration 0002) call `scheduled_sync` daily and
`watchdog` every minute; the console and `manage.py sync_images` enqueue `run_sync_task`.
"""

from __future__ import annotations


def run_sync_task(task_id: int) -> None:
    """Claim and run one sync task; a no-op when another worker already claimed it."""
    from imagesync import sync

    sync.run_task(task_id)


def scheduled_sync() -> dict[str, int]:
    """The daily synchronization of every project that has a registry."""
    from imagesync import sync

    return sync.scheduled_sync()


def watchdog() -> dict[str, int]:
    """Finish tasks whose worker stopped responding; re-enqueue lost queued tasks."""
    from imagesync import sync

    return sync.watchdog()
