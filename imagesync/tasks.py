"""The only module django-q2 knows: it passes ids, not objects."""

from __future__ import annotations


def run_sync_task(task_id: int) -> None:
    from imagesync import sync

    sync.run_task(task_id)
