"""SyncRun: one run of one sync task, from the claim to the final status."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from imagesync import reasons
from imagesync.models import (
    BATCH_SIZE,
    SWR_TYPES,
    AuthorizationGrant,
    Image,
    Registry,
    Repository,
    SyncTask,
    SyncTaskRepository,
)
from imagesync.registries.base import RegistryError, RepositoryInfo
from imagesync.sync.jobs import Job, Outcome, RegistryRun
from imagesync.sync.pool import WorkerPool, db_guard

logger = logging.getLogger(__name__)

REGISTRY_LISTING_PATH = "(repository list)"  # result row of a registry whose listing failed
SWR_NOT_AUTHORIZED_MESSAGE = (
    "SWR repositories need the project's SWR authorization, which is not granted; "
    "an administrator can grant it in the admin site."
)
# A sync that changed at least this many images refreshes the planner statistics, so Image View
# filters keep using their indexes right after a large first sync (instead of waiting for
# autovacuum on PostgreSQL, or for ever on SQLite).
STATISTICS_THRESHOLD = 1000

ProgressCallback = Callable[[SyncTask, Outcome], None]


@dataclass
class Failure:
    """A repository (or a whole registry, `repository` None) that failed before any sync."""

    registry: Registry
    repository: Repository | None
    type: str
    path: str
    code: str
    message: str


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


class SyncRun:
    """One run of a claimed sync task.

    1. Preconditions: a scheduled run needs active SWROperatePolicy and CCEOperatePolicy grants.
    2. The scope is resolved: chosen repositories as they are, or for "all" and "types" every
       registry of the project listed in parallel (HTTP only), its repositories brought in line
       with a complete listing. SWR repositories need the project's SWR authorization grant.
    3. Result rows are created, then SYNC_WORKERS threads sync the repositories, at most
       `client.max_concurrency` at a time per registry; each repository is reconciled in its
       own transaction together with its result row and the task counters.
    4. The main thread hands out work, writes the heartbeat and honours cancel between
       repositories; the task ends with the status its results call for, unless the watchdog
       already finished it as interrupted.

    It knows nothing of the console's HTTP requests or of the queue: a test can run it."""

    def __init__(self, task: SyncTask, on_progress: ProgressCallback | None = None) -> None:
        self.task = task
        self.on_progress = on_progress
        self.runs: list[RegistryRun] = []
        self.jobs: list[tuple[RegistryRun, Repository]] = []
        self.failures: list[Failure] = []
        self.removed_images = 0
        self.swr_authorized = AuthorizationGrant.objects.swr_authorized(task.project)

    @classmethod
    def claim(cls, task_id: int, on_progress: ProgressCallback | None = None) -> SyncRun | None:
        """The run of a queued task, if this caller won it (the conditional UPDATE alone
        decides which worker runs it); None when it was not queued any more."""
        with db_guard():
            claimed = SyncTask(pk=task_id, status=SyncTask.Status.QUEUED).claim(worker_name())
        if not claimed:
            logger.info("Sync task #%s was not queued any more; nothing to do.", task_id)
            return None
        return cls(SyncTask.objects.select_related("project").get(pk=task_id), on_progress)

    def execute(self) -> SyncTask:
        """Run the task to its end; returns it as it ended."""
        try:
            self._run()
        except Exception:
            logger.exception("Sync task #%s stopped on an unexpected error.", self.task.pk)
            self.task.finish(
                SyncTask.Status.FAILED,
                reasons.INTERNAL_ERROR,
                "The synchronization stopped on an unexpected error; see the worker log.",
            )
            self.task.skip_unfinished(
                reasons.INTERNAL_ERROR, "Not synchronized: the task stopped on an error."
            )
        finally:
            for run in self.runs:
                run.close()
        self.task.refresh_from_db()
        refresh_statistics(self.task)
        return self.task

    def _run(self) -> None:
        if not self._preconditions_met():
            return
        if self.task.scope == SyncTask.Scope.REPOSITORIES:
            self._take_chosen_repositories()
        else:
            self._discover_repositories()
        if not self._still_running():
            return  # the watchdog finished it while the registries were being listed
        self._create_results()
        if not self._sync_jobs():
            return  # the watchdog finished it meanwhile
        self._finish()

    def _preconditions_met(self) -> bool:
        if self.task.trigger != SyncTask.Trigger.SCHEDULED:
            return True
        project = self.task.project
        missing = AuthorizationGrant.objects.missing_for_schedule(project)
        if not missing:
            return True
        several = len(missing) > 1
        self.task.finish(
            SyncTask.Status.FAILED,
            reasons.MISSING_AUTHORIZATION,
            f"The scheduled synchronization needs the {' and '.join(missing)} authorization"
            f"{'s' if several else ''}, not granted for project {project.name}. "
            f"An administrator can grant {'them' if several else 'it'} in the admin site.",
        )
        return False

    # --- the scope ------------------------------------------------------------------------

    def _open(self, registry: Registry) -> RegistryRun | RegistryError:
        run = RegistryRun(registry=registry)
        try:
            run.open()
        except RegistryError as exc:
            return exc
        self.runs.append(run)
        return run

    def _take_chosen_repositories(self) -> None:
        by_registry: dict[int, RegistryRun | RegistryError] = {}
        chosen = self.task.scope_repositories.select_related("registry")
        for repo in chosen.order_by("registry_id", "path"):
            if repo.type in SWR_TYPES and not self.swr_authorized:
                self._fail_repository(repo, reasons.SWR_NOT_AUTHORIZED, SWR_NOT_AUTHORIZED_MESSAGE)
                continue
            if repo.registry_id not in by_registry:
                by_registry[repo.registry_id] = self._open(repo.registry)
            run = by_registry[repo.registry_id]
            if isinstance(run, RegistryError):
                self._fail_repository(repo, run.code, run.message)
            else:
                self.jobs.append((run, repo))

    def _fail_repository(self, repo: Repository, code: str, message: str) -> None:
        self.failures.append(Failure(repo.registry, repo, repo.type, repo.path, code, message))

    def _discover_repositories(self) -> None:
        wanted = self.task.wanted_types
        to_list: list[tuple[RegistryRun, tuple[str, ...]]] = []
        for registry in self.task.project.registries.all().order_by("name"):
            types = tuple(t for t in registry.repository_types if t in wanted)
            if not types:
                continue
            if registry.kind == Registry.Kind.SWR and not self.swr_authorized:
                code, message = reasons.SWR_NOT_AUTHORIZED, SWR_NOT_AUTHORIZED_MESSAGE
                self._fail_registry(registry, types, code, message)
                continue
            run = self._open(registry)
            if isinstance(run, RegistryError):
                self._fail_registry(registry, types, run.code, run.message)
            else:
                to_list.append((run, types))
        listings = self._list_registries(to_list)
        for run, types in to_list:
            listing = listings[run.registry.pk]
            if isinstance(listing, RegistryError):
                message = f"Listing the repositories failed: {listing.message}"
                self._fail_registry(run.registry, types, listing.code, message)
                continue
            with db_guard(), transaction.atomic():
                repos, removed = Repository.objects.apply_listing(
                    run.registry, types, listing, task=self.task
                )
            run.listed = True
            self.removed_images += removed
            for repo in repos:
                repo.registry = run.registry
                self.jobs.append((run, repo))

    def _fail_registry(
        self, registry: Registry, types: tuple[str, ...], code: str, message: str
    ) -> None:
        """One failure per known repository of the registry in scope (their images stay as
        they are), or one registry-level failure when none is known yet."""
        repos = Repository.objects.filter(registry=registry, type__in=types).present()
        found = [
            Failure(registry, repo, repo.type, repo.path, code, message)
            for repo in repos.order_by("path")
        ]
        self.failures += found or [
            Failure(registry, None, types[0], REGISTRY_LISTING_PATH, code, message)
        ]

    def _list_registries(
        self, to_list: list[tuple[RegistryRun, tuple[str, ...]]]
    ) -> dict[int, list[RepositoryInfo] | RegistryError]:
        """List the repositories of every registry in parallel (HTTP only, no database access
        in the threads), keeping the heartbeat going meanwhile."""
        results: dict[int, list[RepositoryInfo] | RegistryError] = {}
        if not to_list:
            return results
        workers = min(len(to_list), settings.SYNC_WORKERS)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_list_one, run, types): run for run, types in to_list}
            pending = set(futures)
            while pending:
                done, pending = wait(
                    pending, timeout=settings.SYNC_HEARTBEAT_INTERVAL, return_when=FIRST_COMPLETED
                )
                for future in done:
                    results[futures[future].registry.pk] = future.result()
                with db_guard():
                    self.task.beat()
        return results

    # --- the repositories -----------------------------------------------------------------

    def _create_results(self) -> None:
        now = timezone.now()
        rows = [
            SyncTaskRepository(
                task=self.task,
                repository=f.repository,
                registry_name=f.registry.name,
                repository_type=f.type,
                repository_path=f.path,
                status=SyncTaskRepository.Status.FAILED,
                reason_code=f.code[:32],
                reason_message=f.message,
                started_at=now,
                finished_at=now,
            )
            for f in self.failures
        ]
        rows += [
            SyncTaskRepository(
                task=self.task,
                repository=repo,
                registry_name=run.registry.name,
                repository_type=repo.type,
                repository_path=repo.path,
            )
            for run, repo in self.jobs
        ]
        with db_guard(), transaction.atomic():
            SyncTaskRepository.objects.bulk_create(rows, batch_size=BATCH_SIZE)
            result_ids = dict(
                self.task.results.filter(repository__isnull=False).values_list(
                    "repository_id", "id"
                )
            )
            SyncTask.objects.filter(pk=self.task.pk).update(
                repositories_total=len(rows),
                repositories_done=len(self.failures),
                repositories_failed=len(self.failures),
                images_removed=F("images_removed") + self.removed_images,
                heartbeat_at=now,
            )
        for run, repo in self.jobs:
            run.pending.append(Job(self.task, result_ids[repo.pk], repo, run.registry.pk))

    def _sync_jobs(self) -> bool:
        """Hand repositories to the worker threads within the per-registry caps; heartbeat and
        honour cancel between repositories. False when the task stopped being ours."""
        runs = [run for run in self.runs if run.pending]
        total = sum(len(run.pending) for run in runs)
        if not total:
            return self._still_running()
        size = min(settings.SYNC_WORKERS, total)
        with WorkerPool(size, f"sync-{self.task.pk}", _sync_job) as pool:
            return _Dispatcher(self, runs, pool).run()

    def _still_running(self) -> bool:
        with db_guard():
            running = SyncTask.objects.filter(pk=self.task.pk, status=SyncTask.Status.RUNNING)
            return running.exists()

    def _finish(self) -> None:
        """Set the final status from the results, unless the task is no longer ours."""
        with db_guard():
            synced = [run.registry.pk for run in self.runs if run.listed or run.synced_any]
            Registry.objects.filter(pk__in=synced).update(last_synced_at=timezone.now())
            self.task.conclude()


class _Dispatcher:
    """The main thread's loop over one run's jobs: hand out, collect, beat, watch for cancel."""

    def __init__(self, sync_run: SyncRun, runs: list[RegistryRun], pool: WorkerPool) -> None:
        self.task = sync_run.task
        self.on_progress = sync_run.on_progress
        self.runs = runs
        self.pool = pool
        self.in_flight = 0
        self.stopping = False
        self.lost = False
        self.last_beat = time.monotonic()

    def run(self) -> bool:
        interval = settings.SYNC_HEARTBEAT_INTERVAL
        while True:
            if not self.stopping:
                self._hand_out()
            if self.in_flight == 0:
                return not self.lost
            outcome = self.pool.result(max(0.05, interval - (time.monotonic() - self.last_beat)))
            if outcome is not None:
                self._collect(outcome)
            if time.monotonic() - self.last_beat >= interval:
                self._beat()
            if outcome is not None and not self.stopping:
                self._check_cancel()

    def _hand_out(self) -> None:
        """Queue jobs up to the pool's size, round robin over registries, within each cap."""
        progress = True
        while self.in_flight < self.pool.size and progress:
            progress = False
            for run in self.runs:
                if self.in_flight >= self.pool.size:
                    break
                if run.pending and run.in_flight < run.cap:
                    run.in_flight += 1
                    self.in_flight += 1
                    self.pool.submit((run, run.pending.popleft()))
                    progress = True

    def _collect(self, outcome: Outcome) -> None:
        self.in_flight -= 1
        run = next(r for r in self.runs if r.registry.pk == outcome.job.registry_id)
        run.in_flight -= 1
        run.synced_any = run.synced_any or outcome.finished
        if self.on_progress is not None:
            with db_guard():
                self.task.refresh_from_db()
            self.on_progress(self.task, outcome)

    def _beat(self) -> None:
        with db_guard():
            alive = self.task.beat()
        self.last_beat = time.monotonic()
        if not alive:
            self.stopping = self.lost = True

    def _check_cancel(self) -> None:
        with db_guard():
            row = (
                SyncTask.objects.filter(pk=self.task.pk)
                .values_list("status", "cancel_requested")
                .first()
            )
        if row is None or row[0] != SyncTask.Status.RUNNING:
            self.stopping = self.lost = True
        elif row[1]:
            self.stopping = True


def _sync_job(item: tuple[RegistryRun, Job]) -> Outcome:
    run, job = item
    return run.sync(job)


def _list_one(run: RegistryRun, types: tuple[str, ...]) -> list[RepositoryInfo] | RegistryError:
    try:
        return list(run.client.list_repositories(list(types)))
    except RegistryError as exc:
        return exc
    except Exception:
        logger.exception("Listing the repositories of registry %s failed.", run.registry.pk)
        return RegistryError(reasons.BAD_RESPONSE, "The registry client failed unexpectedly.")


def refresh_statistics(task: SyncTask) -> bool:
    """Refresh the planner statistics after a sync that changed many images."""
    changed = task.images_added + task.images_updated + task.images_removed
    if changed < STATISTICS_THRESHOLD:
        return False
    try:
        with db_guard(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"ANALYZE {Image._meta.db_table}, {Repository._meta.db_table}")
            elif connection.vendor == "sqlite":
                cursor.execute("PRAGMA optimize")
    except DatabaseError:  # statistics are an optimisation: never fail a sync over them
        logger.warning("Refreshing planner statistics after sync task #%s failed.", task.pk)
        return False
    return True
