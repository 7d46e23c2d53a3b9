"""One registry within a run, and one repository to synchronize."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from imagesync import bulk, reasons
from imagesync.models import (
    ReconcileCounts,
    RecordedState,
    Registry,
    Repository,
    SyncTask,
    SyncTaskRepository,
)
from imagesync.registries.base import ImageInfo, Listing, RegistryError, sizing_listings
from imagesync.sync.budget import listing_budget
from imagesync.sync.known import KnownDigests
from imagesync.sync.limits import shared_limits
from imagesync.sync.pool import db_guard

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One repository to sync within a task."""

    task: SyncTask  # shared by the worker threads: only its record_repository() is called
    result_id: int
    repository: Repository
    registry_id: int


@dataclass
class Outcome:
    """What happened to one repository (reported to the run's main thread)."""

    job: Job
    status: str
    counts: ReconcileCounts = field(default_factory=ReconcileCounts)
    code: str = ""
    message: str = ""
    # The task's row as the result's statement left it (SyncTask.record_repository), if known.
    state: RecordedState | None = None

    @property
    def finished(self) -> bool:
        return self.status == SyncTaskRepository.Status.FINISHED


@dataclass
class RegistryRun:
    """One registry within a run: its client (shared by its repositories), the concurrency cap,
    the digests it already knows and the queue of repositories still to sync."""

    registry: Registry
    client: Any = None
    cap: int = 1
    pending: deque = field(default_factory=deque)
    in_flight: int = 0
    known: KnownDigests | None = None
    known_lock: threading.Lock = field(default_factory=threading.Lock)
    listed: bool = False  # its repository listing completed
    synced_any: bool = False

    def open(self) -> None:
        """Build the client; raises RegistryError for a configuration it cannot use. Its
        concurrency cap and requests-per-second limit are shared with every other worker
        process syncing this registry."""
        self.client = self.registry.build_client()
        try:
            self.cap = max(1, int(self.client.max_concurrency))
        except (TypeError, ValueError, AttributeError):
            self.cap = 1
        transport = getattr(self.client, "transport", None)
        if transport is not None and hasattr(transport, "share_limits"):
            rps = (self.registry.options or {}).get("requests_per_second")
            try:
                rps = float(rps) if rps else None
            except (TypeError, ValueError):
                rps = None
            transport.share_limits(*shared_limits(self.registry.pk, self.cap, rps))

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.close()
        except Exception:
            logger.warning("Closing the client of registry %s failed.", self.registry.pk)

    def sync(self, job: Job) -> Outcome:
        """List and reconcile one repository (runs in a worker thread). A failed listing keeps
        the repository's images untouched and records the client's reason code."""
        repo = job.repository
        try:
            # The listing, the stored tags and rows are held from here to the result: within
            # this process's listing budget (imagesync.sync.budget), which the client raises
            # to the real size when it learns it.
            with listing_budget().hold(repo.image_count) as held, sizing_listings(held.grow):
                started = timezone.now()
                with db_guard():
                    previous = repo.stored_tags(before=[self._start(job)])
                try:
                    images = self._list(repo, previous)
                except RegistryError as exc:
                    return self._fail(job, exc.code, exc.message)
                except Exception:
                    logger.exception("Listing images of %s failed unexpectedly.", repo.path)
                    message = "The registry client failed unexpectedly; see the worker log."
                    return self._fail(job, reasons.INTERNAL_ERROR, message)
                del previous  # not held while storing, which reads the stored rows again
                return self._store(job, images, started)
        except Exception:  # never let a worker thread die silently
            logger.exception("Synchronizing %s failed unexpectedly.", repo.path)
            message = "The synchronization of this repository failed unexpectedly; see the log."
            try:
                return self._fail(job, reasons.INTERNAL_ERROR, message)
            except Exception:
                logger.exception("Recording the failure of %s failed too.", repo.path)
                return Outcome(job, SyncTaskRepository.Status.FAILED, code=reasons.INTERNAL_ERROR)

    def _start(self, job: Job) -> tuple[str, list]:
        """The statement that marks the repository's result running (run with the read of its
        stored tags: one round trip on PostgreSQL)."""
        with db_guard(), self.known_lock:
            if self.known is None:
                self.known = KnownDigests.for_registry(self.registry.pk)
        return bulk.update_statement(
            SyncTaskRepository,
            "id = %s AND status = %s",
            [job.result_id, SyncTaskRepository.Status.PENDING],
            values={"status": SyncTaskRepository.Status.RUNNING, "started_at": timezone.now()},
        )

    def _list(self, repo: Repository, previous: dict[str, str]) -> list[ImageInfo]:
        images = self.client.list_images(repo.as_info(), self.known, previous=previous)
        if not isinstance(images, Listing):  # keeps untagged images and the usage note
            images = Listing(images)
        with self.known_lock:
            self.known.learn(images)
        return images

    def _store(self, job: Job, images: list[ImageInfo], started=None) -> Outcome:
        """Reconcile a listing that started at `started`, unless a newer listing of the
        repository was stored meanwhile (a full sync and an event refresh listed it at once:
        Repository.take_listing), in which case the newer inventory stays and this repository
        counts as finished with no change."""
        try:
            with db_guard(), transaction.atomic():
                taken, stored = _claim(job, started)
                if taken is None:
                    return _recorded_elsewhere(job)
                now = timezone.now()
                if not taken:
                    logger.info("%s: a newer listing was stored meanwhile.", job.repository.path)
                    state = job.task.record_repository(job.result_id, at=now)
                    return Outcome(job, SyncTaskRepository.Status.FINISHED, state=state)
                # The reconcile's last writes go with the result's, and the COMMIT with them:
                # one round trip on PostgreSQL, the last of the transaction.
                deferred = []
                counts = job.repository.reconcile(
                    images, now, task=job.task, deferred=deferred, stored=stored
                )
                _record_usage_note(job, images)
                state = job.task.record_repository(
                    job.result_id,
                    before=deferred,
                    commit=True,
                    added=counts.added,
                    updated=counts.updated,
                    removed=counts.removed,
                    unchanged=counts.unchanged,
                    at=now,
                )
        except Exception:
            logger.exception("Storing the images of %s failed.", job.repository.path)
            message = "The images could not be stored; the previous inventory was kept."
            return self._fail(job, reasons.INTERNAL_ERROR, message)
        return Outcome(job, SyncTaskRepository.Status.FINISHED, counts, state=state)

    @staticmethod
    def _fail(job: Job, code: str, message: str) -> Outcome:
        with db_guard(), transaction.atomic():
            if not _still_unfinished(job.result_id):
                return _recorded_elsewhere(job)
            job.task.record_repository(job.result_id, failed=True, code=code, message=message)
        return Outcome(job, SyncTaskRepository.Status.FAILED, code=code, message=message)


def _record_usage_note(job: Job, images: list[ImageInfo]) -> None:
    """A listing whose pull data could not be read (no permission for the statistics, an
    older API) still synchronized the inventory; say on the repository's result and on the
    connection which data is missing and why. A listing that read pull data clears the
    connection's note."""
    missing = getattr(images, "usage_missing", None)
    registry = job.repository.registry
    if missing:
        code, message = missing
        text = f"Synchronized without pull data: {message}"[:512]
        SyncTaskRepository.objects.filter(pk=job.result_id).update(
            reason_code=reasons.USAGE_UNAVAILABLE, reason_message=text
        )
        Registry.objects.filter(pk=registry.pk).update(
            usage_missing_code=code or reasons.USAGE_UNAVAILABLE, usage_missing_message=text
        )
    elif any(info.pull_source for info in images):
        Registry.objects.filter(pk=registry.pk).exclude(usage_missing_code="").update(
            usage_missing_code="", usage_missing_message=""
        )


def _claim(job: Job, started) -> tuple[bool | None, list | None]:
    """In the transaction that stores a listing of `job`'s repository that started at
    `started` (None: not known), lock the repository's result and take the listing
    (`_still_unfinished`, `Repository.take_listing`), letting the COMMIT return without
    waiting for the disk, and read the repository's stored images (`Repository.reconcile`'s
    `stored`; None when not read). First: None when the result was recorded elsewhere, else
    whether the listing may be stored. On PostgreSQL, one round trip for the three statements
    (`bulk.run_together`): the result's row is locked first, then the repository's, and the
    images are read once the repository's row is locked (each statement of the text sees what
    was committed before it started)."""
    if started is None:
        claimed = _still_unfinished(job.result_id, commit_without_waiting=True)
        return (True if claimed else None), None
    claim = _claim_statement(job.result_id, commit_without_waiting=True)
    # Taken only when the result was claimed: its row is locked by now, so its status holds.
    table = connection.ops.quote_name(SyncTaskRepository._meta.db_table)
    take = job.repository.listing_statement(
        started, f"EXISTS (SELECT 1 FROM {table} WHERE id = %s AND status IN (%s, %s))", claim[1]
    )
    read = job.repository.stored_rows_statement()
    claimed, changed, stored = bulk.run_together([claim, take, read])
    if not claimed:
        return None, None
    return job.repository.listing_taken(bool(changed)), stored


def _claim_statement(result_id: int, commit_without_waiting: bool) -> tuple[str, list]:
    table = connection.ops.quote_name(SyncTaskRepository._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    what = "1"
    if commit_without_waiting and connection.vendor == "postgresql":
        # Evaluated for the row found only, as SET LOCAL after the check would be.
        what = "set_config('synchronous_commit', 'off', true)"
    return (
        f"SELECT {what} FROM {table} WHERE id = %s AND status IN (%s, %s){lock}",
        [result_id, SyncTaskRepository.Status.PENDING, SyncTaskRepository.Status.RUNNING],
    )


def _still_unfinished(result_id: int, commit_without_waiting: bool = False) -> bool:
    """Whether the repository's result is still to be recorded, locking its row until the
    transaction ends: a job re-queued while its first worker was only slow may see both
    workers reach the same repository, and only the first may count it.

    `commit_without_waiting`: when it is, the same statement does what
    `_commit_without_waiting_for_disk` does (on PostgreSQL: one round trip less for every
    repository)."""
    with connection.cursor() as cursor:
        cursor.execute(*_claim_statement(result_id, commit_without_waiting))
        return cursor.fetchone() is not None


def _recorded_elsewhere(job: Job) -> Outcome:
    logger.info("%s was already recorded by another worker.", job.repository.path)
    status = SyncTaskRepository.objects.filter(pk=job.result_id).values_list("status", flat=True)
    return Outcome(job, status.first() or SyncTaskRepository.Status.SKIPPED)


def _commit_without_waiting_for_disk() -> None:
    """On PostgreSQL, let this transaction's COMMIT return before its WAL reaches the disk.

    Every repository's transaction ends by adding to the counters of the one task row, so the
    worker threads queue on that row lock, each holding it through a disk flush (bench_sync,
    1,000 repositories: the database writes added 19 s to a 42 s listing; 4 s without it). A
    crash of the database server can lose the last fraction of a second of commits, never half
    of one: the inventory stays consistent, and the task is interrupted by such a crash anyway
    (a re-sync restores it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
