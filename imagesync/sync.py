"""The sync engine: plain functions over models and registry clients.

Data flow: ../shared/DESIGN.md, "Data flow of one sync". Nothing here knows about HTTP requests
to the console or about the queue; tasks.py is the only module django-q2 calls.

One run of a task:
1. `SyncTask.claim` moves it from queued to running with a conditional UPDATE (one winner);
   every later transition (beat, finish, cancel, interrupt) is a SyncTask method too.
2. Preconditions: a scheduled run needs active SWROperatePolicy and CCEOperatePolicy grants.
3. The scope is resolved. For "all" and "types" every registry of the project is listed (in
   parallel, HTTP only); new repositories are added, returning ones un-removed, and vanished
   ones marked removed -- only after a complete listing. SWR repositories need the project's
   SWR authorization grant.
4. Repositories are synced by SYNC_WORKERS threads, at most `client.max_concurrency` at a time
   per registry, so one slow registry does not hold up the others. Each listing is complete or
   raises; a repository whose listing raised keeps its images untouched. The client is given
   the digests already known for its registry and, when its `list_images` takes `previous=`,
   the repository's stored tag -> digest map, so that unchanged tags cost one cheap request
   and new ones no more than they must.
5. Each repository is reconciled in its own short transaction with bulk queries, and its result
   row and the task counters are written in that same transaction.
6. The main thread hands out work, writes the heartbeat and honours cancel between
   repositories; the task ends succeeded / partially_succeeded / failed / cancelled, unless the
   watchdog already finished it as interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from imagesync.models import (
    SWR_TYPES,
    AuditEvent,
    AuthorizationGrant,
    Image,
    Project,
    Registry,
    Repository,
    RepositoryType,
    SyncTask,
    SyncTaskRepository,
)
from imagesync.registries.base import (
    DigestDetails,
    ImageInfo,
    RegistryError,
    RepositoryInfo,
    accepts_previous,
)

logger = logging.getLogger(__name__)

ALL_TYPES: tuple[str, ...] = tuple(t.value for t in RepositoryType)
SWR_TYPE_VALUES: frozenset[str] = frozenset(t.value for t in SWR_TYPES)

# Which repository types a registry kind can serve (the type belongs to the repository; one SWR
# connection yields the three SWR types).
KIND_TYPES: dict[str, tuple[str, ...]] = {
    Registry.Kind.SWR: tuple(t.value for t in SWR_TYPES),
    Registry.Kind.HARBOR: (RepositoryType.HARBOR.value,),
    Registry.Kind.JFROG: (RepositoryType.JFROG.value,),
    Registry.Kind.OTHER: (RepositoryType.OTHER.value,),
}

# Reason codes the engine itself writes (the clients' codes are in registries/base.py).
MISSING_AUTHORIZATION = "missing_authorization"
SWR_NOT_AUTHORIZED = "swr_not_authorized"
INTERNAL_ERROR = "internal_error"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"
ALREADY_RUNNING = "already_running"
NEVER_STARTED = "never_started"

REGISTRY_LISTING_PATH = "(repository list)"  # result row of a registry whose listing failed
BATCH_SIZE = 500


class SyncRefused(Exception):
    """A sync request that cannot be accepted; `message` is shown to the user as is.

    `active_task` is set when the refusal is because another sync of the project is active.
    """

    def __init__(self, message: str, active_task: SyncTask | None = None):
        super().__init__(message)
        self.message = message
        self.active_task = active_task


# --- requesting, cancelling, retrying ------------------------------------------------------


def active_task_message(task: SyncTask) -> str:
    return f"A synchronization is already in progress: task #{task.pk} ({task.status})."


def _refuse_if_active(project) -> None:
    active = SyncTask.objects.active().filter(project=project).order_by("created_at").first()
    if active is not None:
        raise SyncRefused(active_task_message(active), active_task=active)


def _validate_types(types: Iterable[str]) -> list[str]:
    chosen: list[str] = []
    for value in types or ():
        value = str(value).strip()
        if value not in ALL_TYPES:
            raise SyncRefused(
                f"Unknown repository type {value!r}; choose from {', '.join(ALL_TYPES)}."
            )
        if value not in chosen:
            chosen.append(value)
    if not chosen:
        raise SyncRefused("Choose at least one repository type to synchronize.")
    return chosen


def _validate_repositories(project, repositories: Iterable[Any]) -> list[Repository]:
    ids: list[int] = []
    for item in repositories or ():
        pk = item.pk if isinstance(item, Repository) else item
        try:
            ids.append(int(pk))
        except (TypeError, ValueError):
            raise SyncRefused(f"{item!r} is not a repository.") from None
    if not ids:
        raise SyncRefused("Choose at least one repository to synchronize.")
    found = list(Repository.objects.of_project(project).present().filter(pk__in=ids))
    if len(found) != len(set(ids)):
        raise SyncRefused(
            "Some of the chosen repositories do not belong to this project or no longer exist."
        )
    return found


def describe_scope(task: SyncTask) -> str:
    if task.scope == SyncTask.Scope.TYPES:
        return "types: " + ", ".join(task.scope_types)
    if task.scope == SyncTask.Scope.REPOSITORIES:
        return f"{task.scope_repositories.count()} chosen repositories"
    return "all repositories"


def request_sync(
    project,
    *,
    trigger: str = SyncTask.Trigger.MANUAL,
    scope: str = SyncTask.Scope.ALL,
    types=(),
    repositories=(),
    user=None,
    retry_of: SyncTask | None = None,
    enqueue: bool = True,
) -> SyncTask:
    """Create a queued SyncTask for `project` and enqueue it after the transaction commits.

    Raises SyncRefused (with the active task) when a sync of the project is already queued or
    running, or when the scope is invalid (no types, unknown types, no or foreign repositories).
    `enqueue=False` leaves it unqueued: `sync_images --wait` runs the task in its own process,
    and a queue entry would only be a no-op claim later."""
    if scope not in SyncTask.Scope.values:
        raise SyncRefused(f"Unknown synchronization scope {scope!r}.")
    if trigger not in SyncTask.Trigger.values:
        raise SyncRefused(f"Unknown trigger {trigger!r}.")
    chosen_types: list[str] = []
    chosen_repositories: list[Repository] = []
    if scope == SyncTask.Scope.TYPES:
        chosen_types = _validate_types(types)
    elif scope == SyncTask.Scope.REPOSITORIES:
        chosen_repositories = _validate_repositories(project, repositories)
    if not project.registries.exists():
        raise SyncRefused("This project has no registry connections yet; add a registry first.")
    _refuse_if_active(project)
    try:
        with transaction.atomic():
            task = SyncTask.objects.create(
                project=project,
                trigger=trigger,
                scope=scope,
                scope_types=chosen_types,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                retry_of=retry_of,
            )
            if chosen_repositories:
                task.scope_repositories.set(chosen_repositories)
            action = "sync.retry" if retry_of is not None else "sync.start"
            detail = f"{trigger} sync of {describe_scope(task)}"
            if retry_of is not None:
                detail += f", retrying the failed repositories of task #{retry_of.pk}"
            AuditEvent.record(action, actor=user, project=project, target=str(task), detail=detail)
    except IntegrityError:
        # Lost the race against another request: the partial unique constraint
        # "one active task per project" refused the row.
        _refuse_if_active(project)
        raise SyncRefused("A synchronization of this project is already in progress.") from None
    if enqueue:
        task_id = task.pk
        transaction.on_commit(lambda: enqueue_task(task_id))
    return task


create_task = request_sync  # the name the commands and tests use with enqueue=False


def enqueue_task(task_id: int) -> None:
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


def cancel_task(task: SyncTask, user=None) -> bool:
    """Ask an active task to stop (honoured between repositories). True if it was active.

    A queued task that no worker has claimed yet is cancelled at once."""
    if not task.request_cancel():
        return False
    if task.status == SyncTask.Status.CANCELLED:
        detail = "cancelled before it started"
    else:
        detail = "cancel requested while running"
    AuditEvent.record(
        "sync.cancel", actor=user, project=task.project, target=str(task), detail=detail
    )
    task.refresh_from_db()
    return True


def retry_failed(task: SyncTask, user=None) -> SyncTask:
    """A new manual task covering just the failed repositories of `task`.

    When a whole registry listing failed (a result without a repository), the retry repeats
    the task's original scope, since the repositories must be discovered again."""
    failed = task.results.filter(status=SyncTaskRepository.Status.FAILED)
    repository_ids = list(
        failed.filter(repository__isnull=False, repository__removed_at__isnull=True)
        .values_list("repository_id", flat=True)
        .distinct()
    )
    registry_level = failed.filter(repository__isnull=True).exists()
    if registry_level and task.scope != SyncTask.Scope.REPOSITORIES:
        return request_sync(
            task.project,
            scope=task.scope,
            types=task.scope_types,
            user=user,
            retry_of=task,
        )
    if not repository_ids:
        raise SyncRefused(f"Task #{task.pk} has no failed repositories to retry.")
    return request_sync(
        task.project,
        scope=SyncTask.Scope.REPOSITORIES,
        repositories=repository_ids,
        user=user,
        retry_of=task,
    )


# --- task state transitions (the transitions themselves are SyncTask methods) ---------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def claim_task(task_id: int) -> bool:
    """Move a queued task to running; True for the one caller that won the race."""
    return SyncTask(pk=task_id, status=SyncTask.Status.QUEUED).claim(worker_name())


def finish_task(task_id: int, status: str, code: str = "", reason: str = "") -> bool:
    """End a running task; False when it was no longer running (see SyncTask.finish)."""
    return SyncTask(pk=task_id, status=SyncTask.Status.RUNNING).finish(status, code, reason)


def beat(task_id: int) -> bool:
    """Write the heartbeat; False when the task is no longer running."""
    return SyncTask(pk=task_id, status=SyncTask.Status.RUNNING).beat()


# --- the known-digest map -------------------------------------------------------------------


class KnownDigests(Mapping):
    """digest -> DigestDetails for one registry, from the images already stored and those
    learned during this run. Stored as compact tuples: 100,000 digests stay a few dozen MB."""

    def __init__(self) -> None:
        self._data: dict[str, tuple] = {}
        self._platforms: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._strings: dict[str, str] = {}

    def add(self, digest, media_type, size, platforms, multi_arch, created) -> None:
        plat = tuple(platforms or ())
        plat = self._platforms.setdefault(plat, plat)
        media_type = self._strings.setdefault(media_type or "", media_type or "")
        self._data[digest] = (media_type, size, plat, bool(multi_arch), created)

    def __getitem__(self, digest: str) -> DigestDetails:
        return DigestDetails(*self._data[digest])

    def __contains__(self, digest: object) -> bool:
        return digest in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @classmethod
    def for_registry(cls, registry_id: int) -> KnownDigests:
        known = cls()
        rows = Image.objects.filter(repository__registry_id=registry_id).values_list(
            "digest", "media_type", "size", "platforms", "multi_arch", "image_created_at"
        )
        for row in rows.iterator(chunk_size=5000):
            known.add(*row)
        return known


# --- database access from worker threads ----------------------------------------------------

_sqlite_lock = threading.RLock()


@contextlib.contextmanager
def db_guard() -> Iterator[None]:
    """Serialize database work of the sync threads on SQLite (one writer at a time anyway, and
    the shared-cache test database raises instead of waiting); no-op on PostgreSQL."""
    if connection.vendor == "sqlite":
        with _sqlite_lock:
            yield
    else:
        yield


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    return value


_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


def latest_tag(images: Iterable[ImageInfo]) -> str | None:
    """The tag pushed most recently: newest registry update time, else newest created time,
    then the greatest tag name (so the choice is stable)."""
    best = None
    best_key = None
    for info in images:
        when = _aware(info.updated) or _aware(info.created) or _EPOCH
        key = (when, info.tag)
        if best_key is None or key > best_key:
            best, best_key = info.tag, key
    return best


# --- reconcile one repository ---------------------------------------------------------------


@dataclass
class Counts:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged


_EXISTING_FIELDS = (
    "id",
    "tag",
    "digest",
    "media_type",
    "size",
    "platforms",
    "multi_arch",
    "image_created_at",
    "registry_updated_at",
    "is_latest",
)
_UPDATE_FIELDS = [
    "digest",
    "media_type",
    "size",
    "platforms",
    "multi_arch",
    "image_created_at",
    "registry_updated_at",
    "is_latest",
    "last_synced_at",
]


def reconcile_repository(
    repository: Repository, images: Iterable[ImageInfo], now: datetime | None = None
) -> Counts:
    """Make the stored images of `repository` exactly the complete listing `images`.

    Call inside a transaction. A handful of queries whatever the size: one read, bulk inserts,
    bulk updates of the changed rows, one delete of vanished tags (chunked), one UPDATE that
    touches last_synced_at of every row, one UPDATE of the repository."""
    now = now or timezone.now()
    listing: dict[str, ImageInfo] = {}
    for info in images:
        listing[info.tag] = info
    newest = latest_tag(listing.values())
    existing = {
        row[1]: row
        for row in Image.objects.filter(repository=repository).values_list(*_EXISTING_FIELDS)
    }
    counts = Counts()
    to_create: list[Image] = []
    to_update: list[Image] = []
    for tag, info in listing.items():
        platforms = list(info.platforms or ())
        created, updated = _aware(info.created), _aware(info.updated)
        is_latest = tag == newest
        row = existing.get(tag)
        if row is None:
            to_create.append(
                Image(
                    project_id=repository.registry.project_id,
                    repository=repository,
                    tag=tag,
                    digest=info.digest,
                    media_type=info.media_type or "",
                    size=info.size,
                    platforms=platforms,
                    multi_arch=bool(info.multi_arch),
                    is_latest=is_latest,
                    image_created_at=created,
                    registry_updated_at=updated,
                    first_seen_at=now,
                    last_synced_at=now,
                )
            )
            counts.added += 1
            continue
        content_changed = (
            row[2] != info.digest
            or row[3] != (info.media_type or "")
            or row[4] != info.size
            or list(row[5] or []) != platforms
            or row[6] != bool(info.multi_arch)
            or row[7] != created
            or row[8] != updated
        )
        if content_changed or row[9] != is_latest:
            to_update.append(
                Image(
                    pk=row[0],
                    digest=info.digest,
                    media_type=info.media_type or "",
                    size=info.size,
                    platforms=platforms,
                    multi_arch=bool(info.multi_arch),
                    image_created_at=created,
                    registry_updated_at=updated,
                    is_latest=is_latest,
                    last_synced_at=now,
                )
            )
        if content_changed:
            counts.updated += 1
        else:
            counts.unchanged += 1
    vanished = [row[0] for tag, row in existing.items() if tag not in listing]
    counts.removed = len(vanished)

    for start in range(0, len(vanished), BATCH_SIZE):
        Image.objects.filter(pk__in=vanished[start : start + BATCH_SIZE]).delete()
    if to_update:
        Image.objects.bulk_update(to_update, _UPDATE_FIELDS, batch_size=BATCH_SIZE)
    if to_create:
        Image.objects.bulk_create(to_create, batch_size=BATCH_SIZE)
    if counts.unchanged:
        Image.objects.filter(repository=repository, last_synced_at__lt=now).update(
            last_synced_at=now
        )
    Repository.objects.filter(pk=repository.pk).update(
        image_count=len(listing), last_synced_at=now, removed_at=None
    )
    return counts


# --- running a task --------------------------------------------------------------------------


@dataclass
class Job:
    """One repository to sync within a task."""

    task: SyncTask  # shared by the worker threads: only its record_repository() is called
    result_id: int
    repository: Repository
    registry_id: int


@dataclass
class Outcome:
    """What happened to one repository (reported to the main thread)."""

    job: Job
    status: str
    counts: Counts = field(default_factory=Counts)
    code: str = ""
    message: str = ""


@dataclass
class RegistryRun:
    """One registry within a run: its client (shared by its repositories), the concurrency cap
    and the queue of repositories still to sync."""

    registry: Registry
    client: Any = None
    cap: int = 1
    pending: deque = field(default_factory=deque)
    in_flight: int = 0
    known: KnownDigests | None = None
    known_lock: threading.Lock = field(default_factory=threading.Lock)
    listed: bool = False  # its repository listing completed
    synced_any: bool = False
    pass_previous: bool = False  # its client's list_images takes previous= (tag -> digest)


ProgressCallback = Callable[[SyncTask, Outcome], None]


def run_task(task_id: int) -> None:
    """Claim and run one task to its end (called by the worker through imagesync.tasks)."""
    execute_task(task_id)


def execute_task(task_id: int, on_progress: ProgressCallback | None = None) -> SyncTask | None:
    """run_task with an optional callback after each repository (used by `sync_images
    --wait`). Returns the task as it ended, or None when another worker had claimed it."""
    # Claim before reading: the conditional UPDATE alone decides which worker runs it.
    with db_guard():
        claimed = SyncTask(pk=task_id, status=SyncTask.Status.QUEUED).claim(worker_name())
    if not claimed:
        logger.info("Sync task #%s was not queued any more; nothing to do.", task_id)
        return None
    task = SyncTask.objects.select_related("project").get(pk=task_id)
    runs: list[RegistryRun] = []
    try:
        _run(task, runs, on_progress)
    except Exception:
        logger.exception("Sync task #%s stopped on an unexpected error.", task_id)
        task.finish(
            SyncTask.Status.FAILED,
            INTERNAL_ERROR,
            "The synchronization stopped on an unexpected error; see the worker log.",
        )
        _skip_unfinished(task_id, INTERNAL_ERROR, "Not synchronized: the task stopped on an error.")
    finally:
        for run in runs:
            if run.client is not None:
                try:
                    run.client.close()
                except Exception:
                    logger.warning("Closing the client of registry %s failed.", run.registry.pk)
    task.refresh_from_db()
    refresh_statistics(task)
    return task


# A sync that changed at least this many images refreshes the planner statistics, so Image View
# filters keep using their indexes right after a large first sync (instead of waiting for
# autovacuum on PostgreSQL, or for ever on SQLite).
STATISTICS_THRESHOLD = 1000


def refresh_statistics(task: SyncTask) -> bool:
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


def missing_scheduled_grants(project) -> list[str]:
    """Policies a scheduled sync of `project` needs but has no active grant for."""
    needed = [
        AuthorizationGrant.Policy.SWR_OPERATE.value,
        AuthorizationGrant.Policy.CCE_OPERATE.value,
    ]
    granted = set(
        AuthorizationGrant.objects.active()
        .filter(project=project, policy__in=needed)
        .values_list("policy", flat=True)
    )
    return [policy for policy in needed if policy not in granted]


def has_swr_authorization(project) -> bool:
    return (
        AuthorizationGrant.objects.active()
        .filter(project=project, policy=AuthorizationGrant.Policy.SWR_AUTHORIZATION)
        .exists()
    )


def _run(task: SyncTask, runs: list[RegistryRun], on_progress: ProgressCallback | None) -> None:
    project: Project = task.project
    if task.trigger == SyncTask.Trigger.SCHEDULED:
        missing = missing_scheduled_grants(project)
        if missing:
            names = " and ".join(missing)
            task.finish(
                SyncTask.Status.FAILED,
                MISSING_AUTHORIZATION,
                f"The scheduled synchronization needs the {names} authorization"
                f"{'s' if len(missing) > 1 else ''}, not granted for project {project.name}. "
                "An administrator can grant "
                f"{'them' if len(missing) > 1 else 'it'} in the admin site.",
            )
            return

    jobs, failures, removed_images = _resolve_scope(task, runs)
    if not _still_running(task.pk):
        return  # the watchdog finished it while the registries were being listed
    _create_results(task, runs, jobs, failures, removed_images)
    if not _sync_jobs(task, runs, jobs, on_progress):
        return  # the watchdog finished it meanwhile
    _finish(task, runs)


# A failure recorded before any repository is synced: (registry, repository or None, type,
# path, code, message).
Failure = tuple[Registry, Repository | None, str, str, str, str]


def _wanted_types(task: SyncTask) -> tuple[str, ...]:
    if task.scope == SyncTask.Scope.TYPES:
        return tuple(t for t in ALL_TYPES if t in set(task.scope_types))
    return ALL_TYPES


def _build_client(registry: Registry, run: RegistryRun) -> None:
    run.client = registry.build_client()
    run.pass_previous = accepts_previous(getattr(run.client, "list_images", None))
    try:
        run.cap = max(1, int(run.client.max_concurrency))
    except (TypeError, ValueError, AttributeError):
        run.cap = 1


def _resolve_scope(
    task: SyncTask, runs: list[RegistryRun]
) -> tuple[list[tuple[RegistryRun, Repository]], list[Failure], int]:
    """The repositories to sync (with their registry run), failures known up front, and the
    number of images removed with vanished repositories."""
    project = task.project
    swr_ok = has_swr_authorization(project)
    swr_message = (
        "SWR repositories need the project's SWR authorization, which is not granted; "
        "an administrator can grant it in the admin site."
    )
    failures: list[Failure] = []
    jobs: list[tuple[RegistryRun, Repository]] = []
    removed_images = 0

    if task.scope == SyncTask.Scope.REPOSITORIES:
        by_registry: dict[int, RegistryRun | RegistryError] = {}
        chosen = task.scope_repositories.select_related("registry").order_by("registry_id", "path")
        for repo in chosen:
            if repo.type in SWR_TYPE_VALUES and not swr_ok:
                failures.append(
                    (repo.registry, repo, repo.type, repo.path, SWR_NOT_AUTHORIZED, swr_message)
                )
                continue
            run = by_registry.get(repo.registry_id)
            if run is None:
                run = RegistryRun(registry=repo.registry)
                try:
                    _build_client(repo.registry, run)
                    runs.append(run)
                except RegistryError as exc:
                    run = exc
                by_registry[repo.registry_id] = run
            if isinstance(run, RegistryError):
                failures.append((repo.registry, repo, repo.type, repo.path, run.code, run.message))
                continue
            jobs.append((run, repo))
        return jobs, failures, removed_images

    wanted = _wanted_types(task)
    registries = list(project.registries.all().order_by("name"))
    to_list: list[tuple[RegistryRun, tuple[str, ...]]] = []
    for registry in registries:
        types = tuple(t for t in KIND_TYPES.get(registry.kind, ()) if t in wanted)
        if not types:
            continue
        if registry.kind == Registry.Kind.SWR and not swr_ok:
            failures.extend(_registry_failures(registry, types, SWR_NOT_AUTHORIZED, swr_message))
            continue
        run = RegistryRun(registry=registry)
        runs.append(run)
        try:
            _build_client(registry, run)
        except RegistryError as exc:
            failures.extend(_registry_failures(registry, types, exc.code, exc.message))
            continue
        to_list.append((run, types))

    listings = _list_registries(task.pk, to_list)
    for run, types in to_list:
        outcome = listings[run.registry.pk]
        if isinstance(outcome, RegistryError):
            failures.extend(
                _registry_failures(
                    run.registry,
                    types,
                    outcome.code,
                    f"Listing the repositories failed: {outcome.message}",
                )
            )
            continue
        with db_guard(), transaction.atomic():
            repos, removed = apply_repository_listing(run.registry, types, outcome)
        run.listed = True
        removed_images += removed
        for repo in repos:
            repo.registry = run.registry
            jobs.append((run, repo))
    return jobs, failures, removed_images


def _registry_failures(
    registry: Registry, types: tuple[str, ...], code: str, message: str
) -> list[Failure]:
    """One failure per known repository of the registry in scope (their images stay as they
    are), or one registry-level failure when none is known yet."""
    repos = list(
        Repository.objects.filter(
            registry=registry, type__in=types, removed_at__isnull=True
        ).order_by("path")
    )
    if not repos:
        return [(registry, None, types[0], REGISTRY_LISTING_PATH, code, message)]
    return [(registry, repo, repo.type, repo.path, code, message) for repo in repos]


def _list_registries(
    task_id: int, to_list: list[tuple[RegistryRun, tuple[str, ...]]]
) -> dict[int, list[RepositoryInfo] | RegistryError]:
    """List the repositories of every registry in parallel (HTTP only, no database access in
    the threads), keeping the heartbeat going meanwhile."""
    results: dict[int, list[RepositoryInfo] | RegistryError] = {}
    if not to_list:
        return results

    def list_one(run: RegistryRun, types: tuple[str, ...]):
        try:
            return list(run.client.list_repositories(list(types)))
        except RegistryError as exc:
            return exc
        except Exception:
            logger.exception("Listing the repositories of registry %s failed.", run.registry.pk)
            return RegistryError("bad_response", "The registry client failed unexpectedly.")

    interval = settings.SYNC_HEARTBEAT_INTERVAL
    with ThreadPoolExecutor(max_workers=min(len(to_list), settings.SYNC_WORKERS)) as pool:
        futures = {pool.submit(list_one, run, types): run for run, types in to_list}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=interval, return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future].registry.pk] = future.result()
            with db_guard():
                beat(task_id)
    return results


def apply_repository_listing(
    registry: Registry, types: Iterable[str], infos: Iterable[RepositoryInfo]
) -> tuple[list[Repository], int]:
    """Bring the Repository rows of `registry` (for `types`) in line with a COMPLETE listing:
    add new ones, un-remove returning ones, mark vanished ones removed and delete their images.
    Returns the present repositories and the number of images removed."""
    types = tuple(types)
    now = timezone.now()
    existing = {(r.type, r.path): r for r in Repository.objects.filter(registry=registry)}
    seen: dict[tuple[str, str], RepositoryInfo] = {}
    for info in infos:
        if info.type in types:
            seen.setdefault((info.type, info.path), info)
    new: list[Repository] = []
    changed: list[Repository] = []
    for key, info in seen.items():
        namespace, name = info.namespace, info.name or info.path
        extra = dict(info.extra or {})
        repo = existing.get(key)
        if repo is None:
            new.append(
                Repository(
                    registry=registry,
                    type=info.type,
                    path=info.path,
                    namespace=namespace,
                    name=name,
                    extra=extra,
                    first_seen_at=now,
                )
            )
        elif (repo.removed_at, repo.namespace, repo.name, repo.extra) != (
            None,
            namespace,
            name,
            extra,
        ):
            repo.removed_at, repo.namespace, repo.name, repo.extra = None, namespace, name, extra
            changed.append(repo)
    if new:
        Repository.objects.bulk_create(new, batch_size=BATCH_SIZE)
    if changed:
        Repository.objects.bulk_update(
            changed, ["removed_at", "namespace", "name", "extra"], batch_size=BATCH_SIZE
        )
    vanished = [
        repo.pk
        for key, repo in existing.items()
        if repo.type in types and repo.removed_at is None and key not in seen
    ]
    removed_images = 0
    for start in range(0, len(vanished), BATCH_SIZE):
        chunk = vanished[start : start + BATCH_SIZE]
        removed_images += Image.objects.filter(repository_id__in=chunk).delete()[0]
        Repository.objects.filter(pk__in=chunk).update(removed_at=now, image_count=0)
    present = [
        repo
        for repo in Repository.objects.filter(
            registry=registry, type__in=types, removed_at__isnull=True
        ).order_by("path")
        if (repo.type, repo.path) in seen
    ]
    return present, removed_images


def _create_results(
    task: SyncTask,
    runs: list[RegistryRun],
    jobs: list[tuple[RegistryRun, Repository]],
    failures: list[Failure],
    removed_images: int,
) -> None:
    now = timezone.now()
    rows = [
        SyncTaskRepository(
            task=task,
            repository=repo,
            registry_name=registry.name,
            repository_type=type_,
            repository_path=path,
            status=SyncTaskRepository.Status.FAILED,
            reason_code=code[:32],
            reason_message=message,
            started_at=now,
            finished_at=now,
        )
        for registry, repo, type_, path, code, message in failures
    ]
    rows += [
        SyncTaskRepository(
            task=task,
            repository=repo,
            registry_name=run.registry.name,
            repository_type=repo.type,
            repository_path=repo.path,
        )
        for run, repo in jobs
    ]
    with db_guard(), transaction.atomic():
        SyncTaskRepository.objects.bulk_create(rows, batch_size=BATCH_SIZE)
        result_ids = dict(
            SyncTaskRepository.objects.filter(task=task, repository__isnull=False).values_list(
                "repository_id", "id"
            )
        )
        SyncTask.objects.filter(pk=task.pk).update(
            repositories_total=len(rows),
            repositories_done=len(failures),
            repositories_failed=len(failures),
            images_removed=F("images_removed") + removed_images,
            heartbeat_at=now,
        )
    for run, repo in jobs:
        run.pending.append(Job(task, result_ids[repo.pk], repo, run.registry.pk))


def _sync_one(job: Job, run: RegistryRun) -> Outcome:
    """List and reconcile one repository (runs in a worker thread)."""
    repo = job.repository
    try:
        with db_guard():
            SyncTaskRepository.objects.filter(pk=job.result_id).update(
                status=SyncTaskRepository.Status.RUNNING, started_at=timezone.now()
            )
            if run.known is None:
                with run.known_lock:
                    if run.known is None:
                        run.known = KnownDigests.for_registry(run.registry.pk)
        info = RepositoryInfo(
            type=repo.type,
            path=repo.path,
            namespace=repo.namespace,
            name=repo.name,
            extra=dict(repo.extra or {}),
        )
        try:
            if run.pass_previous:
                images = list(run.client.list_images(info, run.known, previous=_stored_tags(repo)))
            else:
                images = list(run.client.list_images(info, run.known))
        except RegistryError as exc:
            return _record_failure(job, exc.code, exc.message)
        except Exception:
            logger.exception("Listing images of %s failed unexpectedly.", repo.path)
            return _record_failure(
                job, INTERNAL_ERROR, "The registry client failed unexpectedly; see the worker log."
            )
        with run.known_lock:
            for image in images:
                if image.digest and image.digest not in run.known:
                    run.known.add(
                        image.digest,
                        image.media_type,
                        image.size,
                        image.platforms,
                        image.multi_arch,
                        image.created,
                    )
        try:
            with db_guard(), transaction.atomic():
                _commit_without_waiting_for_disk()
                counts = reconcile_repository(repo, images)
                _record_success(job, counts)
        except Exception:
            logger.exception("Storing the images of %s failed.", repo.path)
            return _record_failure(
                job,
                INTERNAL_ERROR,
                "The images could not be stored; the previous inventory was kept.",
            )
        return Outcome(job, SyncTaskRepository.Status.FINISHED, counts)
    except Exception:  # never let a worker thread die silently
        logger.exception("Synchronizing %s failed unexpectedly.", repo.path)
        message = "The synchronization of this repository failed unexpectedly; see the log."
        try:
            return _record_failure(job, INTERNAL_ERROR, message)
        except Exception:
            logger.exception("Recording the failure of %s failed too.", repo.path)
            return Outcome(job, SyncTaskRepository.Status.FAILED, code=INTERNAL_ERROR)


def _commit_without_waiting_for_disk() -> None:
    """On PostgreSQL, let this transaction's COMMIT return before its WAL reaches the disk.

    Every repository's transaction ends by adding to the counters of the one task row, so the
    worker threads queue on that row lock, each holding it through a disk flush (bench_sync,
    1,000 repositories: the database writes added 19 s to a 42 s listing; 4 s without it). A crash of the database server
    can lose the last fraction of a second of commits, never half of one: the inventory stays
    consistent, and the task is interrupted by such a crash anyway (a re-sync restores it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _stored_tags(repository: Repository) -> dict[str, str]:
    """tag -> digest of the images stored for `repository` (what the last sync found)."""
    if not repository.image_count:  # a new repository (or an empty one): nothing to read
        return {}
    with db_guard():
        return dict(
            Image.objects.filter(repository=repository).values_list("tag", "digest").iterator()
        )


def _record_success(job: Job, counts: Counts) -> None:
    job.task.record_repository(
        job.result_id,
        added=counts.added,
        updated=counts.updated,
        removed=counts.removed,
        unchanged=counts.unchanged,
    )


def _record_failure(job: Job, code: str, message: str) -> Outcome:
    with db_guard(), transaction.atomic():
        job.task.record_repository(job.result_id, failed=True, code=code, message=message)
    return Outcome(job, SyncTaskRepository.Status.FAILED, code=code, message=message)


def _worker_loop(work: queue.Queue, done: queue.Queue) -> None:
    try:
        while True:
            item = work.get()
            if item is None:
                return
            job, run = item
            done.put(_sync_one(job, run))
    finally:
        connection.close()  # each thread has its own connection: do not leak it


def _sync_jobs(
    task: SyncTask,
    runs: list[RegistryRun],
    jobs: list[tuple[RegistryRun, Repository]],
    on_progress: ProgressCallback | None,
) -> bool:
    """Hand repositories to the worker threads within the per-registry caps; heartbeat and
    honour cancel between repositories. False when the task stopped being ours (interrupted)."""
    active_runs = [run for run in runs if run.pending]
    total_jobs = sum(len(run.pending) for run in active_runs)
    if not total_jobs:
        return _still_running(task.pk)
    workers = max(1, min(settings.SYNC_WORKERS, total_jobs))
    interval = settings.SYNC_HEARTBEAT_INTERVAL
    work: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(
            target=_worker_loop, args=(work, done), name=f"sync-{task.pk}-{i}", daemon=True
        )
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    in_flight = 0
    stopping = False
    lost = False
    last_beat = time.monotonic()
    try:
        while True:
            if not stopping:
                in_flight += _hand_out(active_runs, work, workers - in_flight)
            if in_flight == 0:
                break
            try:
                outcome = done.get(timeout=max(0.05, interval - (time.monotonic() - last_beat)))
            except queue.Empty:
                outcome = None
            if outcome is not None:
                in_flight -= 1
                run = next(r for r in active_runs if r.registry.pk == outcome.job.registry_id)
                run.in_flight -= 1
                if outcome.status == SyncTaskRepository.Status.FINISHED:
                    run.synced_any = True
                if on_progress is not None:
                    with db_guard():
                        task.refresh_from_db()
                    on_progress(task, outcome)
            if time.monotonic() - last_beat >= interval:
                with db_guard():
                    alive = task.beat()
                last_beat = time.monotonic()
                if not alive:
                    stopping = lost = True
            if not stopping and outcome is not None:
                with db_guard():
                    row = (
                        SyncTask.objects.filter(pk=task.pk)
                        .values_list("status", "cancel_requested")
                        .first()
                    )
                if row is None or row[0] != SyncTask.Status.RUNNING:
                    stopping = lost = True
                elif row[1]:
                    stopping = True
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
    if lost:
        return False
    return True


def _hand_out(runs: list[RegistryRun], work: queue.Queue, free: int) -> int:
    """Queue up to `free` jobs, round robin over registries, within each registry's cap."""
    handed = 0
    progress = True
    while free > 0 and progress:
        progress = False
        for run in runs:
            if free <= 0:
                break
            if run.pending and run.in_flight < run.cap:
                job = run.pending.popleft()
                run.in_flight += 1
                work.put((job, run))
                handed += 1
                free -= 1
                progress = True
    return handed


def _still_running(task_id: int) -> bool:
    with db_guard():
        return SyncTask.objects.filter(pk=task_id, status=SyncTask.Status.RUNNING).exists()


def _skip_unfinished(task_id: int, code: str, message: str) -> int:
    return SyncTaskRepository.objects.filter(
        task_id=task_id,
        status__in=[SyncTaskRepository.Status.PENDING, SyncTaskRepository.Status.RUNNING],
    ).update(
        status=SyncTaskRepository.Status.SKIPPED,
        reason_code=code,
        reason_message=message,
        finished_at=timezone.now(),
    )


def _finish(task: SyncTask, runs: list[RegistryRun]) -> None:
    """Set the final status from the results, unless the task is no longer ours."""
    with db_guard():
        task.refresh_from_db()
        if task.cancel_requested:
            skipped = _skip_unfinished(
                task.pk,
                CANCELLED,
                "Not synchronized: the task was cancelled before this repository.",
            )
        else:  # only after an unexpected error in a worker thread
            skipped = _skip_unfinished(
                task.pk, INTERNAL_ERROR, "Not synchronized: the task stopped on an error."
            )
        now = timezone.now()
        synced_registries = [run.registry.pk for run in runs if run.listed or run.synced_any]
        if synced_registries:
            Registry.objects.filter(pk__in=synced_registries).update(last_synced_at=now)
        # Leftovers without a cancel only come from an unexpected worker error: they count as
        # failed, so such a task never reads "succeeded".
        failed = task.repositories_failed + (0 if task.cancel_requested else skipped)
        total = task.repositories_total
        first = (
            SyncTaskRepository.objects.filter(task=task, status=SyncTaskRepository.Status.FAILED)
            .order_by("id")
            .values_list("registry_name", "repository_path", "reason_code", "reason_message")
            .first()
        )
        codes = set(
            SyncTaskRepository.objects.filter(
                task=task, status=SyncTaskRepository.Status.FAILED
            ).values_list("reason_code", flat=True)
        )
        code = codes.pop() if len(codes) == 1 else ("several_errors" if codes else "")
        detail = ""
        if first is not None:
            registry_name, path, _code, message = first
            where = f"{registry_name}/{path}" if registry_name else path
            detail = f"{where}: {message}"
            if failed > 1:
                detail += f" (and {failed - 1} more)"
        if skipped and task.cancel_requested:
            status = SyncTask.Status.CANCELLED
            reason = (
                f"Cancelled on request after {task.repositories_done} of {total} repositories; "
                f"{skipped} were not synchronized."
            )
            if failed:
                reason += f" {failed} failed before that: {detail}"
            task.finish(status, CANCELLED, reason)
        elif failed and failed >= total:
            task.finish(
                SyncTask.Status.FAILED,
                code,
                f"None of the {total} repositories could be synchronized. {detail}",
            )
        elif failed:
            task.finish(
                SyncTask.Status.PARTIALLY_SUCCEEDED,
                code,
                f"{failed} of {total} repositories failed and kept their previous inventory. "
                f"{detail}",
            )
        else:
            task.finish(SyncTask.Status.SUCCEEDED)


# --- watchdog and the scheduled sync ----------------------------------------------------------


def watchdog(now: datetime | None = None) -> dict[str, int]:
    """Finish running tasks whose heartbeat stopped as interrupted, and look after queued
    tasks whose queue entry was lost.

    Queued tasks: after 5 x SYNC_HEARTBEAT_TIMEOUT unclaimed, the task is enqueued again once
    (a duplicate entry is harmless: the claim is conditional) and `requeued_at` notes it. If it is
    still unclaimed after another 5 x SYNC_HEARTBEAT_TIMEOUT while no sync task runs at all --
    the workers are idle, since this watchdog itself runs on one -- it is finished as
    interrupted so that the project can be synchronized again."""
    now = now or timezone.now()
    timeout = settings.SYNC_HEARTBEAT_TIMEOUT
    cutoff = now - timedelta(seconds=timeout)
    interrupted = 0
    stale = SyncTask.objects.filter(status=SyncTask.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True)
    )
    for task in stale.only("pk", "heartbeat_at", "started_at", "created_at"):
        last = task.heartbeat_at or task.started_at or task.created_at
        silent = int((now - last).total_seconds())
        changed = task.interrupt(
            INTERRUPTED,
            f"The worker stopped responding (no heartbeat for {silent} s); "
            "the task was interrupted.",
            now,
        )
        if changed:
            interrupted += 1
            _skip_unfinished(
                task.pk, INTERRUPTED, "Not synchronized: the worker stopped responding."
            )
            logger.warning("Sync task #%s interrupted: no heartbeat for %s s.", task.pk, silent)

    grace = timedelta(seconds=timeout * 5)
    requeued = abandoned = 0
    for task in SyncTask.objects.filter(
        status=SyncTask.Status.QUEUED, created_at__lt=now - grace, requeued_at__isnull=True
    ):
        if task.mark_requeued(now):
            requeued += 1
            enqueue_task(task.pk)
    if not SyncTask.objects.filter(status=SyncTask.Status.RUNNING).exists():
        for task in SyncTask.objects.filter(
            status=SyncTask.Status.QUEUED,
            created_at__lt=now - 2 * grace,
            requeued_at__isnull=False,
        ):
            minutes = int((now - task.created_at).total_seconds() // 60)
            abandoned += task.abandon(
                NEVER_STARTED,
                f"No worker picked the task up in {minutes} minutes, even after it was "
                "queued again; the task was interrupted. Start it again.",
                now,
            )
    return {"interrupted": interrupted, "requeued": requeued, "abandoned": abandoned}


def scheduled_sync() -> dict[str, int]:
    """The daily scheduled sync: one task per project that has a registry. A project whose
    sync is already active gets a skipped task saying so; the grants are checked by run_task,
    so a missing grant is recorded on the task row with the policies named."""
    started = skipped = 0
    for project in Project.objects.filter(registries__isnull=False).distinct().order_by("name"):
        try:
            request_sync(project, trigger=SyncTask.Trigger.SCHEDULED)
            started += 1
        except SyncRefused as refusal:
            now = timezone.now()
            SyncTask.objects.create(
                project=project,
                trigger=SyncTask.Trigger.SCHEDULED,
                status=SyncTask.Status.SKIPPED,
                failure_code=ALREADY_RUNNING if refusal.active_task else "refused",
                failure_reason=f"Scheduled run skipped. {refusal.message}",
                created_at=now,
                finished_at=now,
            )
            skipped += 1
    return {"started": started, "skipped": skipped}
