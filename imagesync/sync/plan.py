"""Splitting a sync task into jobs, and the result rows that go with them.

A task of scope "repositories" becomes batch jobs at once; "all" and "types" become one listing
job per registry, each of which, once it has listed its registry, adds that registry's results
and batch jobs. Every function here writes results, task counters and jobs in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from imagesync.models import (
    BATCH_SIZE,
    SWR_TYPES,
    Registry,
    Repository,
    SyncJob,
    SyncTask,
    SyncTaskRepository,
)
from imagesync.reasons import SWR_NOT_AUTHORIZED
from imagesync.sync.pool import db_guard

REGISTRY_LISTING_PATH = "(repository list)"  # result row of a registry whose listing failed
SWR_NOT_AUTHORIZED_MESSAGE = (
    "SWR repositories need the project's SWR authorization, which is not granted; "
    "an administrator can grant it in the admin site."
)


@dataclass
class Failure:
    """A repository (or a whole registry, `repository` None) that failed before any sync."""

    registry: Registry
    repository: Repository | None
    type: str
    path: str
    code: str
    message: str

    def result(self, task: SyncTask, now) -> SyncTaskRepository:
        """Its result row: finished as failed, with the reason."""
        return SyncTaskRepository(
            task=task,
            repository=self.repository,
            registry_name=self.registry.name,
            repository_type=self.type,
            repository_path=self.path,
            status=SyncTaskRepository.Status.FAILED,
            reason_code=self.code[:32],
            reason_message=self.message,
            started_at=now,
            finished_at=now,
        )


def plan_task(task: SyncTask, swr_authorized: bool) -> list[int]:
    """Create the first jobs of a claimed task (and the results of what failed already);
    their ids."""
    if task.scope == SyncTask.Scope.REPOSITORIES:
        return _plan_chosen(task, swr_authorized)
    wanted = task.wanted_types
    failures: list[Failure] = []
    listings = []
    for registry in task.project.registries.all().order_by("name"):
        types = tuple(t for t in registry.repository_types if t in wanted)
        if not types:
            continue
        if registry.kind == Registry.Kind.SWR and not swr_authorized:
            failures += registry_failures(
                registry, types, SWR_NOT_AUTHORIZED, SWR_NOT_AUTHORIZED_MESSAGE
            )
            continue
        listings.append(
            SyncJob(
                task=task,
                kind=SyncJob.Kind.LISTING,
                registry=registry,
                repository_types=list(types),
            )
        )
    with db_guard(), transaction.atomic():
        add_results(task, None, [], failures)
        return [job.pk for job in SyncJob.objects.bulk_create(listings)]


def _plan_chosen(task: SyncTask, swr_authorized: bool) -> list[int]:
    failures: list[Failure] = []
    by_registry: dict[int, list[Repository]] = {}
    chosen = task.scope_repositories.select_related("registry")
    for repo in chosen.order_by("registry_id", "path"):
        if repo.type in SWR_TYPES and not swr_authorized:
            failures.append(
                Failure(
                    repo.registry,
                    repo,
                    repo.type,
                    repo.path,
                    SWR_NOT_AUTHORIZED,
                    SWR_NOT_AUTHORIZED_MESSAGE,
                )
            )
            continue
        by_registry.setdefault(repo.registry_id, []).append(repo)
    with db_guard(), transaction.atomic():
        add_results(task, None, [], failures)
        return [
            job_id
            for repos in by_registry.values()
            for job_id in add_results(task, repos[0].registry, repos, [])
        ]


def registry_failures(
    registry: Registry, types: tuple[str, ...], code: str, message: str
) -> list[Failure]:
    """One failure per known repository of the registry in scope (their images stay as they
    are), or one registry-level failure when none is known yet."""
    repos = Repository.objects.filter(registry=registry, type__in=types).present()
    found = [
        Failure(registry, repo, repo.type, repo.path, code, message)
        for repo in repos.order_by("path")
    ]
    return found or [Failure(registry, None, types[0], REGISTRY_LISTING_PATH, code, message)]


def add_results(
    task: SyncTask,
    registry: Registry | None,
    repos: list[Repository],
    failures: list[Failure],
    removed_images: int = 0,
) -> list[int]:
    """Result rows for `failures` (finished as failed) and for `repos` (pending), added to the
    task's counters, and batch jobs of SYNC_JOB_SIZE pending repositories; the new jobs' ids.
    Call inside a transaction."""
    now = timezone.now()
    rows = [failure.result(task, now) for failure in failures]
    rows += [
        SyncTaskRepository(
            task=task,
            repository=repo,
            registry_name=registry.name,
            repository_type=repo.type,
            repository_path=repo.path,
        )
        for repo in repos
    ]
    SyncTaskRepository.objects.bulk_create(rows, batch_size=BATCH_SIZE)
    SyncTask.objects.filter(pk=task.pk).update(
        repositories_total=F("repositories_total") + len(rows),
        repositories_done=F("repositories_done") + len(failures),
        repositories_failed=F("repositories_failed") + len(failures),
        images_removed=F("images_removed") + removed_images,
        heartbeat_at=now,
    )
    if not repos:
        return []
    by_repository = dict(
        task.results.filter(repository__in=repos).values_list("repository_id", "id")
    )
    result_ids = [by_repository[repo.pk] for repo in repos]
    size = settings.SYNC_JOB_SIZE
    jobs = [
        SyncJob(
            task=task,
            kind=SyncJob.Kind.BATCH,
            registry=registry,
            result_ids=result_ids[start : start + size],
        )
        for start in range(0, len(result_ids), size)
    ]
    return [job.pk for job in SyncJob.objects.bulk_create(jobs)]
