"""SyncRun: one run of one sync task, from the claim to the final status."""

from __future__ import annotations

import logging
import os
import socket

from django.db import DatabaseError, connection

from imagesync import reasons
from imagesync.models import AuthorizationGrant, Image, Repository, SyncJob, SyncTask
from imagesync.sync.plan import REGISTRY_LISTING_PATH, SWR_NOT_AUTHORIZED_MESSAGE, plan_task
from imagesync.sync.pool import db_guard
from imagesync.sync.work import Announce, Participation, ProgressCallback

logger = logging.getLogger(__name__)

__all__ = ["REGISTRY_LISTING_PATH", "SWR_NOT_AUTHORIZED_MESSAGE", "SyncRun", "worker_name"]

# A sync that changed at least this many images refreshes the planner statistics, so Image View
# filters keep using their indexes right after a large first sync (instead of waiting for
# autovacuum on PostgreSQL, or for ever on SQLite).
STATISTICS_THRESHOLD = 1000


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


class SyncRun:
    """One run of a claimed sync task.

    1. Preconditions: a scheduled run needs active SWROperatePolicy and CCEOperatePolicy grants.
    2. The task is split into jobs (imagesync/sync/plan.py): for "all" and "types" one listing
       job per registry of the project, which lists it (HTTP), brings its repositories in line
       with a complete listing and adds batch jobs of SYNC_JOB_SIZE repositories; for chosen
       repositories the batch jobs at once. SWR repositories need the project's SWR
       authorization grant.
    3. `announce` (given by imagesync/tasks.py) hands the jobs to the queue, where any worker
       process may claim them; this process takes part too (imagesync/sync/work.py), with
       SYNC_WORKERS threads, at most `client.max_concurrency` requests at a time per registry
       across all processes. Each repository is reconciled in its own transaction together
       with its result row and the task counters.
    4. The task ends with the status its results call for once every job is done, unless the
       watchdog already finished it as interrupted.

    It knows nothing of the console's HTTP requests or of the queue: a test can run it, and
    without `announce` this process does every job itself."""

    def __init__(
        self,
        task: SyncTask,
        on_progress: ProgressCallback | None = None,
        announce: Announce | None = None,
    ) -> None:
        self.task = task
        self.on_progress = on_progress
        self.announce = announce

    @classmethod
    def claim(
        cls,
        task_id: int,
        on_progress: ProgressCallback | None = None,
        announce: Announce | None = None,
    ) -> SyncRun | None:
        """The run of a queued task, if this caller won it (the conditional UPDATE alone
        decides which worker runs it); None when it was not queued any more."""
        with db_guard():
            claimed = SyncTask(pk=task_id, status=SyncTask.Status.QUEUED).claim(worker_name())
        if not claimed:
            logger.info("Sync task #%s was not queued any more; nothing to do.", task_id)
            return None
        task = SyncTask.objects.select_related("project").get(pk=task_id)
        return cls(task, on_progress, announce)

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
            end_jobs(self.task)
        self.task.refresh_from_db()
        return self.task

    def _run(self) -> None:
        if not self._preconditions_met():
            return
        swr_authorized = AuthorizationGrant.objects.swr_authorized(self.task.project)
        job_ids = plan_task(self.task, swr_authorized)
        if self.announce is not None and job_ids:
            with db_guard():  # the ORM broker writes to the database too
                self.announce(job_ids)
        Participation(self.task, worker_name(), self.on_progress, self.announce).run()

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


def join_job(job_id: int, announce: Announce | None = None) -> bool:
    """Claim a queued job and take part in its task until every job is done; False when the
    job was not queued any more (another process has it, or its task ended)."""
    with db_guard():
        job = SyncJob.objects.filter(pk=job_id).select_related("task").first()
        if job is None or job.task.status != SyncTask.Status.RUNNING:
            return False
        if not job.claim(worker_name()):
            return False
    Participation(job.task, worker_name(), announce=announce).run(first=job)
    return True


def end_jobs(task: SyncTask) -> int:
    """Mark every job of a task that ended (interrupted, failed) done."""
    with db_guard():
        return (
            SyncJob.objects.filter(task_id=task.pk)
            .exclude(status=SyncJob.Status.DONE)
            .update(status=SyncJob.Status.DONE)
        )


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
