"""The django-q2 schedules of the sync engine, created idempotently.

Called from data migration 0002 (with the historical Schedule model) so that `migrate` run
twice leaves exactly one of each. An existing schedule keeps its cron expression: it is
editable in the admin and a re-run must not undo the administrator's change.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from django.conf import settings
from django.utils import timezone

SCHEDULED_SYNC_NAME = "imagesync: scheduled sync of every project"
SCHEDULED_SYNC_FUNC = "imagesync.tasks.scheduled_sync"
WATCHDOG_NAME = "imagesync: sync watchdog"
WATCHDOG_FUNC = "imagesync.tasks.watchdog"
HISTORY_PURGE_NAME = "imagesync: history retention"
HISTORY_PURGE_FUNC = "imagesync.tasks.purge_history"
HISTORY_PURGE_CRON = "30 3 * * *"  # daily, away from the 01:00 sync
SCHEDULE_NAMES = (SCHEDULED_SYNC_NAME, WATCHDOG_NAME, HISTORY_PURGE_NAME)

CRON = "C"  # django_q.models.Schedule.CRON
MINUTES = "I"  # django_q.models.Schedule.MINUTES


def schedule_time_zone() -> ZoneInfo:
    """The zone cron expressions run in: django-q2 uses Q_CLUSTER time_zone, else TIME_ZONE."""
    return ZoneInfo(settings.Q_CLUSTER.get("time_zone") or settings.TIME_ZONE)


def next_cron_run(cron: str, after: datetime | None = None) -> datetime:
    """The next time `cron` fires after `after` (default now), in the schedule time zone --
    what django-q2 itself computes after each run."""
    local = timezone.localtime(after or timezone.now(), schedule_time_zone())
    return croniter(cron, local).get_next(datetime)


def _cron(cron: str) -> dict:
    # The historical model has no save() hook computing next_run: without it the first run
    # would fire at once after `migrate`.
    return {"schedule_type": CRON, "cron": cron, "next_run": next_cron_run(cron)}


def ensure_schedules(schedule_model=None) -> None:
    """Create the schedules if missing (by name); never overwrite an existing cron."""
    if schedule_model is None:
        from django_q.models import Schedule as schedule_model
    wanted = {
        SCHEDULED_SYNC_NAME: {"func": SCHEDULED_SYNC_FUNC, **_cron(settings.SYNC_SCHEDULE_CRON)},
        WATCHDOG_NAME: {
            "func": WATCHDOG_FUNC,
            "schedule_type": MINUTES,
            "minutes": 1,
            "next_run": timezone.now(),
        },
        HISTORY_PURGE_NAME: {"func": HISTORY_PURGE_FUNC, **_cron(HISTORY_PURGE_CRON)},
    }
    for name, defaults in wanted.items():
        schedule, created = schedule_model.objects.get_or_create(
            name=name, defaults={**defaults, "repeats": -1}
        )
        if not created and schedule.func != defaults["func"]:
            schedule.func = defaults["func"]
            schedule.save(update_fields=["func"])


def remove_schedules(schedule_model=None) -> None:
    if schedule_model is None:
        from django_q.models import Schedule as schedule_model
    schedule_model.objects.filter(name__in=SCHEDULE_NAMES).delete()
