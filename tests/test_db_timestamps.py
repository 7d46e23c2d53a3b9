"""imagesync.db: the times the console reads back are the times it wrote, to the microsecond and
in UTC, on both databases; on PostgreSQL they are parsed by psycopg's compiled loader, which
gives exactly what Django's own loader gives, and Django's loader stays wherever the session is
not in UTC."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DataError, connection, transaction

from imagesync.models import SyncTask

pytestmark = pytest.mark.django_db

MOMENTS = [
    dt.datetime(2026, 12, 4, 8, 45, 1, 242302, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 1, 0, 0, 0, 0, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, 0, 0, 0, 0, tzinfo=dt.UTC),
    dt.datetime(999, 3, 4, 5, 6, 7, 123000, tzinfo=dt.UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    # written with another offset: read back as the same moment, in UTC
    dt.datetime(2026, 6, 1, 8, 0, 0, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    dt.datetime(2026, 6, 1, 8, 0, 0, 10, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))),
]


def django_loader_class():
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg import adapt, adapters

    context = adapt.AdaptersMap(adapters)
    register_tzloader(connection.timezone, context)
    return context.get_loader(1184, 0)  # timestamptz, text


def read_with(loader, sql: str, params=()) -> list:
    with connection.cursor() as cursor:
        if loader is not None:
            cursor.cursor.adapters.register_loader("timestamptz", loader)
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_times_read_back_as_written_in_utc(project):
    """A task's times written through the ORM read back equal, as UTC datetimes."""
    tasks = [
        SyncTask.objects.create(project=project, status=SyncTask.Status.SUCCEEDED, started_at=when)
        for when in MOMENTS
    ]
    read = dict(SyncTask.objects.filter(project=project).values_list("pk", "started_at"))
    for task, when in zip(tasks, MOMENTS, strict=True):
        assert read[task.pk] == when
        assert read[task.pk].utcoffset() == dt.timedelta(0)
        assert read[task.pk].tzinfo is dt.UTC


def test_postgresql_reads_timestamps_as_django_does_but_compiled(project):
    """On PostgreSQL the connection's `timestamptz` loader is the console's, and every value --
    NULL, the first and last years, each precision, other offsets -- reads as Django's loader
    reads it; a value Python cannot hold fails the same way under both."""
    if connection.vendor != "postgresql":
        assert "sqlite" in connection.vendor  # SQLite stores text: the test above covers it
        return
    from imagesync import db

    connection.ensure_connection()
    ours = connection.connection.adapters.get_loader(1184, 0)
    assert ours.__name__ == "UtcTimestamptzLoader"
    assert ours.timezone is connection.timezone  # Django adds no loader per cursor
    sql = "SELECT v FROM unnest(%s::timestamptz[]) AS v ORDER BY v NULLS FIRST"
    values = [*MOMENTS, None]
    theirs = read_with(django_loader_class(), sql, [values])
    mine = read_with(None, sql, [values])
    assert mine == theirs
    assert [type(v) for (v,) in mine] == [type(v) for (v,) in theirs]
    assert [v.tzinfo for (v,) in mine if v] == [dt.UTC] * len(MOMENTS)
    # The loader in use is psycopg's compiled one wherever psycopg[binary] is installed.
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        loader = cursor.cursor._tx.get_loader(1184, 0)
        assert type(loader).__name__ == "UtcTimestamptzLoader"
        if db._compiled_loader() is not None:
            assert "load" in vars(loader)  # delegated
    for outside in ("infinity", "-infinity", "0044-03-15 00:00:00+00 BC"):
        for loader in (django_loader_class(), None):
            with transaction.atomic(), pytest.raises(DataError):
                read_with(loader, f"SELECT '{outside}'::timestamptz")


def test_a_session_in_another_time_zone_keeps_djangos_loader(project):
    """Were the session's time zone changed from UTC, the compiled loader is not used: the
    values are whatever Django's own loader makes of them."""
    if connection.vendor != "postgresql":
        assert "sqlite" in connection.vendor
        return
    sql = "SELECT %s::timestamptz"
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL TIME ZONE 'Asia/Shanghai'")
        for when in MOMENTS[:3]:
            assert read_with(None, sql, [when]) == read_with(django_loader_class(), sql, [when])
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            assert "load" not in vars(cursor.cursor._tx.get_loader(1184, 0))
