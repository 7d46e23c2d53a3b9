"""imagesync.bulk: rows written by plain SQL read back exactly as the ORM writes them (time
zones, JSON, NULLs, text a query could mistake for syntax), on SQLite and PostgreSQL, and the
reconcile that uses it stores a re-pushed repository exactly, with its history."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from imagesync.bulk import (
    BATCH,
    _bound,
    expanded,
    insert_rows,
    run_together,
    select_rows,
    update_returning,
    update_rows,
    update_statement,
)
from imagesync.history import Change, ImageInterval
from imagesync.models import Image, Registry, SyncTask
from imagesync.registries.base import ImageInfo, Listing
from tests.support.factories import make_image, make_repository

pytestmark = pytest.mark.django_db

AWKWARD = ["", "NULL", "null", "a'b", 'q"uote', "back\\slash", "{brace},", "é中 ", "%s", "?"]
FIELDS = ["digest", "media_type", "size", "platforms", "multi_arch", "image_created_at"]


@pytest.fixture
def repository(project):
    registry = Registry.objects.create(
        project=project, kind="other", name="r", endpoint="https://r.example.com"
    )
    return make_repository(registry, "team/app")


PREPARING = ("SAVEPOINT ", "PREPARE ", "RELEASE SAVEPOINT ", "ROLLBACK TO ", "DEALLOCATE ")


def statements_sent(queries: CaptureQueriesContext) -> list[str]:
    """Each statement of the captured texts that ran, as prepared where it was sent as
    `EXECUTE` (preparing one runs nothing: its round trip is left out)."""
    return [
        statement.strip()
        for query in queries.captured_queries
        for statement in expanded(query["sql"]).split("; ")
        if not statement.strip().startswith(PREPARING)
    ]


def values(index: int) -> list:
    zone = ZoneInfo("Asia/Shanghai") if index % 2 else dt.UTC
    return [
        f"sha256:{index:064x}",
        AWKWARD[index % len(AWKWARD)],
        None if index % 3 == 0 else 2**40 + index,
        [] if index % 4 == 0 else [AWKWARD[index % len(AWKWARD)], "linux/arm64/v8"],
        index % 2 == 0,
        None if index % 5 == 0 else dt.datetime(2026, 3, 1, 12, 0, 0, index, tzinfo=zone),
    ]


def test_update_rows_writes_what_the_orm_would(repository):
    count = BATCH + 7  # more than one statement on PostgreSQL
    images = [make_image(repository, f"t{index}") for index in range(count)]
    untouched = make_image(repository, "other")
    update_rows(Image, FIELDS, [[image.pk, *values(i)] for i, image in enumerate(images)])
    for index, image in enumerate(images):
        image.refresh_from_db()
        assert [getattr(image, name) for name in FIELDS] == values(index)
    before = untouched.digest
    untouched.refresh_from_db()
    assert untouched.digest == before
    assert update_rows(Image, FIELDS, []) == 0


@pytest.mark.parametrize("returning_supported", [True, False])
def test_update_returning_gives_the_row_as_the_statement_left_it(
    project, monkeypatch, returning_supported
):
    """A repository's result adds to the task's counters and gets them back in one statement
    (or an update and a read where the database has no RETURNING): what the progress line
    shows."""
    from django.db import connection

    task = SyncTask.objects.create(project=project, repositories_total=7)
    other = SyncTask.objects.create(
        project=project, repositories_total=3, status=SyncTask.Status.SUCCEEDED
    )
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", returning_supported)
    got = [
        update_returning(
            SyncTask,
            "id = %s",
            [task.pk],
            values={"heartbeat_at": timezone.now()},
            add={"repositories_done": 1, "images_added": n},
            returning=("repositories_done", "repositories_total"),
            # run first, in the same statement on PostgreSQL (as a result's own update is)
            before=[update_statement(SyncTask, "id = %s", [other.pk], add={"images_removed": n})],
        )
        for n in (2, 5)
    ]
    assert got == [(1, 7), (2, 7)]
    task.refresh_from_db()
    other.refresh_from_db()
    assert (task.repositories_done, task.images_added, task.images_removed) == (2, 7, 0)
    assert task.heartbeat_at is not None
    assert (other.repositories_done, other.images_removed) == (0, 7)
    missing = update_returning(
        SyncTask, "id = %s", [other.pk + 100], add={"repositories_done": 1}, returning=("id",)
    )
    assert missing is None


def test_statements_run_together_in_order_each_seeing_the_one_before(project):
    """Several statements sent at once (one round trip on PostgreSQL) run in their order,
    each seeing what the one before it wrote, and each gives back its rows or the number of
    rows it changed -- parameters that look like SQL stay values."""
    from django.db import connection

    task = SyncTask.objects.create(project=project, repositories_total=7)
    table = connection.ops.quote_name(SyncTask._meta.db_table)
    results = run_together(
        [
            update_statement(SyncTask, "id = %s", [task.pk], add={"repositories_done": 2}),
            update_statement(SyncTask, "id = %s", [task.pk + 100], add={"repositories_done": 1}),
            (
                f"SELECT repositories_done, repositories_total, %s FROM {table} WHERE id = %s",
                ["x'; COMMIT; DELETE FROM t; --", task.pk],
            ),
        ]
    )
    assert results == [1, 0, [(2, 7, "x'; COMMIT; DELETE FROM t; --")]]
    assert SyncTask.objects.filter(pk=task.pk).exists()


def test_values_are_bound_in_the_text_as_psycopg_binds_them(project):
    """On PostgreSQL `run_together` writes the values into its one text itself (psycopg parses
    again every text of more than 50 values): byte for byte what psycopg's own binding
    gives, for every kind of value the sync sends, and `%%` stays a percent sign."""
    values = [*AWKWARD, 0, -1, 2**62, True, False, None, "%%", "%b", "$1"]
    text = "SELECT " + ", ".join(["%s"] * len(values)) + ", '100%%'"
    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        extra = [
            1.5,
            float("inf"),
            decimal.Decimal("1.10"),
            dt.datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=dt.UTC),
            dt.datetime(2026, 12, 4, 9, 2, 3, tzinfo=ZoneInfo("Asia/Shanghai")),
            dt.date(2026, 12, 4),
            b"\x00\xff'",
            ["a", "b'c"],
            Jsonb({"platforms": ["linux/amd64"], "n": 1}),
            uuid.UUID(int=15),
        ]
        wide = "SELECT " + ", ".join(["%s"] * (len(values) + len(extra))) + ", '%%'"
        with connection.cursor() as cursor:
            for sql, params in ((text, values), (wide, values + extra), ("SELECT 1", [])):
                bound = _bound(cursor.cursor, sql, params)
                assert bound == cursor.cursor.mogrify(sql, params).encode()
            # Anything but %s and %% is psycopg's to bind (or to refuse), as before.
            assert _bound(cursor.cursor, "SELECT %b", [1]) is None
            assert _bound(cursor.cursor, "SELECT %(x)s", {"x": 1}) is None
            assert _bound(cursor.cursor, "SELECT %s", [1, 2]) is None
            assert _bound(cursor.cursor, "SELECT %s % 2", [1]) is None
    [row], _ = run_together([(text, values), ("SELECT 1", [])])
    assert row == (*values, "100%")


def test_a_text_with_more_values_than_placeholders_fails_as_before(project):
    with pytest.raises(DatabaseError), transaction.atomic():
        run_together([("SELECT %s", [1, 2]), ("SELECT 1", [])])
    assert run_together([("SELECT %s + 1", [1]), ("SELECT 1", [])]) == [[(2,)], [(1,)]]


@pytest.mark.django_db(transaction=True)
def test_the_last_statements_of_a_transaction_may_commit_it_in_the_same_round_trip(project):
    """The task's row, which every worker thread adds to, is free again as soon as a
    repository's last statement returns on PostgreSQL (its COMMIT went with it) -- but only
    for a transaction its atomic block owns: inside a savepoint nothing is committed early.
    Either way the block's writes are all committed when it ends."""
    from django.db import connection, transaction

    task = SyncTask.objects.create(project=project)
    add_one = update_statement(SyncTask, "id = %s", [task.pk], add={"repositories_done": 1})

    def seen_elsewhere() -> int:  # by another connection, as another worker thread would
        seen = []

        def look():
            try:
                seen.append(SyncTask.objects.get(pk=task.pk).repositories_done)
            finally:
                connection.close()

        thread = threading.Thread(target=look)
        thread.start()
        thread.join()
        return seen[0]

    postgresql = connection.vendor == "postgresql"
    with transaction.atomic():
        with transaction.atomic():  # a savepoint: not this block's to commit
            assert run_together([add_one], commit=True) == [1]
        if postgresql:
            assert seen_elsewhere() == 0
        assert run_together([add_one], commit=True) == [1]
        if postgresql:
            assert seen_elsewhere() == 2  # committed by that round trip
            assert connection.connection.info.transaction_status == 0  # idle: nothing open
    assert seen_elsewhere() == 2
    with transaction.atomic():
        assert run_together([add_one], commit=False) == [1]
        if postgresql:
            assert seen_elsewhere() == 2  # not yet: the block commits
    assert seen_elsewhere() == 3


def test_select_rows_reads_what_values_list_reads(repository):
    """Every kind of value the sync reads back (times in any zone or none, JSON lists, NULL
    sizes, booleans, awkward text), in the order asked, only the rows matched, at most
    `limit`: the same tuples as `values_list`."""
    images = [make_image(repository, f"t{index:02d}") for index in range(23)]
    update_rows(Image, FIELDS, [[image.pk, *values(i)] for i, image in enumerate(images)])
    other = make_repository(repository.registry, "team/other")
    make_image(other, "t00")
    names = ["id", "tag", *FIELDS, "registry_updated_at", "tagged", "pull_known"]
    expected = list(
        Image.objects.filter(repository=repository).order_by("-tag").values_list(*names)
    )
    rows = select_rows(Image, names, "repository_id = %s", [repository.pk], order="tag DESC")
    assert rows == expected
    assert [row[5] for row in rows[:4]] == [values(i)[3] for i in (22, 21, 20, 19)]
    assert select_rows(Image, ["tag"], "repository_id = %s", [other.pk], limit=5) == [("t00",)]
    first = select_rows(Image, ["id"], "repository_id = %s", [repository.pk], order="id", limit=3)
    assert first == [(image.pk,) for image in images[:3]]


def test_insert_rows_keeps_the_rows_order_and_values(repository):
    project = repository.registry.project
    now = timezone.now()
    names = ["project", "registry", "repository", "registry_name", "repository_type"]
    names += ["repository_path", "namespace", "name", "tag", "time", "kind", "old_digest"]
    names += ["new_digest", "registry_pushed_at", "source", "task"]
    rows = [
        [
            project.pk,
            repository.registry_id,
            repository.pk,
            "r",
            "other",
            "team/app",
            "team",
            "app",
            AWKWARD[index % len(AWKWARD)] + str(index),
            now,
            Change.Kind.REPUSHED,
            f"sha256:{index:064x}",
            "",
            None if index % 2 else now - dt.timedelta(days=index),
            Change.Source.SYNC,
            None,
        ]
        for index in range(BATCH + 3)
    ]
    assert insert_rows(Change, names, rows) == len(rows)
    stored = list(Change.objects.order_by("id").values_list("tag", "kind", "registry_pushed_at"))
    assert stored == [(row[8], "repushed", row[13]) for row in rows]


def test_a_full_repush_is_stored_exactly_with_its_history(repository):
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def listing(generation: int) -> list[ImageInfo]:
        return [
            ImageInfo(
                tag=f"v{n}",
                digest=f"sha256:{generation:032x}{n:032x}",
                media_type="application/vnd.oci.image.manifest.v1+json",
                size=None if n == 3 else 100 + n + generation,
                platforms=("linux/amd64",) * (1 + generation % 2),
                multi_arch=bool(generation % 2),
                created=t0 + dt.timedelta(minutes=n),
                updated=t0 + dt.timedelta(minutes=n + generation),
            )
            for n in range(30)
        ]

    first = timezone.now()
    repository.reconcile(listing(0), first)
    later = first + dt.timedelta(minutes=1)
    counts = repository.reconcile(listing(1), later)
    assert (counts.updated, counts.added, counts.removed) == (30, 0, 0)
    stored = {
        row[0]: row[1:]
        for row in Image.objects.filter(repository=repository).values_list(
            "tag", "digest", "size", "platforms", "multi_arch", "registry_updated_at", "is_latest"
        )
    }
    assert stored == {
        info.tag: (
            info.digest,
            info.size,
            list(info.platforms),
            info.multi_arch,
            info.updated,
            info.tag == "v29",
        )
        for info in listing(1)
    }
    repository.refresh_from_db()
    assert repository.last_synced_at == later  # every image's "Last synced"
    changes = list(
        Change.objects.filter(time=later)
        .order_by("id")
        .values_list("tag", "kind", "old_digest", "new_digest")
    )
    old = {info.tag: info.digest for info in listing(0)}
    assert changes == [(i.tag, "repushed", old[i.tag], i.digest) for i in listing(1)]
    opened = dict(ImageInterval.objects.current().values_list("tag", "digest"))
    assert opened == {info.tag: info.digest for info in listing(1)}
    assert ImageInterval.objects.filter(valid_to=later, fork__isnull=False).count() == 30


def test_a_sha512_digest_is_stored_with_its_history(repository):
    """A registry may name a manifest by sha512 (135 characters): the inventory, its
    intervals and its changes keep it whole, from the first sync through a re-push
    (PostgreSQL refused it while the columns held 100 characters)."""
    sha512 = "sha512:" + "ab" * 64
    again = "sha512:" + "cd" * 64
    first = timezone.now()
    repository.reconcile([ImageInfo(tag="v1", digest=sha512)], first)
    repository.reconcile([ImageInfo(tag="v1", digest=again)], first + dt.timedelta(minutes=1))
    assert Image.objects.get(repository=repository).digest == again
    intervals = ImageInterval.objects.filter(repository=repository).order_by("valid_from")
    assert list(intervals.values_list("digest", flat=True)) == [sha512, again]
    changes = Change.objects.filter(repository=repository).order_by("time", "id")
    assert list(changes.values_list("kind", "old_digest", "new_digest")) == [
        ("added", "", sha512),
        ("repushed", sha512, again),
    ]


def test_an_unchanged_resync_writes_no_image_yet_shows_every_image_synced_then(repository):
    """An unchanged tag is not written at all (no row, no index entry: on PostgreSQL every
    index of a touched row got a new entry); its "Last synced" is its repository's, which the
    reconcile moves, and Image View and the API read."""
    listing = Listing(ImageInfo(tag=f"v{n}", digest=f"sha256:{n:064x}") for n in range(5))
    listing.untagged = [ImageInfo(tag="", digest=f"sha256:{99:064x}", tagged=False)]
    first = timezone.now()
    repository.reconcile(listing, first)
    later = first + dt.timedelta(minutes=5)
    with CaptureQueriesContext(connection) as queries:
        counts = repository.reconcile(listing, later)
    assert (counts.unchanged, counts.added, counts.updated, counts.removed) == (5, 0, 0, 0)
    writes = [
        sql
        for sql in statements_sent(queries)
        if '"imagesync_image"' in sql and not sql.upper().startswith("SELECT")
    ]
    assert writes == []
    images = Image.objects.filter(repository=repository).select_related("repository")
    assert {image.last_synced_at for image in images} == {later}
    assert len(images) == 6


@pytest.mark.parametrize("limit", [2000, 3], ids=["deferred", "too-many-to-defer"])
def test_a_sync_reconcile_leaves_its_writes_for_the_last_round_trip(repository, monkeypatch, limit):
    """The sync's reconcile (`deferred` given) hands its image writes and their history to
    the transaction's last round trip on PostgreSQL, where nothing reads them before; run
    there, they store exactly what an immediate reconcile stores. A listing of more than
    DEFERRED_IMAGES images writes as it goes (its statements are not held in memory)."""
    from imagesync import models

    monkeypatch.setattr(models, "DEFERRED_IMAGES", limit)
    waits = connection.vendor == "postgresql" and limit > 10

    def reconcile(listing, moment):
        deferred = []
        with CaptureQueriesContext(connection) as queries:
            counts = repository.reconcile(listing, moment, deferred=deferred)
        written = [
            sql for sql in statements_sent(queries) if sql.upper().startswith(("INSERT", "UPDATE"))
        ]
        assert bool(written) is not waits
        run_together(deferred)
        return counts

    def listing(generation: int) -> Listing:
        images = Listing(
            ImageInfo(tag=f"v{n}", digest=f"sha256:{generation}{n:063x}") for n in range(6)
        )
        images.untagged = [ImageInfo(tag="", digest=f"sha256:{90 + generation:064x}", tagged=False)]
        return images

    first = timezone.now()
    assert reconcile(listing(0), first).added == 6
    later = first + dt.timedelta(minutes=1)
    second = listing(1)[:4]  # v0..v3 re-pushed, v4 and v5 removed
    assert reconcile(second, later).updated == 4
    stored = dict(
        Image.objects.filter(repository=repository, tagged=True).values_list("tag", "digest")
    )
    assert stored == {info.tag: info.digest for info in second}
    assert not Image.objects.filter(repository=repository, tagged=False).exists()
    changes = list(
        Change.objects.filter(repository=repository)
        .order_by("time", "id")
        .values_list("kind", "tag")
    )
    assert changes == [("added", f"v{n}") for n in range(6)] + [
        *(("repushed", f"v{n}") for n in range(4)),
        ("removed", "v4"),
        ("removed", "v5"),
    ]
    opened = dict(
        ImageInterval.objects.filter(repository=repository).current().values_list("tag", "digest")
    )
    assert opened == stored
    assert ImageInterval.objects.filter(repository=repository, valid_to=later).count() == 6
    repository.refresh_from_db()
    assert (repository.image_count, repository.last_synced_at) == (4, later)


def prepared_on_server() -> set[str]:
    """The names of the statements this connection prepared, as the server lists them."""
    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'imagesync%%'")
        return {name for (name,) in cursor.fetchall()}


def prepared_here() -> dict[str, str]:
    """SQL -> name of the statements run_together says it prepared on this connection; the
    server holds exactly these."""
    state = getattr(connection, "_imagesync_prepared", None)
    names = {sql: name for sql, name in state.names.items() if name} if state else {}
    assert set(names.values()) == prepared_on_server()
    return names


def test_statements_are_prepared_once_per_connection_and_run_as_before(project):
    """On PostgreSQL each statement of `run_together` is prepared on the connection once and
    then sent as `EXECUTE` (no parsing and planning per repository); it gives what the text
    gave, and nothing changes on SQLite."""
    task = SyncTask.objects.create(project=project, repositories_total=3)
    add = update_statement(SyncTask, "id = %s", [task.pk], add={"repositories_done": 1})
    read = select_rows  # through run_together too

    with CaptureQueriesContext(connection) as queries:
        for _ in range(4):
            assert run_together([add]) == [1]
        rows = read(SyncTask, ["repositories_done", "repositories_total"], "id = %s", [task.pk])
    assert rows == [(4, 3)]
    sent = [query["sql"] for query in queries.captured_queries]
    if connection.vendor == "postgresql":
        name = prepared_here()[add[0]]
        executed = [sql for sql in sent if name in sql and "PREPARE" not in sql]
        assert executed[-3:] == [f"EXECUTE {name}(1, {task.pk})"] * 3  # from the second on
        assert sum(f"PREPARE {name} " in sql for sql in sent) <= 1  # once per connection
        assert expanded(f"EXECUTE {name}(1, 2)").startswith('UPDATE "imagesync_synctask" SET')
    else:
        assert all(sql.startswith('UPDATE "imagesync_synctask"') for sql in sent[:3])
        assert prepared_here() == {}


def test_a_statement_that_cannot_be_prepared_is_sent_as_it_is(project):
    """A statement whose parameter has no type the server could tell cannot be prepared: it
    runs as text, the statements prepared with it are kept (and no other), and the
    transaction around it goes on with what it wrote before."""
    task = SyncTask.objects.create(project=project)
    add = update_statement(SyncTask, "id = %s", [task.pk], add={"repositories_done": 1})
    fresh = update_statement(
        SyncTask, "id = %s AND repositories_total >= 0", [task.pk], add={"repositories_done": 1}
    )
    untyped = ("SELECT %s IS NULL", [None])
    with transaction.atomic():
        assert run_together([add]) == [1]
        with CaptureQueriesContext(connection) as queries:
            for _ in range(2):  # prepared the second time
                assert run_together([fresh, untyped, add]) == [1, [(True,)], 1]
            assert run_together([untyped]) == [[(True,)]]
        assert queries.captured_queries[-1]["sql"] == "SELECT NULL IS NULL"
        prepared = prepared_here()
        if connection.vendor == "postgresql":
            assert fresh[0] in prepared and untyped[0] not in prepared
    assert SyncTask.objects.get(pk=task.pk).repositories_done == 5


def test_a_statement_is_prepared_again_after_its_table_changed(project):
    """A migration can change a table under a prepared statement: the next run fails (on
    PostgreSQL), and the one after prepares it again and reads the table as it is now."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bulk_probe (a integer)")
        cursor.execute("INSERT INTO bulk_probe (a) VALUES (1)")
    read = ("SELECT * FROM bulk_probe WHERE a = %s", [1])
    assert run_together([read]) == [[(1,)]]
    assert run_together([read]) == [[(1,)]]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE bulk_probe ADD COLUMN b integer DEFAULT 2")
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            run_together([read])
    assert run_together([read]) == [[(1, 2)]]


def test_the_least_recently_used_statements_are_deallocated(project, monkeypatch):
    """A connection keeps at most PREPARED_PER_CONNECTION statements prepared: the one used
    least recently is deallocated, and prepared again when it is used again."""
    from imagesync import bulk

    monkeypatch.setattr(bulk, "PREPARED_PER_CONNECTION", 3)
    task = SyncTask.objects.create(project=project, repositories_total=9)
    fields = ["repositories_done", "repositories_total", "repositories_failed", "images_added"]
    statements = [
        update_statement(SyncTask, "id = %s", [task.pk], add={field: 1}) for field in fields
    ]
    for statement in [*statements, statements[0]]:
        assert run_together([statement, statement]) == [1, 1]  # prepared the second time
    prepared = prepared_here()
    if connection.vendor == "postgresql":
        assert len(prepared) == 3
        assert statements[1][0] not in prepared
        assert statements[0][0] in prepared
    task.refresh_from_db()
    assert (task.repositories_done, task.repositories_total) == (4, 11)
    assert (task.repositories_failed, task.images_added) == (2, 2)


def test_prepared_statements_can_be_turned_off(project, settings):
    """DATABASE_PREPARED_STATEMENTS off (behind a pooler in transaction mode): every
    statement is sent as its text."""
    settings.DATABASE_PREPARED_STATEMENTS = False
    task = SyncTask.objects.create(project=project)
    add = update_statement(SyncTask, "id = %s", [task.pk], add={"repositories_done": 1})
    with CaptureQueriesContext(connection) as queries:
        assert run_together([add]) == [1]
        assert run_together([add]) == [1]
    sent = [query["sql"] for query in queries.captured_queries]
    assert (
        sent
        == [
            f'UPDATE "imagesync_synctask" SET "repositories_done" = "repositories_done" + 1 WHERE id = {task.pk}'
        ]
        * 2
    )
    assert SyncTask.objects.get(pk=task.pk).repositories_done == 2


def test_a_text_sent_once_or_with_a_long_list_of_values_is_not_prepared(project):
    """A text is prepared the second time it is sent, never with more than
    PREPARED_PARAMETERS values (each length of an `IN` list is its own text): no round trip
    is spent preparing what is not sent again."""
    from imagesync.bulk import PREPARED_PARAMETERS

    task = SyncTask.objects.create(project=project)
    table = connection.ops.quote_name(SyncTask._meta.db_table)
    many = [task.pk] + [-n for n in range(1, PREPARED_PARAMETERS + 1)]
    listed = (f"SELECT id FROM {table} WHERE id IN ({', '.join(['%s'] * len(many))})", many)
    once = (f"SELECT id, 'once' FROM {table} WHERE id = %s", [task.pk])
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert run_together([listed]) == [[(task.pk,)]]
        assert run_together([once]) == [[(task.pk, "once")]]
    assert not any("PREPARE" in query["sql"] for query in queries.captured_queries)
    assert len(queries.captured_queries) == 4  # one round trip each
    prepared = prepared_here()
    assert listed[0] not in prepared and once[0] not in prepared
