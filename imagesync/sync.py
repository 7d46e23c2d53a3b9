"""The sync engine: plain functions over models and registry clients.

Data flow: ../shared/DESIGN.md, "Data flow of one sync". Nothing here knows about HTTP requests
to the console or about the queue; tasks.py is the only module django-q2 calls.
"""

from __future__ import annotations

from imagesync.models import SyncTask


class SyncRefused(Exception):
    """A sync request that cannot be accepted; `message` is shown to the user as is.

    `active_task` is set when the refusal is because another sync of the project is active.
    """

    def __init__(self, message: str, active_task: SyncTask | None = None):
        super().__init__(message)
        self.message = message
        self.active_task = active_task


def request_sync(
    project,
    *,
    trigger: str = SyncTask.Trigger.MANUAL,
    scope: str = SyncTask.Scope.ALL,
    types=(),
    repositories=(),
    user=None,
    retry_of: SyncTask | None = None,
) -> SyncTask:
    """Create a queued SyncTask for `project` and enqueue it after the transaction commits.

    Raises SyncRefused (with the active task) when a sync of the project is already queued or
    running, or when the scope is invalid (no types, unknown types, no or foreign repositories).
    """
    raise NotImplementedError


def cancel_task(task: SyncTask, user=None) -> bool:
    """Ask an active task to stop (honoured between repositories). True if it was active."""
    raise NotImplementedError


def retry_failed(task: SyncTask, user=None) -> SyncTask:
    """A new manual task covering just the failed repositories of `task`."""
    raise NotImplementedError


def run_task(task_id: int) -> None:
    """Claim and run one task to its end (called by the worker through imagesync.tasks)."""
    raise NotImplementedError
