"""Benchmark: the database writes of a re-sync in which every digest changed (issue 15).

Seeds `--images` images (`--tags` per repository) with a first sync through the sync engine
(`run_sync_task`, an in-process generated registry: no HTTP, so the database is the whole
cost), then, round after round, re-pushes every tag to a new digest and re-syncs, with
history. Each round re-syncs twice, once the old way (the images written with Django's
`bulk_update`, a CASE per row and column, and the re-pushed changes built as model instances,
as the code did before) and once the new way (the code as it is), in alternating order, and
after each re-sync checks the result exactly: every image row, the open intervals and the
task's changes against what the registry lists and what was there before.

Reported: images/s of the whole re-sync (the engine, task bookkeeping included) and of the
stores alone (`RegistryRun._store`, the transaction that stores one repository: lock, read,
compare, write the images and their history -- on PostgreSQL in the last round trip, with the
result's counters and the COMMIT; summed over the worker threads, waits included), the median
of the rounds, and the new way's ratio to the old one in the same run.
Targets: >= 3,000 images/s on PostgreSQL, >= 2,000 on SQLite.

Database: `var/bench/imagesync_bench_writes<suffix>.sqlite3`, or with DATABASE_URL pointing at
PostgreSQL, `imagesync_bench_writes<suffix>` on that server; dropped and created each run.

    .venv/bin/python bench/bench_writes.py [--images 50000] [--tags 100] [--rounds 3]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_writes.py
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB = "imagesync_bench_writes"


def configure_database(suffix: str) -> str:
    url = os.environ.get("DATABASE_URL", "")
    name = DB + suffix
    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        admin = urlunsplit(parts._replace(path="/postgres"))
        import psycopg

        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
        return f"PostgreSQL ({parts.hostname}:{parts.port or 5432}/{name})"
    path = ROOT / "var" / "bench" / f"{name}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    for extra in ("", "-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    return f"SQLite ({path.relative_to(ROOT)})"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class Generated:
    """`repos` x `tags` images; `generation` moves every digest at once (a re-push of all)."""

    max_concurrency = 8

    def __init__(self, repos: int, tags: int):
        self.repos, self.tags, self.generation = repos, tags, 0
        self.t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def list_repositories(self, types=None):
        from imagesync.registries.base import RepositoryInfo

        for index in range(self.repos):
            yield RepositoryInfo.from_path("other", f"gen/repo-{index:05d}")

    def image(self, path: str, number: int, generation: int):
        from imagesync.registries.base import ImageInfo

        seed = f"{path}:{number}:{generation}".encode()
        moment = self.t0 + timedelta(minutes=number + 10_000 * generation)
        return ImageInfo(
            tag=f"v{number}",
            digest="sha256:" + hashlib.sha256(seed).hexdigest(),
            media_type="application/vnd.oci.image.manifest.v1+json",
            size=1000 + number + generation,
            platforms=("linux/amd64",) if generation % 2 == 0 else ("linux/amd64", "linux/arm64"),
            multi_arch=generation % 2 == 1,
            created=moment - timedelta(seconds=30),
            updated=moment,
        )

    def list_images(self, repository, known=None, previous=None):
        return [self.image(repository.path, n, self.generation) for n in range(self.tags)]

    def close(self) -> None:
        pass


class StoreTimer:
    """Adds up the time spent storing listings (`RegistryRun._store`, all worker threads): the
    reconcile and the writes it leaves for the transaction's last round trip."""

    def __enter__(self):
        import threading

        from imagesync.sync.jobs import RegistryRun

        self.original, self.total, lock = RegistryRun._store, 0.0, threading.Lock()
        timer = self

        def store(run, *args, **kwargs):
            started = time.perf_counter()
            try:
                return timer.original(run, *args, **kwargs)
            finally:
                with lock:
                    timer.total += time.perf_counter() - started

        RegistryRun._store = store
        return self

    def __exit__(self, *exc) -> None:
        from imagesync.sync.jobs import RegistryRun

        RegistryRun._store = self.original


@contextlib.contextmanager
def old_way():
    """The writes as they were before: Django's bulk_update for the images, and the re-pushed
    changes built as Change instances and written by bulk_create."""
    from imagesync import history, models

    def update_images(rows, later=None):
        fields = models._IMAGE_UPDATE_FIELDS
        images = [
            models.Image(pk=pk, **dict(zip(fields, values, strict=True))) for pk, *values in rows
        ]
        models.Image.objects.bulk_update(images, fields, batch_size=models.BATCH_SIZE)

    def write_changes(recorder, changes, later=None):
        rows = []
        for kind, tag, old, new, pushed in changes:
            row = history.Change(
                time=recorder.now,
                kind=kind,
                tag=tag,
                old_digest=old,
                new_digest=new,
                registry_pushed_at=pushed,
                source=recorder.source,
                task=recorder.task,
            )
            row.identify(recorder.repository)
            rows.append(row)
        history.Change.objects.bulk_create(rows, batch_size=models.BATCH_SIZE)

    saved = models._update_images, history.HistoryRecorder._write_changes
    models._update_images = update_images
    history.HistoryRecorder._write_changes = write_changes
    try:
        yield
    finally:
        models._update_images, history.HistoryRecorder._write_changes = saved


def resync(project, source, old: bool) -> tuple[float, float, int]:
    """Re-push every tag and re-sync; (whole seconds, store seconds, task id)."""
    from imagesync.models import SyncTask
    from imagesync.tasks import run_sync_task

    source.generation += 1
    with old_way() if old else contextlib.nullcontext(), StoreTimer() as timer:
        task = SyncTask.objects.request(project)
        started = time.perf_counter()
        run_sync_task(task.pk)
        elapsed = time.perf_counter() - started
    task.refresh_from_db()
    assert task.status == "succeeded", task.failure_reason
    return elapsed, timer.total, task.pk


def check(project, source, task_id: int) -> None:
    """The stored inventory, the open intervals and the task's changes are exactly what the
    registry lists now and what it listed before."""
    from imagesync.history import Change, ImageInterval
    from imagesync.models import Image, Repository, SyncTask, aware

    want = {}
    before = {}
    for index in range(source.repos):
        path = f"gen/repo-{index:05d}"
        for number in range(source.tags):
            info = source.image(path, number, source.generation)
            want[(path, info.tag)] = (
                info.digest,
                info.media_type,
                info.size,
                list(info.platforms),
                info.multi_arch,
                aware(info.created),
                aware(info.updated),
                number == source.tags - 1,
            )
            before[(path, info.tag)] = source.image(path, number, source.generation - 1).digest
    fields = (
        "digest",
        "media_type",
        "size",
        "platforms",
        "multi_arch",
        "image_created_at",
        "registry_updated_at",
        "is_latest",
    )
    images = {
        (row[0], row[1]): tuple(row[2:])
        for row in Image.objects.filter(project=project).values_list(
            "repository__path", "tag", *fields
        )
    }
    assert images == want, "stored images differ from the listing"
    opened = {
        (row[0], row[1]): tuple(row[2:])
        for row in ImageInterval.objects.filter(project=project, valid_to__isnull=True)
        .values_list("repository_path", "tag", *fields)
        .iterator(chunk_size=5000)
    }
    assert opened == want, "open intervals differ from the listing"
    changes = {
        (row[0], row[1]): row[2:]
        for row in Change.objects.filter(task_id=task_id).values_list(
            "repository_path", "tag", "kind", "old_digest", "new_digest"
        )
    }
    assert changes == {key: ("repushed", before[key], value[0]) for key, value in want.items()}, (
        "the task's changes differ from what was re-pushed"
    )
    task = SyncTask.objects.get(pk=task_id)
    stale = Repository.objects.filter(registry__project=project, last_synced_at__lt=task.started_at)
    assert not stale.exists(), "repositories (their images) not synced by the task"


def history_share(tags: int, repeats: int) -> None:
    """One repository of `tags` tags reconciled in one thread, each time in a transaction
    rolled back (so every repetition starts from the same rows), with and without history in
    turn: a first reconcile, and one where 10% of the tags were re-pushed; the minimum of
    `repeats` each (the least disturbed by other jobs on the machine), of wall time and of CPU
    time (this process's, plus its PostgreSQL backend's)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from imagesync.history import HistoryRecorder
    from imagesync.models import Project, Registry, Repository

    source = Generated(1, tags)
    project = Project.objects.create(name="share")
    registry = Registry.objects.create(
        project=project, kind="other", name="share", endpoint="https://s.invalid"
    )
    repository = Repository.objects.create(registry=registry, type="other", path="gen/repo-00000")
    first = source.list_images(repository)
    repushed = [
        source.image(repository.path, n, 1) if n % 10 == 0 else info for n, info in enumerate(first)
    ]
    names = ("added", "restated", "removed", "write")
    saved = {name: getattr(HistoryRecorder, name) for name in names}

    backend = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]

    def cpu() -> float:
        """CPU seconds of this process and of its PostgreSQL backend (same machine): less
        moved by other jobs than wall time."""
        used = time.process_time()
        if backend is not None:
            fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return used

    def timed(history: bool, listing, seeded: bool) -> tuple[float, float]:
        for name in names:
            setattr(HistoryRecorder, name, saved[name] if history else lambda *a, **k: None)
        try:
            with transaction.atomic():
                if seeded:
                    repository.reconcile(first, timezone.now())
                started, used = time.perf_counter(), cpu()
                repository.reconcile(listing, timezone.now())
                elapsed, used = time.perf_counter() - started, cpu() - used
                transaction.set_rollback(True)
        finally:
            for name in names:
                setattr(HistoryRecorder, name, saved[name])
        return elapsed, used

    print(f"\none repository of {tags} tags, reconcile alone, min of {repeats}")
    for label, listing, seeded, limit in (
        ("first", first, False, "ratio >= 0.95"),
        ("10% re-pushed", repushed, True, "extra <= 10%"),
    ):
        times = {True: [], False: []}
        for index in range(repeats):
            for history in (True, False) if index % 2 else (False, True):
                times[history].append(timed(history, listing, seeded))
        for kind, index in (("wall", 0), ("CPU", 1)):
            without = min(t[index] for t in times[False])
            with_ = min(t[index] for t in times[True])
            print(
                f"{label:<14} {kind:<4} without {without:.3f} s, with {with_:.3f} s: ratio"
                f" {without / with_:.2f}x, extra {with_ / without - 1:+.1%} ({limit});"
                f" load {os.getloadavg()[0]:.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--tags", type=int, default=100, help="tags per repository")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db-suffix", default="", help="appended to the database's name")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--history-share",
        type=int,
        metavar="TAGS",
        help="instead: time one repository's reconcile with and without history",
    )
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.db_suffix and not args.db_suffix.replace("_", "").isalnum():
        parser.error("--db-suffix: letters, digits and _ only")
    label = configure_database(args.db_suffix)
    setup_django()
    if args.history_share:
        print(f"database: {label}; cores={os.cpu_count()}; load {os.getloadavg()[0]:.1f}")
        history_share(args.history_share, args.repeats)
        return
    from imagesync.models import Project, Registry, SyncTask
    from imagesync.tasks import run_sync_task

    repos = max(1, args.images // args.tags)
    images = repos * args.tags
    source = Generated(repos, args.tags)
    Registry.build_client = lambda registry: source
    project = Project.objects.create(name="writes")
    Registry.objects.create(project=project, kind="other", name="gen", endpoint="https://g.invalid")
    print(f"database: {label}; cores={os.cpu_count()}; load {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    task = SyncTask.objects.request(project)
    run_sync_task(task.pk)
    print(
        f"seeded {images} images ({repos} x {args.tags}) in {time.perf_counter() - started:.1f} s"
    )
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for index in range(args.rounds):
        order = (True, False) if index % 2 == 0 else (False, True)
        for old in order:
            whole, stores, task_id = resync(project, source, old)
            if args.check:
                check(project, source, task_id)
            results[old].append((whole, stores))
            print(
                f"round {index + 1} {'old' if old else 'new'}: {images / whole:7.0f} images/s"
                f" whole, {images / stores:7.0f} stores ({whole:.2f} s / {stores:.2f} s)"
                f"; load {os.getloadavg()[0]:.1f}" + ("; checked" if args.check else "")
            )
    target = 3000 if "PostgreSQL" in label else 2000
    print(f"\n{'way':<6}{'whole img/s':>13}{'store img/s':>17}  target >= {target}/s")
    rates = {}
    for old in (True, False):
        whole = images / statistics.median(r[0] for r in results[old])
        stores = images / statistics.median(r[1] for r in results[old])
        rates[old] = (whole, stores)
        verdict = "met" if whole >= target else "MISSED"
        print(f"{'old' if old else 'new':<6}{whole:>13.0f}{stores:>17.0f}  {verdict} (whole)")
    print(
        f"new / old: {rates[False][0] / rates[True][0]:.2f}x whole,"
        f" {rates[False][1] / rates[True][1]:.2f}x stores; load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
