"""What the console sets on each new database connection.

PostgreSQL with psycopg 3: Django reads every `timestamptz` through its own loader, a Python
subclass of psycopg's pure-Python one that parses the text with a regular expression and
then sets the time zone again: about 3.6 µs a value. psycopg's compiled loader (psycopg[binary],
which the console installs) parses the same text in about 0.2 µs, and when the session's
time zone is UTC -- Django sets it so on every connection unless the database has its own
`TIME_ZONE` -- it gives the very same value: a datetime in `datetime.timezone.utc`. A re-sync
of 10,000 images reads some 40,000 of them (each image's stored times), Image View and the
history pages dozens to hundreds a page.

`UtcTimestamptzLoader` replaces Django's loader on the connection. It keeps Django's class
and its `timezone` (Django checks that attribute on every cursor), and hands each value to
psycopg's compiled loader only when both sides are UTC and the session's `DateStyle` is ISO;
otherwise it is Django's loader, unchanged.
"""

from __future__ import annotations

import functools
from datetime import UTC

from django.db.backends.signals import connection_created


def _compiled_loader():
    """psycopg's compiled `timestamptz` text loader; None without psycopg[binary] (psycopg's
    default is then its pure-Python loader, no faster than Django's)."""
    from psycopg import adapters
    from psycopg.postgres import types
    from psycopg.pq import Format
    from psycopg.types.datetime import TimestamptzLoader

    found = adapters.get_loader(types["timestamptz"].oid, Format.TEXT)
    return None if found is None or issubclass(found, TimestamptzLoader) else found


@functools.cache
def _utc_loader():
    """The loader class, built on first use (psycopg may not be installed on SQLite-only
    machines)."""
    from django.db.backends.postgresql.psycopg_any import BaseTzLoader

    compiled = _compiled_loader()

    class UtcTimestamptzLoader(BaseTzLoader):
        timezone = UTC

        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            pgconn = self.connection.pgconn if self.connection else None
            if (
                compiled is not None
                and pgconn is not None
                and pgconn.parameter_status(b"TimeZone") == b"UTC"
                and (pgconn.parameter_status(b"DateStyle") or b"").startswith(b"ISO")
            ):
                # An instance attribute: psycopg's row loader calls it straight from C.
                self.load = compiled(oid, context).load

    return UtcTimestamptzLoader


def use_fast_timestamps(sender, connection, **kwargs) -> None:
    """On a PostgreSQL connection in UTC (Django's `timezone` is UTC), read `timestamptz`
    through `UtcTimestamptzLoader`."""
    if connection.vendor != "postgresql" or connection.timezone is not UTC:
        return
    if not hasattr(connection.connection, "adapters"):  # psycopg2: its own C loaders already
        return
    connection.connection.adapters.register_loader("timestamptz", _utc_loader())


def connect_signals() -> None:
    connection_created.connect(use_fast_timestamps, dispatch_uid="imagesync.db.fast_timestamps")
