"""Mass writes as plain SQL, for the sync's hot path.

Django's `bulk_update` writes a CASE per row and column (`SET digest = CASE WHEN id = 1 THEN
... WHEN id = 2 ...`): building those expressions costs Python time per row and column, and
on SQLite its batches are cut to 999 parameters (a re-sync where every digest changed:
~150 images/s). `bulk_create` builds and prepares a model instance per row. Here the rows are
tuples of field values, prepared once per field, and written:

- on PostgreSQL, as `UPDATE t SET ... FROM unnest(%s::bigint[], ...) AS v WHERE t.id = v.c0`
  and `INSERT ... SELECT ... FROM unnest(...)`, `BATCH` rows per statement, one array
  parameter per column (the `UPDATE ... FROM (VALUES ...)` form with a placeholder per value
  spent more time in psycopg merging them into the query text than the database did writing);
- on SQLite, by `executemany` of one UPDATE by primary key (or one INSERT): one prepared
  statement run per row, no parameter limit.

Values pass through each field's `get_db_prep_save`, as Django's own writes do (time zones,
JSON, booleans), so a row written here reads back exactly as one written by the ORM.
"""

from __future__ import annotations

import functools
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    connection,
    connections,
    models,
    transaction,
)

BATCH = 500  # rows per statement on PostgreSQL
PREPARED_PER_CONNECTION = 100  # statements `run_together` keeps prepared on one connection
PREPARED_PARAMETERS = 64  # a statement with more is sent as text (an IN list of that size)
SEEN_PER_CONNECTION = 1000  # texts remembered as sent once, to be prepared when sent again


_AS_IS = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "ForeignKey",
    "IntegerField",
    "PositiveIntegerField",
}


def _preparer(field: models.Field):
    """A function giving a value of `field` as the database takes it: what the field's own
    get_db_prep_save gives, without its general machinery for the common cases (it costs more
    than the write itself for a row of 16 values)."""
    kind = field.get_internal_type()
    general = field.get_db_prep_save
    if kind in _AS_IS:
        return lambda value: (
            value if value is None or type(value) in (int, bool) else (general(value, connection))
        )
    if kind == "CharField":
        return lambda value: (
            value if value is None or type(value) is str else (general(value, connection))
        )
    if kind == "DateTimeField":
        adapt = connection.ops.adapt_datetimefield_value
        # An aware datetime is stored as the field would store it; anything else (a naive
        # one, a date) takes the field's own path, with its conversions and warnings.
        return lambda value: (
            adapt(value)
            if value is not None and type(value) is datetime and value.utcoffset() is not None
            else general(value, connection)
        )
    if kind == "JSONField":
        # Its JSON text, as Django's adapt_json_value makes it on both databases (PostgreSQL:
        # passed as text and cast to jsonb, see _arrays).
        encoder = field.encoder
        return lambda value: (
            general(value, connection)
            if value is None or hasattr(value, "resolve_expression")
            else json.dumps(value, cls=encoder)
        )
    return lambda value: general(value, connection)


def _prepared(rows: Iterable[Sequence], fields: Sequence[models.Field]) -> list[list]:
    preparers = [_preparer(field) for field in fields]
    return [[prepare(value) for prepare, value in zip(preparers, row, strict=True)] for row in rows]


def _arrays(fields: Sequence[models.Field], chunk: list[list]) -> tuple[str, list[str], list]:
    """PostgreSQL: `chunk`'s columns as one array parameter each, unnested into rows: the FROM
    item, each column's expression and the parameters. A statement of a few placeholders is
    parsed once and cached by psycopg (one placeholder per value costs more Python time to
    merge than the database takes to write the rows)."""
    types, expressions = [], []
    for index, field in enumerate(fields):
        db_type = field.db_type(connection)
        if db_type == "jsonb":  # passed as its text (see _preparer)
            types.append("text[]")
            expressions.append(f"v.c{index}::jsonb")
        else:
            types.append(f"{db_type}[]")
            expressions.append(f"v.c{index}")
    unnest = ", ".join(f"%s::{kind}" for kind in types)
    aliases = ", ".join(f"c{index}" for index in range(len(fields)))
    columns = [_array_literal(column) for column in zip(*chunk, strict=True)]
    return f"unnest({unnest}) WITH ORDINALITY AS v ({aliases}, n)", expressions, columns


def _array_literal(values: Sequence) -> str:
    """PostgreSQL's text form of an array of `values` (`{1,NULL,"a\\"b"}`), cast by the
    statement to the column's array type. psycopg dumps a list parameter value by value in
    Python: 4.8 ms of CPU for 500 rows of four columns, against 1.5 ms for this text as one
    quoted string. Every value but an int is double-quoted with `\\` and `"` escaped, so no text
    (a comma, a brace, the word NULL) can be read as array syntax."""
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    items = []
    for value in values:
        if value is None:
            items.append("NULL")
        elif type(value) is bool:
            items.append("t" if value else "f")
        elif type(value) is int:
            items.append(str(value))
        else:
            text = value.isoformat() if isinstance(value, datetime) else str(value)
            items.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def update_rows(
    model: type[models.Model],
    names: Sequence[str],
    rows: Iterable[Sequence],
    *,
    later: list[tuple[str, list]] | None = None,
) -> int:
    """Set the columns `names` of the rows of `model` whose primary keys are the first value of
    each row: `rows` are `(pk, value of names[0], value of names[1], ...)`. Returns the number
    of rows given (every primary key is expected to exist: the caller read them).

    `later`: see `keep_or_run` (PostgreSQL's statements may wait there; SQLite writes now)."""
    meta = model._meta
    fields = [meta.pk, *(meta.get_field(name) for name in names)]
    prepared = _prepared(rows, fields)
    if not prepared:
        return 0
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    columns = [quote(field.column) for field in fields[1:]]
    if connection.vendor != "postgresql":
        assignments = ", ".join(f"{column} = %s" for column in columns)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {pk} = %s",
                [[*row[1:], row[0]] for row in prepared],
            )
        return len(prepared)
    statements = []
    for start in range(0, len(prepared), BATCH):
        source, values, params = _arrays(fields, prepared[start : start + BATCH])
        assignments = ", ".join(
            f"{column} = {value}" for column, value in zip(columns, values[1:], strict=True)
        )
        sql = f"UPDATE {table} AS t SET {assignments} FROM {source} WHERE t.{pk} = {values[0]}"
        statements.append((sql, params))
    keep_or_run(statements, later)
    return len(prepared)


def insert_rows(
    model: type[models.Model],
    names: Sequence[str],
    rows: Iterable[Sequence],
    *,
    later: list[tuple[str, list]] | None = None,
) -> int:
    """Insert `rows` (values of the fields `names`, in that order) into `model`'s table, in
    the rows' order (their ids ascend in it). Returns their number.

    `later`: see `keep_or_run` (PostgreSQL's statements may wait there; SQLite writes now)."""
    meta = model._meta
    fields = [meta.get_field(name) for name in names]
    prepared = _prepared(rows, fields)
    if not prepared:
        return 0
    quote = connection.ops.quote_name
    sql = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    if connection.vendor != "postgresql":
        marks = ", ".join(["%s"] * len(fields))
        with connection.cursor() as cursor:
            cursor.executemany(f"{sql} VALUES ({marks})", prepared)
        return len(prepared)
    statements = []
    for start in range(0, len(prepared), BATCH):
        source, values, params = _arrays(fields, prepared[start : start + BATCH])
        statements.append((f"{sql} SELECT {', '.join(values)} FROM {source} ORDER BY v.n", params))
    keep_or_run(statements, later)
    return len(prepared)


def sends_together() -> bool:
    """Whether `run_together` sends several statements in one round trip here (PostgreSQL with
    psycopg's client-side binding, Django's default)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        return _sends_several(cursor)


def keep_or_run(
    statements: Sequence[tuple[str, list]], later: list[tuple[str, list]] | None
) -> None:
    """Run `statements` now (`run_together`), or, when `later` is a list, append them to it:
    the caller runs them, in order, with the transaction's last round trip. For writes nothing
    reads before the transaction ends (a sync's new image rows and their history: on
    PostgreSQL, no round trip of their own). Callers pass a list only where one round trip
    carries several statements (`sends_together`); elsewhere deferring would save nothing."""
    if later is not None:
        later.extend(statements)
    else:
        run_together(statements)


def queryset_update_statement(queryset: models.QuerySet, **values: Any) -> tuple[str, list]:
    """The SQL and parameters of `queryset.update(**values)`, to run later (`keep_or_run`):
    Django's own compilation of it, for an update of the queryset's table alone."""
    from django.db.models.sql import UpdateQuery

    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    query.annotations = {}
    sql, params = query.get_compiler(queryset.db).as_sql()
    return sql, list(params)


@functools.cache
def _update_statement(
    model: type[models.Model],
    names: tuple[str, ...],
    adds: tuple[str, ...],
    where: str,
    vendor: str,
    returning: tuple[str, ...] = (),
) -> tuple[str, list[Callable]]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in names]
    added = [quote(meta.get_field(name).column) for name in adds]
    assignments = [f"{quote(field.column)} = %s" for field in fields]
    assignments += [f"{column} = {column} + %s" for column in added]
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {where}"
    if returning:
        sql += " RETURNING " + ", ".join(quote(meta.get_field(n).column) for n in returning)
    return sql, [_preparer(field) for field in fields]


def update_statement(
    model: type[models.Model],
    where: str,
    where_params: Sequence = (),
    *,
    values: Mapping[str, Any] | None = None,
    add: Mapping[str, int] | None = None,
    returning: Sequence[str] = (),
) -> tuple[str, list]:
    """The SQL and parameters of `update`'s statement (returning the fields `returning` of
    the rows changed), to run or to give `update_returning` as one to run `before`."""
    values, add = values or {}, add or {}
    sql, preparers = _update_statement(
        model, tuple(values), tuple(add), where, connection.vendor, tuple(returning)
    )
    params = [prepare(value) for prepare, value in zip(preparers, values.values(), strict=True)]
    return sql, [*params, *add.values(), *where_params]


def update(
    model: type[models.Model],
    where: str,
    where_params: Sequence = (),
    *,
    values: Mapping[str, Any] | None = None,
    add: Mapping[str, int] | None = None,
) -> int:
    """`UPDATE` the rows of `model` matching `where` (SQL over the table's columns, `%s` for
    `where_params`, which the caller prepares): each field of `values` set to its value
    (prepared as the field would), each field of `add` increased by its number. The number of
    rows changed.

    The sync's per-repository bookkeeping (a repository's result, the task's counters, the
    repository row) as one statement each: Django's QuerySet.update builds the same statement
    from expressions on every call, several times the CPU of running it (py-spy, an unchanged
    re-sync of 1,000 repositories on SQLite: execution was a tenth of record_repository's
    time, building the query most of the rest)."""
    sql, params = update_statement(model, where, where_params, values=values, add=add)
    return run_together([(sql, params)])[0]


def update_returning(
    model: type[models.Model],
    where: str,
    where_params: Sequence = (),
    *,
    values: Mapping[str, Any] | None = None,
    add: Mapping[str, int] | None = None,
    returning: Sequence[str],
    before: Sequence[tuple[str, list]] = (),
    commit: bool = False,
) -> tuple | None:
    """`update`, and the values of the fields `returning` of the changed row as the statement
    left them (None when no row matched; the first row when several did): one statement where
    both databases have `UPDATE ... RETURNING` (SQLite from 3.35), else the update and a read
    in the same transaction. Integer and text fields only: no converter is applied.

    `before`: statements (`update_statement`) to run first. `commit`: this update is the last
    statement of the transaction (see `run_together`). On PostgreSQL all of it is one round
    trip."""
    if not connection.features.can_return_columns_from_insert:
        with transaction.atomic():
            run_together(before)
            if not update(model, where, where_params, values=values, add=add):
                return None
            rows = select_rows(model, returning, where, where_params, limit=1)
        return rows[0] if rows else None
    statement = update_statement(
        model, where, where_params, values=values, add=add, returning=returning
    )
    rows = run_together([*before, statement], commit=commit)[-1]
    return tuple(rows[0]) if rows else None


def run_together(
    statements: Sequence[tuple[str, list]], *, commit: bool = False
) -> list[list[tuple] | int]:
    """Run `statements` ((SQL, parameters) each), in order, each seeing what those before it
    wrote, and return what each gave: its rows when it returns rows (a SELECT, a RETURNING),
    else the number of rows it changed.

    On PostgreSQL, one round trip: one query text of all of them, which psycopg's cursor with
    client-side binding (Django's default) sends by the simple query protocol, where a text
    may hold several statements. Each statement is sent as `EXECUTE` of a statement prepared
    on the connection (`_Prepared`): the server neither parses nor plans it again. Elsewhere
    one by one.

    `commit`: they are the last statements of the transaction, run in its outermost atomic
    block. On PostgreSQL the same round trip then commits it (the block's own COMMIT then
    finds nothing left to commit, and its on-commit hooks run as usual): the rows these
    statements lock -- a task's counters, which every worker thread updates -- are held for
    the server's time alone, not until the client's next round trip, which waits for the GIL
    behind the other threads. Anywhere else (SQLite, a nested block, a test's transaction)
    the block commits as it would have."""
    if not statements and not commit:
        return []
    with connection.cursor() as cursor:
        several = _sends_several(cursor)
        prepared = _Prepared.of(several)
        if not several or (prepared is None and len(statements) < 2 and not commit):
            results = []
            for sql, params in statements:
                cursor.execute(sql, params)
                # all rows: SQLite finishes a statement as it steps through them
                results.append(cursor.fetchall() if cursor.description else cursor.rowcount)
            return results
        if prepared is not None:
            statements = prepared.executed(cursor, statements)
        text = "; ".join(sql for sql, _ in statements)
        if commit and _commits_on_exit():
            text += "; COMMIT"
        values = [value for _, params in statements for value in params]
        bound = _bound(cursor.cursor, text, values)
        try:
            if bound is None:
                cursor.execute(text, values)
            else:
                cursor.execute(bound)
        except Exception:
            if prepared is not None:
                prepared.forget()  # a statement changed under it, or was dropped: start again
            raise
        results = []
        for index in range(len(statements)):
            if index:
                cursor.nextset()
            results.append(cursor.fetchall() if cursor.description else cursor.rowcount)
        return results


_PLACEHOLDER = re.compile(r"%%|%s")
_PERCENT = re.compile(r"(%%|%s|%)")


def _bound(cursor, text: str, values: list) -> bytes | None:
    """`text` with `values` in its `%s` placeholders, as psycopg's cursor would bind them on
    the client (each value as `cursor`'s adapters write it as a literal, `%%` as `%`), or
    None to leave the binding to psycopg (a placeholder it would refuse, or a count that does
    not match: its own error then). psycopg parses again every text of more than 50
    parameters or 4,096 bytes: ~1.8 µs per parameter where the values alone take ~0.5 µs
    (a first sync's image rows are some 300 in a text)."""
    pieces = _pieces(text, cursor.connection.info.encoding)
    if pieces is None or len(pieces) != len(values) + 1:
        return None
    from psycopg.adapt import Transformer

    literal = Transformer.from_context(cursor).as_literal
    parts = [pieces[0]]
    for value, piece in zip(values, pieces[1:], strict=True):
        parts.append(b"NULL" if value is None else literal(value))
        parts.append(piece)
    return b"".join(parts)


@functools.lru_cache(maxsize=256)
def _pieces(text: str, encoding: str) -> tuple[bytes, ...] | None:
    """`text` split at its `%s` placeholders, encoded, `%%` made `%`; None when it holds any
    other `%` (psycopg's own placeholders, which `run_together`'s statements do not use)."""
    pieces, current = [], []
    for part in _PERCENT.split(text):
        if part == "%s":
            pieces.append("".join(current).encode(encoding))
            current = []
        elif part == "%%":
            current.append("%")
        elif part == "%":
            return None
        else:
            current.append(part)
    pieces.append("".join(current).encode(encoding))
    return tuple(pieces)


class _Prepared:
    """The statements prepared on one PostgreSQL connection for `run_together`.

    Django sends every statement as text to be parsed and planned again (client-side binding,
    and no prepared statements, for connection poolers' sake). The sync's per-repository
    statements are a few fixed texts run thousands of times: planning them alone took 2.2 s
    of the server's time in a first sync and a re-sync of 1,000 repositories, more than any
    statement's execution but the inserts of images and intervals (pg_stat_statements), and
    parsing is not counted there; as text, three of them took about 130 us more each than
    prepared (pgbench). So each text is prepared once per connection (`PREPARE`, with its
    placeholders as `$1`, `$2`, ...) and then run as `EXECUTE name(%s, ...)` in the same
    simple-query text as before: still one round trip, and the parameters are bound as they
    were. The server keeps a generic plan after five runs.

    A text is prepared the second time this connection sends it, in a round trip of its own
    inside a savepoint when a transaction is open (the first time it goes as text: a
    statement with a list of values, `IN (%s, %s, ...)`, is a different text per length, and
    one sent once would cost a round trip for nothing; one of more than
    `PREPARED_PARAMETERS` values is never prepared): a text that cannot be prepared (a
    parameter whose type the server cannot tell) is remembered and sent as it is, and the
    transaction goes on. At most `PREPARED_PER_CONNECTION` are kept, the least recently used
    deallocated. After any error in a text of `EXECUTE`s every statement is deallocated and
    prepared again (a migration can change a table under a prepared statement). Settings:
    `DATABASE_PREPARED_STATEMENTS` off (for a connection pooler in transaction mode, which
    moves sessions between clients) sends every text as before."""

    def __init__(self, raw) -> None:
        self.raw = raw  # the psycopg connection these were prepared on
        self.names: OrderedDict[str, str | None] = OrderedDict()  # SQL -> name (None: not)
        self.seen: OrderedDict[str, None] = OrderedDict()  # texts sent once, as text
        self.count = 0
        self.stale = False

    @classmethod
    def of(cls, several: bool) -> _Prepared | None:
        """This connection's record, where its cursor sends several statements at once
        (`several`: `_sends_several`) and the setting allows; else None."""
        if not (settings.DATABASE_PREPARED_STATEMENTS and several):
            return None
        state = getattr(connection, "_imagesync_prepared", None)
        if state is None or state.raw is not connection.connection:
            state = cls(connection.connection)
            connection._imagesync_prepared = state
        return state

    def executed(self, cursor, statements: Sequence[tuple[str, list]]) -> list[tuple[str, list]]:
        """`statements` as `EXECUTE`s of prepared statements, where they could be prepared."""
        new = []
        for sql, params in statements:
            if sql in self.names or len(params) > PREPARED_PARAMETERS:
                continue
            if sql in self.seen:
                new.append(sql)
            else:  # the first time: as text (a list of N values is one text per N)
                self.seen[sql] = None
                if len(self.seen) > SEEN_PER_CONNECTION:
                    self.seen.popitem(last=False)
        new = list(dict.fromkeys(new))
        if new or self.stale:
            self._prepare(cursor, new)
        sent = []
        for sql, params in statements:
            name = self.names.get(sql)
            if name is None:
                sent.append((sql, params))
                continue
            self.names.move_to_end(sql)
            arguments = f"({', '.join(['%s'] * len(params))})" if params else ""
            sent.append((f"EXECUTE {name}{arguments}", params))
        return sent

    def forget(self) -> None:
        self.names.clear()
        self.stale = True

    def _prepare(self, cursor, texts: list[str]) -> None:
        dropped = ["DEALLOCATE ALL"] if self.stale else []
        self.stale = False
        while self.names and len(self.names) + len(texts) > PREPARED_PER_CONNECTION:
            _, name = self.names.popitem(last=False)
            if name is not None:
                dropped.append(f"DEALLOCATE {name}")
        named = {}
        for sql in texts:
            self.count += 1
            named[sql] = f"imagesync_{self.count}"
        lines = [*dropped, *(f"PREPARE {named[sql]} AS {_numbered(sql)}" for sql in texts)]
        if lines and self._run(cursor, lines) is not None:
            for line in dropped:  # they may not have run: again, each alone
                self._run(cursor, [line])
            for sql in texts:  # one by one: those before the failing one exist already
                failed = self._run(cursor, [f"PREPARE {named[sql]} AS {_numbered(sql)}"])
                if failed is not None and getattr(failed, "sqlstate", "") != _DUPLICATE:
                    named[sql] = None
        self.names.update(named)

    @staticmethod
    def _run(cursor, lines: list[str]) -> Exception | None:
        """Run `lines` (no parameters) in one round trip; within a savepoint when a
        transaction is open, so that a failure leaves it as it was. The psycopg error that
        stopped them, or None."""
        savepoint = not connection.get_autocommit()
        text = "; ".join(lines)
        if savepoint:
            text = f"SAVEPOINT imagesync_prepare; {text}; RELEASE SAVEPOINT imagesync_prepare"
        try:
            cursor.execute(text)
        except DatabaseError as exc:
            if savepoint:
                cursor.execute(
                    "ROLLBACK TO SAVEPOINT imagesync_prepare; RELEASE SAVEPOINT imagesync_prepare"
                )
            return exc.__cause__ or exc
        return None


_DUPLICATE = "42P05"  # duplicate_prepared_statement: prepared by the first attempt


_EXECUTE = re.compile(r"EXECUTE (imagesync_\d+)\b")


def expanded(sql: str) -> str:
    """`sql`, a text `run_together` sent on this connection, with each `EXECUTE name` shown as
    the statement prepared under that name (for tests, and for reading a query log)."""
    state = getattr(connection, "_imagesync_prepared", None)
    if state is None:
        return sql
    texts = {name: text for text, name in state.names.items() if name}
    return _EXECUTE.sub(lambda match: texts.get(match.group(1), match.group()), sql)


def _numbered(sql: str) -> str:
    """A statement of Django's (`%s` placeholders, `%%` for a percent sign) as `PREPARE` takes
    it: `$1`, `$2`, ... and `%`."""
    number = 0

    def replace(match: re.Match) -> str:
        nonlocal number
        if match.group() == "%%":
            return "%"
        number += 1
        return f"${number}"

    return _PLACEHOLDER.sub(replace, sql)


def _sends_several(cursor) -> bool:
    """Whether this cursor sends a text of several statements at once (psycopg 3's cursor with
    client-side binding: the simple query protocol)."""
    if connection.vendor != "postgresql":
        return False
    import psycopg

    return isinstance(getattr(cursor, "cursor", None), psycopg.ClientCursor)


def _commits_on_exit() -> bool:
    """Whether the transaction is the outermost atomic block's own, which commits it when it
    ends (not a savepoint, nor a test's transaction, nor one the caller manages)."""
    blocks = connection.atomic_blocks
    return (
        len(blocks) == 1
        and not getattr(blocks[0], "_from_testcase", False)
        and connection.commit_on_exit
        and not connection.needs_rollback
    )


def moment(value: datetime) -> Any:
    """A time as a `where` parameter of `update` or a plain query takes it."""
    return connection.ops.adapt_datetimefield_value(value)


@functools.cache
def _select_statement(
    model: type[models.Model],
    names: tuple[str, ...],
    where: str,
    order: str,
    limit: int | None,
    vendor: str,
) -> tuple[str, tuple[models.Field, ...]]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = tuple(meta.get_field(name) for name in names)
    columns = ", ".join(quote(field.column) for field in fields)
    sql = f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {where}"
    if order:
        sql += f" ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, fields


def select_rows(
    model: type[models.Model],
    names: Sequence[str],
    where: str,
    where_params: Sequence = (),
    *,
    order: str = "",
    limit: int | None = None,
) -> list[tuple]:
    """The values of the fields `names` of the rows of `model` matching `where` (SQL over the
    table's columns, as for `update`), in `order` (SQL too, e.g. a column's name), each value
    as `QuerySet.values_list` gives it: through the backend's and the field's converters
    (aware times, JSON, booleans), as Django's compiler applies them.

    For the sync's per-repository reads: `values_list` builds and compiles its query on every
    call, which cost an unchanged re-sync more CPU than reading and converting the rows (py-spy,
    1,000 repositories x 10 tags on SQLite: reading the stored images was a fifth of it)."""
    sql, fields = _select_statement(model, tuple(names), where, order, limit, connection.vendor)
    return _converted(fields, run_together([(sql, list(where_params))])[0])


def select_statement(
    model: type[models.Model],
    names: Sequence[str],
    where: str,
    where_params: Sequence = (),
    *,
    order: str = "",
) -> tuple[str, list]:
    """`select_rows`' statement, to run with others (`run_together`); `converted_rows` then
    gives its rows as `select_rows` would."""
    sql, _ = _select_statement(model, tuple(names), where, order, None, connection.vendor)
    return sql, list(where_params)


def converted_rows(
    model: type[models.Model], names: Sequence[str], rows: list, consume: bool = False
) -> list[tuple]:
    """Rows of `select_statement(model, names, ...)` as `select_rows` gives them. `consume`:
    each row of `rows` is dropped (set to None) once converted, so that a repository's
    100,000 stored rows are not held twice, as read and as converted."""
    fields = tuple(model._meta.get_field(name) for name in names)
    return _converted(fields, rows, consume)


def _converted(fields: Sequence[models.Field], rows: list, consume: bool = False) -> list[tuple]:
    database = connections[DEFAULT_DB_ALIAS]
    converters = []
    for index, field in enumerate(fields):
        column = field.cached_col  # the Col the compiler converts a plain column through
        found = database.ops.get_db_converters(column) + column.get_db_converters(database)
        if found:
            converters.append((index, found, column))
    if not converters and not consume:
        return [tuple(row) for row in rows]
    converted = []
    for number, row in enumerate(rows):
        values = list(row)
        for index, found, column in converters:
            value = values[index]
            for convert in found:
                value = convert(value, column, database)
            values[index] = value
        converted.append(tuple(values))
        if consume:
            rows[number] = None
    return converted
