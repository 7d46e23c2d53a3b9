"""The daily scheduled sync of every project."""

from __future__ import annotations

from django.utils import timezone

from imagesync import reasons
from imagesync.models import Project, SyncRefused, SyncTask


def scheduled_sync() -> dict[str, int]:
    """One task per project that has a registry. A project whose sync is already active gets a
    skipped task saying so; the grants are checked when the task runs, so a missing grant is
    recorded on the task row with the policies named."""
    started = skipped = 0
    for project in Project.objects.filter(registries__isnull=False).distinct().order_by("name"):
        try:
            SyncTask.objects.request(project, trigger=SyncTask.Trigger.SCHEDULED)
            started += 1
        except SyncRefused as refusal:
            now = timezone.now()
            SyncTask.objects.create(
                project=project,
                trigger=SyncTask.Trigger.SCHEDULED,
                status=SyncTask.Status.SKIPPED,
                failure_code=reasons.ALREADY_RUNNING if refusal.active_task else reasons.REFUSED,
                failure_reason=f"Scheduled run skipped. {refusal.message}",
                created_at=now,
                finished_at=now,
            )
            skipped += 1
    return {"started": started, "skipped": skipped}
