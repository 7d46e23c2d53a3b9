"""Building inventory history at chosen moments: a repository synchronized "at" a past time
through the same calls the sync engine makes (reconcile and record_repository in one
transaction), and the inventory export of a project, live or as of a moment."""

from __future__ import annotations

import io
from datetime import datetime

from django.core.management import call_command
from django.db import transaction

from imagesync.models import Repository, SyncTask, SyncTaskRepository
from imagesync.registries.base import ImageInfo


def _task_at(repository: Repository, now: datetime, status: str) -> SyncTask:
    """A task of the repository's project that started and finished at `now`."""
    return SyncTask.objects.create(
        project=repository.registry.project,
        status=status,
        created_at=now,
        started_at=now,
        finished_at=now,
        repositories_total=1,
    )


def _result_at(task: SyncTask, repository: Repository, now: datetime) -> SyncTaskRepository:
    """The repository's result row in `task`, running since `now`."""
    return SyncTaskRepository.objects.create(
        task=task,
        repository=repository,
        registry_name=repository.registry.name,
        repository_type=repository.type,
        repository_path=repository.path,
        status=SyncTaskRepository.Status.RUNNING,
        started_at=now,
    )


def sync_at(
    repository: Repository, listing: list[ImageInfo], now: datetime, task: SyncTask | None = None
) -> SyncTask:
    """Synchronize `repository` to exactly `listing` as a task finishing at `now` would."""
    task = task or _task_at(repository, now, SyncTask.Status.SUCCEEDED)
    result = _result_at(task, repository, now)
    with transaction.atomic():
        counts = repository.reconcile(listing, now, task=task)
        task.record_repository(
            result.pk,
            added=counts.added,
            updated=counts.updated,
            removed=counts.removed,
            unchanged=counts.unchanged,
            at=now,
        )
    return task


def fail_at(repository: Repository, now: datetime) -> SyncTask:
    """A task whose listing of `repository` failed at `now`: nothing was learned."""
    task = _task_at(repository, now, SyncTask.Status.FAILED)
    result = _result_at(task, repository, now)
    task.record_repository(result.pk, failed=True, code="unreachable", message="down", at=now)
    return task


def export(project, *options: str, fmt: str = "csv") -> str:
    """`manage.py export_images --project P [options]` as text."""
    out = io.StringIO()
    call_command(
        "export_images", "--project", str(project.pk), "--format", fmt, *options, stdout=out
    )
    return out.getvalue()
