"""The django-q2 schedules: one daily scheduled sync (01:00 in TIME_ZONE by default), one
watchdog and one daily history purge, created idempotently, the cron kept when an admin
changed it."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.conf import Conf
from django_q.models import Schedule

from imagesync import schedules

migration = importlib.import_module("imagesync.migrations.0002_sync_schedules")


def run_migration_forwards() -> None:
    migration.create_schedules(apps, None)


@pytest.fixture
def shanghai(settings, monkeypatch):
    settings.TIME_ZONE = "Asia/Shanghai"
    monkeypatch.setattr(Conf, "TIME_ZONE", "Asia/Shanghai")  # django-q2 reads it at import
    return ZoneInfo("Asia/Shanghai")


def test_the_migration_creates_each_schedule_exactly_once(db):
    Schedule.objects.all().delete()
    run_migration_forwards()
    run_migration_forwards()
    daily = Schedule.objects.get(name=schedules.SCHEDULED_SYNC_NAME)
    watchdog = Schedule.objects.get(name=schedules.WATCHDOG_NAME)
    purge = Schedule.objects.get(name=schedules.HISTORY_PURGE_NAME)
    assert Schedule.objects.count() == 3
    assert (daily.func, daily.schedule_type, daily.cron, daily.repeats) == (
        "imagesync.tasks.scheduled_sync",
        Schedule.CRON,
        "0 1 * * *",
        -1,
    )
    assert (watchdog.func, watchdog.schedule_type, watchdog.minutes) == (
        "imagesync.tasks.watchdog",
        Schedule.MINUTES,
        1,
    )
    assert (purge.func, purge.schedule_type, purge.cron) == (
        "imagesync.tasks.purge_history",
        Schedule.CRON,
        "30 3 * * *",
    )
    for schedule in (daily, watchdog, purge):
        assert callable(import_string(schedule.func))


def test_reversing_and_reapplying_the_migration_leaves_one_of_each(db):
    Schedule.objects.all().delete()
    run_migration_forwards()
    migration.delete_schedules(apps, None)
    assert not Schedule.objects.filter(name__startswith="imagesync:").exists()
    run_migration_forwards()
    assert Schedule.objects.filter(name__startswith="imagesync:").count() == 3


def test_a_cron_changed_in_the_admin_is_kept_when_the_migration_runs_again(db):
    Schedule.objects.all().delete()
    run_migration_forwards()
    Schedule.objects.filter(name=schedules.SCHEDULED_SYNC_NAME).update(cron="30 3 * * *")
    run_migration_forwards()
    assert Schedule.objects.get(name=schedules.SCHEDULED_SYNC_NAME).cron == "30 3 * * *"


def test_the_first_run_is_the_next_0100_in_the_configured_time_zone(db, shanghai):
    Schedule.objects.all().delete()
    before = timezone.now()
    run_migration_forwards()
    daily = Schedule.objects.get(name=schedules.SCHEDULED_SYNC_NAME)
    local = daily.next_run.astimezone(shanghai)
    assert (local.hour, local.minute) == (1, 0)
    assert before < daily.next_run <= before + timedelta(days=1)  # no run right after migrate


def test_django_q_computes_later_runs_at_0100_local_time_too(db, shanghai):
    Schedule.objects.all().delete()
    run_migration_forwards()
    daily = Schedule.objects.get(name=schedules.SCHEDULED_SYNC_NAME)
    following = daily.calculate_next_run()  # what the scheduler stores after a run
    assert following.astimezone(shanghai).hour == 1
    assert following.astimezone(shanghai).minute == 0


def test_next_cron_run_handles_a_daylight_saving_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    berlin = ZoneInfo("Europe/Berlin")
    # the night the clocks go back (2026-10-25): still 01:00 local
    after = datetime(2026, 10, 24, 12, 0, tzinfo=berlin)
    assert schedules.next_cron_run("0 1 * * *", after) == datetime(
        2026, 10, 25, 1, 0, tzinfo=berlin
    )
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=berlin)
    nxt = schedules.next_cron_run("0 1 * * *", summer)
    assert nxt.astimezone(berlin).hour == 1 and nxt.utcoffset() == timedelta(hours=2)
