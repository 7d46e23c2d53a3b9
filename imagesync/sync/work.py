"""One worker process's part in one running sync task.

Every process that takes part in a task -- the one that claimed and planned it, and any
`qcluster` worker that picked up one of its jobs from the queue -- runs a `Participation`: it
claims queued jobs while it has idle threads, syncs their repositories with its worker threads
(at most the registry's `max_concurrency` at a time, a cap that the shared limits also hold
across processes), writes the task's and its jobs' heartbeats, re-queues a job whose worker
stopped beating and takes it itself, and stays until every job of the task is done. Whoever
sees the last job done concludes the task (the conditional finish lets only one win).

So a task runs to its end with one process (the embedded default, `sync_images --wait`, the
tests) as with many; if every process working on it dies, its heartbeat stops and the watchdog
finishes it as interrupted, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from imagesync import bulk, reasons
from imagesync.models import (
    RecordedState,
    Registry,
    Repository,
    SyncJob,
    SyncTask,
    SyncTaskRepository,
)
from imagesync.registries.base import RegistryError, RepositoryInfo
from imagesync.sync.jobs import Job, Outcome, RegistryRun
from imagesync.sync.plan import add_results, registry_failures
from imagesync.sync.pool import WorkerPool, db_guard

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.3  # how often an idle participant looks for queued or stale jobs
Announce = Callable[[list[int]], None]  # hands new job ids to the queue (imagesync.tasks)
ProgressCallback = Callable[[SyncTask, Outcome], None]


@dataclass
class ActiveJob:
    """A job this process claimed: its registry and the repositories still to hand out."""

    job: SyncJob
    run: RegistryRun | None = None
    pending: deque = field(default_factory=deque)
    in_flight: int = 0
    synced_any: bool = False


class Participation:
    """This process's work on one running task, until all its jobs are done (see the module
    docstring). `run()` returns False when the task stopped being running meanwhile."""

    def __init__(
        self,
        task: SyncTask,
        worker: str,
        on_progress: ProgressCallback | None = None,
        announce: Announce | None = None,
    ) -> None:
        self.task = task
        self.worker = worker
        self.on_progress = on_progress
        self.announce = announce or (lambda ids: None)
        self.runs: dict[int, RegistryRun | RegistryError] = {}
        self.active: dict[int, ActiveJob] = {}
        self.in_flight = 0
        self.stopping = False  # cancel requested: no new repositories
        self.lost = False  # the task is not running any more
        self.last_beat = time.monotonic()
        self.pool: WorkerPool | None = None
        # Guards the pending queues and the in-flight counts: a worker thread that finished a
        # repository takes the next one of its registry itself (see `_handle`), without a
        # round trip through this process's main thread.
        self.lock = threading.Lock()
        self.halt = False  # a worker saw the task cancelled or ended: start no repository

    def run(self, first: SyncJob | None = None) -> bool:
        try:
            with WorkerPool(settings.SYNC_WORKERS, f"sync-{self.task.pk}", self._handle) as pool:
                self.pool = pool
                if first is not None:
                    self._activate(first)
                self._loop()
        finally:
            for run in self.runs.values():
                if isinstance(run, RegistryRun):
                    run.close()
        if self.lost:
            return False
        self._conclude_if_done()
        return True

    def _loop(self) -> None:
        interval = settings.SYNC_HEARTBEAT_INTERVAL
        while not self.lost:
            self._fill()
            if self.in_flight == 0:
                if self._all_done():
                    return
                time.sleep(IDLE_POLL_SECONDS)
                self._look_after_others()
            else:
                wait = max(0.05, interval - (time.monotonic() - self.last_beat))
                item = self.pool.result(wait)
                if item is not None:
                    # Count every result in, hand out the next repositories, and only then
                    # do the bookkeeping that waits on the database (progress, job ends).
                    items = [item, *self.pool.ready()]
                    ended = [self._collect(*each) for each in items]
                    self._fill()
                    for each, job_ended in zip(items, ended, strict=True):
                        self._report(each, job_ended)
            if time.monotonic() - self.last_beat >= interval:
                self._beat()

    # --- claiming and handing out -----------------------------------------------------------

    def _fill(self) -> None:
        """Hand out repositories; claim another job while threads would stay idle."""
        while not self.lost:
            self._hand_out()
            if self.in_flight >= self.pool.size:
                return
            job = self._claim_next()
            if job is None:
                return
            self._activate(job)

    def _claim_next(self) -> SyncJob | None:
        # Registries whose repositories here already wait for a free slot: more of their
        # jobs would only wait too, while another process could take them.
        with self.lock:
            capped = [
                a.job.registry_id
                for a in self.active.values()
                if a.pending and a.run is not None and a.run.in_flight >= a.run.cap
            ]
        # Plain statements (imagesync.bulk): a sync of 1,000 repositories claims 100 jobs.
        where, params = "task_id = %s AND status = %s", [self.task.pk, SyncJob.Status.QUEUED]
        if capped:
            marks = ", ".join(["%s"] * len(capped))
            where += f" AND (registry_id IS NULL OR registry_id NOT IN ({marks}))"
            params += capped
        with db_guard():
            for (pk,) in bulk.select_rows(SyncJob, ["id"], where, params, order="id", limit=10):
                job = SyncJob(pk=pk)
                if job.claim(self.worker):  # and reads the job
                    return job
        return None

    def _activate(self, job: SyncJob) -> None:
        active = self.active[job.pk] = ActiveJob(job)
        if self.stopping:  # cancelled: the job ends at once, its repositories are skipped
            self._complete(active)
            return
        run = self._registry_run(job.registry_id)
        if job.kind == SyncJob.Kind.LISTING:
            active.run = run if isinstance(run, RegistryRun) else None
            self.in_flight += 1
            self.pool.submit(("listing", active, run))
            return
        with db_guard():
            results = SyncTaskRepository.objects.filter(
                pk__in=job.result_ids,
                status__in=[SyncTaskRepository.Status.PENDING, SyncTaskRepository.Status.RUNNING],
            ).select_related("repository")
            results = list(results.order_by("repository_path"))
        if isinstance(run, RegistryError):
            self.in_flight += 1
            self.pool.submit(("unusable", active, (run, results)))
            return
        active.run = run
        with self.lock:
            for result in results:
                result.repository.registry = run.registry
                job_ = Job(self.task, result.pk, result.repository, run.registry.pk)
                active.pending.append(job_)
            empty = not active.pending
        if empty:
            self._complete(active)

    def _registry_run(self, registry_id: int | None) -> RegistryRun | RegistryError:
        if registry_id not in self.runs:
            with db_guard():
                registry = Registry.objects.filter(pk=registry_id).first()
            if registry is None:
                error = RegistryError(reasons.NOT_FOUND, "The registry connection was removed.")
                self.runs[registry_id] = error
                return error
            run = RegistryRun(registry=registry)
            try:
                run.open()
            except RegistryError as exc:
                self.runs[registry_id] = exc
                return exc
            self.runs[registry_id] = run
        return self.runs[registry_id]

    def _hand_out(self) -> None:
        """Queue repositories up to the pool's size, round robin over jobs, within each
        registry's cap."""
        progress = True
        while self.in_flight < self.pool.size and progress and not (self.stopping or self.halt):
            progress = False
            for active in list(self.active.values()):
                if self.in_flight >= self.pool.size:
                    break
                run = active.run
                with self.lock:
                    if not (active.pending and run is not None and run.in_flight < run.cap):
                        continue
                    run.in_flight += 1
                    active.in_flight += 1
                    self.in_flight += 1
                    job = active.pending.popleft()
                self.pool.submit(("repository", active, job))
                progress = True

    # --- in the worker threads ---------------------------------------------------------------

    def _handle(self, item: tuple) -> tuple:
        kind, active, payload = item
        if kind == "repository":
            return self._sync_repositories(active, payload)
        try:
            if kind == "listing":
                return kind, active, self._list(active, payload)
            run, results = payload
            for result in results:
                with db_guard(), transaction.atomic():
                    self.task.record_repository(
                        result.pk, failed=True, code=run.code, message=run.message
                    )
            return kind, active, []
        except Exception:
            logger.exception("Job #%s of sync task #%s failed.", active.job.pk, self.task.pk)
            return kind, active, []

    def _sync_repositories(self, active: ActiveJob, job: Job) -> tuple:
        """Sync `job`, then go on with the next repository of the same registry while there
        is one here (the thread keeps the registry's slot), reporting each as it ends. Before
        each repository the task's row says whether it was cancelled or ended meanwhile (as
        the last result's statement returned it, else read): a cancel stops the task between
        repositories, as with one thread."""
        state = None
        while True:
            if not self._may_start(state):
                return "halted", active, job
            outcome = active.run.sync(job)
            state = outcome.state
            following = self._take_next(active.run)
            if following is None:
                return "repository", active, outcome
            self.pool.report(("continued", active, outcome))
            active, job = following

    def _may_start(self, state: RecordedState | None = None) -> bool:
        """Whether the task still runs uncancelled: as `state` says (the task's row as this
        thread's last repository result left it, a moment ago) or else as the row says."""
        if self.halt or self.stopping or self.lost:
            return False
        if state is not None:
            if not state.may_go_on:
                self.halt = True
            return not self.halt
        table = connection.ops.quote_name(SyncTask._meta.db_table)
        with db_guard(), connection.cursor() as cursor:
            # Before every repository: a plain query (the ORM's building cost more than it).
            cursor.execute(
                f"SELECT status, cancel_requested FROM {table} WHERE id = %s", [self.task.pk]
            )
            row = cursor.fetchone()
        if row is None or row[0] != SyncTask.Status.RUNNING or row[1]:
            self.halt = True
        return not self.halt

    def _take_next(self, run: RegistryRun) -> tuple[ActiveJob, Job] | None:
        """The next pending repository of `run`'s registry, counted in flight at once."""
        with self.lock:
            if self.halt or self.stopping or self.lost:
                return None
            for active in self.active.values():
                if active.run is run and active.pending:
                    active.in_flight += 1
                    return active, active.pending.popleft()
        return None

    def _list(self, active: ActiveJob, run: RegistryRun | RegistryError) -> list[int]:
        """List one registry's repositories, bring them in line with a complete listing and
        add their results and batch jobs; the new jobs' ids."""
        job = active.job
        types = tuple(job.repository_types)
        if isinstance(run, RegistryError):
            code, message = run.code, run.message
        else:
            started = timezone.now()
            listing = _list_one(run, types)
            if not isinstance(listing, RegistryError):
                return self._add_listing(run, types, listing, started)
            code, message = listing.code, f"Listing the repositories failed: {listing.message}"
        with db_guard(), transaction.atomic():
            registry = Registry.objects.get(pk=job.registry_id)
            add_results(self.task, registry, [], registry_failures(registry, types, code, message))
        return []

    def _add_listing(
        self,
        run: RegistryRun,
        types: tuple[str, ...],
        listing: list[RepositoryInfo],
        started=None,
    ) -> list[int]:
        with db_guard(), transaction.atomic():
            repos, removed = Repository.objects.apply_listing(
                run.registry, types, listing, task=self.task, listed_at=started
            )
            for repo in repos:
                repo.registry = run.registry
            job_ids = add_results(self.task, run.registry, repos, [], removed)
            Registry.objects.filter(pk=run.registry.pk).update(last_synced_at=timezone.now())
        run.listed = True
        return job_ids

    # --- back in the main thread -------------------------------------------------------------

    def _collect(self, kind: str, active: ActiveJob, value) -> bool:
        """Count one result in (no database work); whether its job has ended."""
        with self.lock:
            if kind != "continued":  # the thread is free again
                self.in_flight -= 1
            if kind not in ("repository", "continued", "halted"):
                return True
            active.in_flight -= 1
            if kind != "continued":
                active.run.in_flight -= 1
            if kind == "halted":  # not started: back to the front of its queue
                active.pending.appendleft(value)
            else:
                active.synced_any = active.synced_any or value.finished
            return not active.in_flight and (not active.pending or self.stopping)

    def _report(self, item: tuple, job_ended: bool) -> None:
        """The bookkeeping of one result counted in by `_collect`."""
        kind, active, value = item
        if kind == "halted":
            self._check_cancel()
            with self.lock:
                idle = not active.in_flight and (self.stopping or not active.pending)
            if idle and self.active.get(active.job.pk) is active:
                self._complete(active)
            return
        if kind in ("repository", "continued"):
            if self.on_progress is not None:
                self._refresh_progress(getattr(value, "state", None))
                self.on_progress(self.task, value)
            if job_ended and self.active.get(active.job.pk) is active:
                self._complete(active)
            return
        self._complete(active)
        if value:
            with db_guard():  # the ORM broker writes to the database too
                self.announce(value)

    def _refresh_progress(self, known: RecordedState | None = None) -> None:
        """The task's done and total counts, for the progress line after each repository:
        those its result's statement returned (`known`), else read by a plain query (the ORM's
        refresh cost the main thread more than the database did). Results come in from several
        threads, so the line never goes back to a smaller count than it showed."""
        task = self.task
        if known is not None:
            done, total, _ = known
            if done >= task.repositories_done:
                task.repositories_done, task.repositories_total = done, total
            return
        table = connection.ops.quote_name(SyncTask._meta.db_table)
        with db_guard(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT repositories_done, repositories_total FROM {table} WHERE id = %s",
                [self.task.pk],
            )
            row = cursor.fetchone()
        if row is not None:
            self.task.repositories_done, self.task.repositories_total = row

    def _complete(self, active: ActiveJob) -> None:
        self.active.pop(active.job.pk, None)
        with db_guard():
            active.job.finish()
            if active.synced_any:
                values = {"last_synced_at": timezone.now()}
                bulk.update(Registry, "id = %s", [active.job.registry_id], values=values)

    def _beat(self) -> None:
        with db_guard():
            if not self.task.beat():
                self.lost = True
            for active in list(self.active.values()):
                if not active.job.beat():
                    # Re-queued after a silence: another worker runs its repositories now.
                    logger.warning("Lost job #%s of sync task #%s.", active.job.pk, self.task.pk)
                    with self.lock:
                        active.pending.clear()
                        idle = not active.in_flight
                    if idle:
                        self.active.pop(active.job.pk, None)
        self.last_beat = time.monotonic()

    def _check_cancel(self) -> None:
        with db_guard():
            row = (
                SyncTask.objects.filter(pk=self.task.pk)
                .values_list("status", "cancel_requested")
                .first()
            )
        if row is None or row[0] != SyncTask.Status.RUNNING:
            self.lost = True
        elif row[1] and not self.stopping:
            with self.lock:
                self.stopping = True
                idle = [active for active in self.active.values() if not active.in_flight]
            for active in idle:
                self._complete(active)

    def _look_after_others(self) -> None:
        """While idle: notice cancel, and re-queue the jobs of workers that stopped beating
        (or give them up after SYNC_JOB_ATTEMPTS), so that this process takes them."""
        self._check_cancel()
        if self.lost:
            return
        requeue_stale_jobs(self.task)

    def _all_done(self) -> bool:
        with db_guard():
            jobs = SyncJob.objects.filter(task_id=self.task.pk)
            return not jobs.exclude(status=SyncJob.Status.DONE).exists()

    def _conclude_if_done(self) -> None:
        from imagesync.sync.run import refresh_statistics

        with db_guard():
            if not self._all_done() or not self.task.conclude():
                return
        refresh_statistics(self.task)


def requeue_stale_jobs(task: SyncTask, now: datetime | None = None) -> int:
    """Re-queue the running jobs of `task` whose heartbeat is older than SYNC_HEARTBEAT_TIMEOUT;
    give up a job that already ran SYNC_JOB_ATTEMPTS times. The number re-queued."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.SYNC_HEARTBEAT_TIMEOUT)
    requeued = 0
    with db_guard():
        stale = SyncJob.objects.filter(
            task_id=task.pk, status=SyncJob.Status.RUNNING, heartbeat_at__lt=cutoff
        )
        for job in stale:
            if job.attempt >= settings.SYNC_JOB_ATTEMPTS:
                message = (
                    f"Not synchronized: the workers running it stopped responding "
                    f"{job.attempt} times."
                )
                with transaction.atomic():
                    for result_id in job.give_up():
                        task.record_repository(
                            result_id, failed=True, code=reasons.INTERRUPTED, message=message
                        )
                logger.warning("Gave up job #%s of sync task #%s.", job.pk, task.pk)
            elif job.requeue():
                requeued += 1
                logger.warning(
                    "Re-queued job #%s of sync task #%s: its worker %s stopped responding.",
                    job.pk,
                    task.pk,
                    job.worker,
                )
    return requeued


def _list_one(run: RegistryRun, types: tuple[str, ...]) -> list[RepositoryInfo] | RegistryError:
    try:
        return list(run.client.list_repositories(list(types)))
    except RegistryError as exc:
        return exc
    except Exception:
        logger.exception("Listing the repositories of registry %s failed.", run.registry.pk)
        return RegistryError(reasons.BAD_RESPONSE, "The registry client failed unexpectedly.")
