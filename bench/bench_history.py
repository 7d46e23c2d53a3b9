"""Benchmark: what the inventory history costs the sync, and how fast its pages are.

Two parts, each measured in the same run so that its figures are ratios, not absolutes of a
shared machine:

1. `sync`: the whole sync engine (`run_sync_task`), two projects connected to the same
   registry taking turns -- one recording history, one with the history recorder replaced by
   a no-op -- median of `--sync-rounds`: a first sync, an unchanged re-sync, and a re-sync
   after 10% of the tags were re-pushed, each round printed. Rounds alternate which project
   syncs first: an even number weighs both orders alike. Besides the ratio of the medians
   (the verdict), the median of the rounds' own ratios ("paired"). The registry is generated
   in-process by default (no HTTP: the database writes, where the history goes, are the whole
   cost -- the strictest case), or with `--http` a real Distribution registry
   (`docker-registry`, seeded through its storage), as a sync runs. Targets: first and
   unchanged re-sync with history >= 0.95x the rate without; the 10%-re-pushed re-sync's
   extra time <= 10%.
2. `pages`: a project with 100,000 current images in 2,000 repositories and 1,000,000 change
   rows (about 1,000,000 intervals) over 400 days, seeded with bulk inserts (not through
   syncs), reused between runs (`--reseed` to start over). Renders through the Django test
   Client, as a viewer: the Changes list, a tag's timeline and Image View as of a moment
   (filters, sorts, paging), p50 and p95 of `--rounds`. Targets: Changes and timeline p95 <=
   100 ms, Image View as_of p95 <= 200 ms. `--explain` prints the query plans of the as-of
   page's queries.

Database: SQLite files under var/bench/ by default; with DATABASE_URL pointing at PostgreSQL,
databases `imagesync_bench_history` (pages) and `imagesync_bench_history_sync` (sync) on that
server, created if missing; `--db-suffix S` appends S to those names. Usage, from the repository root:

    .venv/bin/python bench/bench_history.py [--part sync|pages|all] [--rounds 20] [--explain]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_history.py
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
# --serve runs another checkout's code (a `--compare` base) against this checkout's databases.
CODE_ROOT = Path(os.environ.get("BENCH_HISTORY_CODE_ROOT") or ROOT)
sys.path.insert(0, str(CODE_ROOT))

TYPES = ("swr_private", "swr_shared", "swr_enterprise", "harbor", "jfrog", "other")
PAGES_DB = "imagesync_bench_history"
SYNC_DB = "imagesync_bench_history_sync"


# --- set-up ----------------------------------------------------------------------------------


def configure_database(part: str, suffix: str = "") -> str:
    """Point DATABASE_URL at this benchmark's own database (its name + `suffix`, so that two
    people benchmarking on one machine do not share one); a label for the report."""
    url = os.environ.get("DATABASE_URL", "")
    name = (PAGES_DB if part == "pages" else SYNC_DB) + suffix
    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        admin = urlunsplit(parts._replace(path="/postgres"))
        import psycopg

        with psycopg.connect(admin, autocommit=True) as connection:
            if part == "sync":
                connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
        return f"PostgreSQL ({parts.hostname}:{parts.port or 5432}/{name})"
    path = ROOT / "var" / "bench" / f"{name}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    if part == "sync":
        path.unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    return f"SQLite ({path.relative_to(ROOT)})"


def setup_django(migrate: bool = True) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# --- part 1: the sync with and without history ------------------------------------------------


class GeneratedRegistry:
    """`repos` x `tags` generated images; `repush(fraction)` gives that share of the tags a new
    digest, as a registry would after pushes."""

    max_concurrency = 8

    def __init__(self, repos: int, tags: int):
        self.repos, self.tags = repos, tags
        self.generation: dict[tuple[int, int], int] = {}
        self.t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def repush(self, fraction: float, rng: random.Random) -> None:
        cells = [(r, t) for r in range(self.repos) for t in range(self.tags)]
        for cell in rng.sample(cells, int(len(cells) * fraction)):
            self.generation[cell] = self.generation.get(cell, 0) + 1

    def list_repositories(self, types=None):
        from imagesync.registries.base import RepositoryInfo

        for index in range(self.repos):
            yield RepositoryInfo.from_path("other", f"gen/repo-{index:05d}")

    def list_images(self, repository, known=None, previous=None):
        from imagesync.registries.base import ImageInfo

        index = int(repository.path.rsplit("-", 1)[1])
        images = []
        for number in range(self.tags):
            generation = self.generation.get((index, number), 0)
            seed = f"{repository.path}:{number}:{generation}".encode()
            moment = self.t0 + timedelta(minutes=number + 1000 * generation)
            images.append(
                ImageInfo(
                    tag=f"v{number}",
                    digest="sha256:" + hashlib.sha256(seed).hexdigest(),
                    media_type="application/vnd.oci.image.manifest.v1+json",
                    size=1000 + number,
                    platforms=("linux/amd64",),
                    created=moment,
                    updated=moment,
                )
            )
        return images

    def close(self) -> None:
        pass


class NoHistory:
    """Replaces the history recorder's methods with no-ops: the same sync without history."""

    def __enter__(self) -> None:
        from imagesync.history import HistoryRecorder

        self.saved = {name: getattr(HistoryRecorder, name) for name in self.NAMES}
        for name in self.NAMES:
            setattr(HistoryRecorder, name, lambda *args, **kwargs: None)

    def __exit__(self, *exc) -> None:
        from imagesync.history import HistoryRecorder

        for name, method in self.saved.items():
            setattr(HistoryRecorder, name, method)

    NAMES = ("added", "restated", "removed", "write")


class HttpSource:
    """A real Distribution registry (no auth) seeded with `repos` x `tags` distinct images;
    `repush` pushes new images to that share of the tags."""

    def __init__(self, repos: int, tags: int, workdir: Path):
        from tests.support.registry_fixtures import start_registry
        from tests.support.registry_seed import seed

        self.reg = start_registry(workdir, auth="none")
        self.images = seed(self.reg, repos=repos, tags=tags, prefix="bench", via="storage").images
        self.round = 0

    def repush(self, fraction: float, rng: random.Random) -> None:
        from tests.support.registry_seed import push_image_details

        self.round += 1
        cells = [(path, tag) for path, tags in self.images.items() for tag in tags]
        for path, tag in rng.sample(cells, int(len(cells) * fraction)):
            labels = {"round": str(self.round)}
            push_image_details(self.reg, path, tag, labels=labels, via="storage")

    def connect(self, project) -> None:
        from imagesync.models import Registry

        Registry.objects.create(
            project=project,
            kind="other",
            name="bench",
            endpoint=self.reg.url,
            allow_insecure_http=True,
            options={"max_concurrency": 8},
        )

    def close(self) -> None:
        from tests.support.registry_fixtures import stop_registry

        stop_registry(self.reg, remove=True)


class GeneratedSource(GeneratedRegistry):
    """The in-process registry as a source: every connection lists it."""

    def connect(self, project) -> None:
        from imagesync.models import Registry

        Registry.build_client = lambda registry: self
        Registry.objects.create(
            project=project, kind="other", name="gen", endpoint="https://g.invalid"
        )


def timed_sync(project, history: bool) -> float:
    import contextlib

    from imagesync.models import SyncTask
    from imagesync.tasks import run_sync_task

    with NoHistory() if not history else contextlib.nullcontext():
        task = SyncTask.objects.request(project)
        started = time.perf_counter()
        run_sync_task(task.pk)
        elapsed = time.perf_counter() - started
    task.refresh_from_db()
    assert task.status == "succeeded", task.failure_reason
    return elapsed


def sync_round(source, history_first: bool, seed: int) -> dict[bool, dict[str, float]]:
    """Two projects connected to the same registry, one recording history and one not, take
    turns: first sync, unchanged re-sync, and (after 10% of the tags were re-pushed) a
    re-sync; seconds each."""
    import uuid

    from imagesync.models import Project

    projects = {}
    for history in (True, False):
        projects[history] = Project.objects.create(name=f"sync-{uuid.uuid4().hex[:8]}")
        source.connect(projects[history])
    order = (True, False) if history_first else (False, True)
    times: dict[bool, dict[str, float]] = {True: {}, False: {}}
    for label in ("first", "unchanged", "repushed_10pct"):
        if label == "repushed_10pct":
            source.repush(0.10, random.Random(seed))
        for history in order:
            times[history][label] = timed_sync(projects[history], history)
    for project in projects.values():
        project.delete()
    return times


def sync_part(args) -> None:
    import tempfile

    from imagesync.history import Change

    where = "a Distribution registry over HTTP" if args.http else "an in-process registry"
    print(
        f"\n## sync: {args.repos} repositories x {args.tags} tags from {where},"
        f" {args.sync_rounds} rounds"
    )
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for index in range(args.sync_rounds):
        with tempfile.TemporaryDirectory(prefix="imagesync-bench-") as workdir:
            if args.http:
                source = HttpSource(args.repos, args.tags, Path(workdir))
            else:
                source = GeneratedSource(args.repos, args.tags)
            try:
                times = sync_round(source, index % 2 == 0, index)
            finally:
                if args.http:
                    source.close()
        for history in (True, False):
            results[history].append(times[history])
        first = "with" if index % 2 == 0 else "without"
        print(
            f"round {index + 1} ({first} history first): "
            + ", ".join(
                f"{label} {times[False][label]:.2f} / {times[True][label]:.2f} s"
                for label in times[True]
            )
            + " (without / with)"
        )
    assert Change.objects.count() == 0  # every project was deleted with its history
    images = args.repos * args.tags
    print(
        f"{'sync':<18}{'without s':>10}{'with s':>9}{'img/s without':>15}{'img/s with':>12}"
        f"{'ratio':>8}{'extra time':>12}{'paired':>9}  target"
    )
    for label, target in (("first", 0.95), ("unchanged", 0.95), ("repushed_10pct", 0.10)):
        without = statistics.median(r[label] for r in results[False])
        with_ = statistics.median(r[label] for r in results[True])
        ratio, extra = without / with_, with_ / without - 1
        # The median of each round's own ratio: the two syncs of a round ran back to back, in
        # the same conditions (the verdict stays on the medians of the times).
        pairs = list(zip(results[False], results[True], strict=True))
        if label == "repushed_10pct":
            shown = f"{statistics.median(w[label] / r[label] - 1 for r, w in pairs):>9.1%}"
        else:
            shown = f"{statistics.median(r[label] / w[label] for r, w in pairs):>8.2f}x"
        if label == "repushed_10pct":
            verdict = "ok" if extra <= target else "MISSED"
            goal = f"extra <= {target:.0%}: {verdict}"
        else:
            verdict = "ok" if ratio >= target else "MISSED"
            goal = f">= {target}x: {verdict}"
        print(
            f"{label:<18}{without:>10.2f}{with_:>9.2f}{images / without:>15.0f}"
            f"{images / with_:>12.0f}{ratio:>7.2f}x{extra:>11.1%}{shown}  {goal}"
        )


# --- part 2: the pages with 1,000,000 changes ---------------------------------------------------


REPOSITORIES = 2000
TAGS = 50
TASKS = 80  # one sync every 5 days over 400 days
REMOVED_PER_REPOSITORY = 12
REPUSHES_PER_TAG = (0, 17)  # uniform: 8.5 on average, 850,000 in all


def digest_of(*parts) -> str:
    return "sha256:" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def seed_pages(reseed: bool):
    """The pages' project, seeded once (bulk inserts) and reused."""
    from django.contrib.auth import get_user_model

    from imagesync.history import Change
    from imagesync.models import Project, ProjectMembership

    project = Project.objects.filter(name="history-bench").first()
    if project is not None and not reseed and Change.objects.filter(project=project).exists():
        return project
    if project is not None:
        project.delete()
    project = Project.objects.create(name="history-bench")
    user, _ = get_user_model().objects.get_or_create(username="history-bench-viewer")
    ProjectMembership.objects.get_or_create(user=user, project=project, role="viewer")
    started = time.perf_counter()
    _seed_rows(project)
    print(f"seeded in {time.perf_counter() - started:.0f} s")
    return project


def _seed_rows(project) -> None:
    from django.db import transaction

    from imagesync.models import Registry, Repository, SyncTask

    rng = random.Random(11)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=399)
    moments = [start + timedelta(days=5 * k, minutes=rng.randrange(60)) for k in range(TASKS)]
    with transaction.atomic():
        registries = Registry.objects.bulk_create(
            Registry(project=project, kind="other", name=f"registry-{n}", endpoint=f"https://r{n}")
            for n in range(5)
        )
        tasks = SyncTask.objects.bulk_create(
            SyncTask(
                project=project,
                status="succeeded",
                created_at=moment,
                started_at=moment,
                finished_at=moment,
                repositories_total=REPOSITORIES,
                repositories_done=REPOSITORIES,
            )
            for moment in moments
        )
        repositories = Repository.objects.bulk_create(
            Repository(
                registry=registries[index % 5],
                type=TYPES[index % len(TYPES)],
                path=f"team-{index % 40:02d}/app-{index:05d}",
                namespace=f"team-{index % 40:02d}",
                name=f"app-{index:05d}",
                image_count=TAGS,
                first_seen_at=moments[0],
                last_synced_at=moments[-1],
            )
            for index in range(REPOSITORIES)
        )
    with indexes_dropped(("imagesync_imageinterval", "imagesync_change")):
        for first in range(0, REPOSITORIES, 100):
            with transaction.atomic():
                for repository in repositories[first : first + 100]:
                    _seed_repository(project, repository, tasks, rng)
            print(f"  {first + 100} / {REPOSITORIES} repositories", end="\r", flush=True)
        print("\n  rebuilding the indexes")


class indexes_dropped:
    """Drops the tables' secondary indexes for a bulk load and builds them again after it (a
    sorted build is many times faster than 1,000,000 random inserts into a dozen B-trees)."""

    def __init__(self, tables: tuple[str, ...]):
        self.tables = tables

    def __enter__(self) -> None:
        from django.db import connection

        names = ", ".join(f"'{table}'" for table in self.tables)
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                    f" AND tbl_name IN ({names}) AND sql IS NOT NULL"
                )
            else:
                cursor.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN"
                    f" ({names}) AND indexname NOT IN (SELECT conname FROM pg_constraint)"
                )
            self.saved = cursor.fetchall()
            for name, _sql in self.saved:
                cursor.execute(f'DROP INDEX "{name}"')

    def __exit__(self, *exc) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            for _name, sql in self.saved:
                cursor.execute(sql)


def _state(repository, tag: str, generation: int, moment: datetime) -> dict:
    return {
        "digest": digest_of(repository.path, tag, generation),
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": 1_000_000
        + int(digest_of(repository.path, tag, generation)[7:15], 16) % 500_000_000,
        "platforms": ["linux/amd64"],
        "multi_arch": False,
        "is_latest": tag == "v0",
        "image_created_at": moment - timedelta(hours=1),
        "registry_updated_at": moment - timedelta(minutes=5),
    }


def _seed_repository(project, repository, tasks, rng: random.Random) -> None:
    """One repository's tags with their whole history: intervals, changes, sync results."""
    from imagesync.history import Change, ImageInterval, fork_of, record_names
    from imagesync.models import Image, SyncTaskRepository

    record_names(repository)  # as HistoryRecorder notes them with its intervals

    identity = {
        "project": project,
        "registry_id": repository.registry_id,
        "repository": repository,
        "registry_name": repository.registry.name,
        "repository_type": repository.type,
        "repository_path": repository.path,
        "namespace": repository.namespace,
        "name": repository.name,
    }
    intervals, changes, images = [], [], []
    tags = [(f"v{n}", True) for n in range(TAGS)]
    tags += [(f"old-{n}", False) for n in range(REMOVED_PER_REPOSITORY)]
    for tag, current in tags:
        added = rng.randrange(0, TASKS // 4) if current else rng.randrange(0, TASKS - 2)
        later = list(range(added + 1, TASKS))
        count = rng.randint(*REPUSHES_PER_TAG) if current else 0
        steps = [added, *sorted(rng.sample(later, min(count, len(later))))]
        removed = rng.randrange(added + 1, TASKS) if not current else None
        seen = tasks[added].finished_at
        for generation, step in enumerate(steps):
            task = tasks[step]
            end = steps[generation + 1] if generation + 1 < len(steps) else removed
            state = _state(repository, tag, generation, task.finished_at)
            intervals.append(
                ImageInterval(
                    **identity,
                    tag=tag,
                    **state,
                    first_seen_at=seen,
                    valid_from=task.finished_at,
                    valid_to=tasks[end].finished_at if end is not None else None,
                    fork=fork_of(task.finished_at, tasks[end].finished_at)
                    if end is not None
                    else None,
                    opened_by=task,
                    closed_by=tasks[end] if end is not None else None,
                )
            )
            old = digest_of(repository.path, tag, generation - 1) if generation else ""
            changes.append(
                Change(
                    **identity,
                    tag=tag,
                    time=task.finished_at,
                    kind="repushed" if generation else "added",
                    old_digest=old,
                    new_digest=state["digest"],
                    registry_pushed_at=state["registry_updated_at"],
                    task=task,
                )
            )
        if removed is not None:
            changes.append(
                Change(
                    **identity,
                    tag=tag,
                    time=tasks[removed].finished_at,
                    kind="removed",
                    old_digest=intervals[-1].digest,
                    task=tasks[removed],
                )
            )
        else:
            last = intervals[-1]
            images.append(
                Image(
                    project=project,
                    repository=repository,
                    tag=tag,
                    **_state(repository, tag, len(steps) - 1, last.valid_from),
                    first_seen_at=seen,
                )
            )
    ImageInterval.objects.bulk_create(intervals, batch_size=2000)
    Change.objects.bulk_create(changes, batch_size=2000)
    Image.objects.bulk_create(images, batch_size=2000)
    # Each repository's result finished at its own time, as in a real sync (a second apart
    # here): "Last synced" then has one value per repository, not one per task.
    lead = timedelta(seconds=REPOSITORIES - int(repository.name.rsplit("-", 1)[1]))
    SyncTaskRepository.objects.bulk_create(
        [
            SyncTaskRepository(
                task=task,
                repository=repository,
                registry_name=identity["registry_name"],
                repository_type=repository.type,
                repository_path=repository.path,
                status="finished",
                started_at=task.finished_at - lead,
                finished_at=task.finished_at - lead,
            )
            for task in tasks
        ],
        batch_size=2000,
    )


def analyze() -> None:
    """Statistics for the planners; on PostgreSQL also VACUUM, as autovacuum would after a
    bulk load: without the visibility map it sets, every index-only scan reads the table too
    (the as-of page measured 2.1 s instead of 0.15 s on a freshly seeded database)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in ("imagesync_imageinterval", "imagesync_change", "imagesync_image"):
                cursor.execute(f"VACUUM ANALYZE {table}")
        else:
            cursor.execute("ANALYZE")


def page_cases(project, only: str = "") -> list[tuple[str, str, dict]]:
    """(label, URL name, parameters) of every timed page."""
    from django.urls import NoReverseMatch, reverse

    from imagesync.models import Registry, Repository

    old = (datetime.now(UTC) - timedelta(days=200)).replace(microsecond=0).isoformat()
    recent = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0).isoformat()
    day = (datetime.now(UTC) - timedelta(days=100)).date().isoformat()
    month = (datetime.now(UTC) - timedelta(days=230)).date().isoformat()  # a month before `old`
    registry = Registry.objects.filter(project=project).order_by("pk").first()
    repository = Repository.objects.filter(registry__project=project).order_by("pk")[7]
    images = "imagesync:image-list"
    cases = [
        ("as_of 200 days ago (default sort)", images, {"as_of": old}),
        ("as_of 3 days ago", images, {"as_of": recent}),
        ("as_of a day (its end)", images, {"as_of": day}),
        ("as_of + type", images, {"as_of": old, "type": "harbor"}),
        ("as_of + registry", images, {"as_of": old, "registry": registry.pk}),
        ("as_of + search", images, {"as_of": old, "q": "app-0012"}),
        ("as_of + search, sort tag", images, {"as_of": old, "q": "app-0012", "sort": "tag"}),
        # Hex digits: a digest may hold them, so each of the moment's rows is read.
        ("as_of + search hex", images, {"as_of": old, "q": "ab12c"}),
        ("as_of + namespace", images, {"as_of": old, "namespace": "team-07"}),
        ("as_of + tag", images, {"as_of": old, "tag": "v1"}),
        ("as_of + digest prefix", images, {"as_of": old, "digest": "ab12"}),
        ("as_of + size range", images, {"as_of": old, "size_min_mib": 100, "size_max_mib": 200}),
        ("as_of + synced range", images, {"as_of": old, "synced_after": day}),
        ("as_of + synced range, matching", images, {"as_of": old, "synced_after": month}),
        ("as_of sort tag", images, {"as_of": old, "sort": "tag"}),
        ("as_of sort name", images, {"as_of": old, "sort": "name"}),
        ("as_of sort -size", images, {"as_of": old, "sort": "-size"}),
        ("as_of sort -last_synced", images, {"as_of": old, "sort": "-last_synced"}),
        ("as_of deep page", images, {"as_of": old, "page": 2000}),
        ("as_of 100 per page", images, {"as_of": old, "per_page": 100}),
        ("Changes (newest first)", "imagesync:change-list", {}),
        ("Changes kind=removed", "imagesync:change-list", {"kind": "removed"}),
        ("Changes tag", "imagesync:change-list", {"tag": "v3"}),
        ("Changes deep page", "imagesync:change-list", {"page": 20000}),
        ("Changes sort tag", "imagesync:change-list", {"sort": "tag"}),
        ("tag timeline", "imagesync:tag-history", {}),
    ]
    resolved = []
    for label, name, params in cases:
        if only and not any(word.strip() in label for word in only.split(",")):
            continue
        try:
            if name == "imagesync:tag-history":
                path = reverse(name, args=[repository.pk, "v1"])
            else:
                path = reverse(name)
        except NoReverseMatch:
            print(f"(skipped: {label}: no URL {name} in this checkout)")
            continue
        resolved.append((label, path + ("?" + urlencode(params) if params else ""), name))
    return resolved


def timed(client, url: str, rounds: int, warm: bool = True) -> list[float]:
    if warm:
        client.get(url)  # warm the caches once
    values = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(url)
        values.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        body = response.content.decode()
        assert "not valid" not in body, url
    return values


def viewer_client(project):
    """A test Client logged in as the bench's viewer, with the project chosen."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from imagesync.middleware import SESSION_KEY

    client = Client(SERVER_NAME="localhost")
    client.force_login(get_user_model().objects.get(username="history-bench-viewer"))
    session = client.session
    session[SESSION_KEY] = project.pk
    session.save()
    return client


def page_digest(client, url: str) -> str:
    """What a page shows, for comparing two checkouts' answers: the rows' cells and counts
    (the body without the parts that differ between two renders: tokens, timings)."""
    import re

    body = client.get(url).content.decode()
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", body)
    start = body.find("<table")
    rows = body[start : body.find("</table>", start)] if start >= 0 else ""
    counts = re.findall(r"\d[\d,]* (?:images|changes|rows|results)", body)
    return hashlib.sha256((rows + "|".join(counts)).encode()).hexdigest()[:16]


def serve(args) -> None:
    """`--serve`: time the URLs read from stdin (one JSON request a line: url, rounds) with
    this process's code, answering a JSON line each (the times in ms, or the page's digest)."""
    import json

    from imagesync.models import Project

    client = viewer_client(Project.objects.get(name="history-bench"))
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("digest"):
            answer = page_digest(client, request["url"])
        else:
            answer = timed(client, request["url"], request["rounds"], warm=request["warm"])
        print(json.dumps(answer), flush=True)


class Server:
    """A checkout's code timing pages in its own process (`--serve`), one request at a time.
    With `--compare`, this checkout's and the base's run alike, each in a process of its own,
    in turn, so that both see the same load and neither carries the other's objects (the
    process that ran the set-up took ~50 ms longer at each full garbage collection)."""

    def __init__(self, tree: Path, label: str):
        import subprocess

        self.label = label
        env = {**os.environ, "BENCH_HISTORY_CODE_ROOT": str(tree)}
        command = [sys.executable, __file__, "--serve", "--part", "pages"]
        self.process = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, **request):
        import json

        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def base_checkout(revision: str) -> Server:
    """`--compare REV`: the code of git revision REV (extracted under var/bench/), serving
    the same pages against the same database."""
    import subprocess

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", revision],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = ROOT / "var" / "bench" / f"base-{commit}"
    if not (tree / "manage.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return Server(tree, commit)


def compared(this: Server, base: Server, url: str, rounds: int) -> tuple[list, list]:
    """`rounds` timings of `url` by this checkout and by the base, one request each in turn
    (which goes first alternating), after one warm-up each (the page's rows and counts,
    compared: a difference is printed)."""
    if this.ask(url=url, digest=True) != base.ask(url=url, digest=True):
        print(f"  ({url}: this checkout and the base show different rows or counts)")
    new, old = [], []
    for number in range(rounds):
        first_new = number % 2 == 0
        if not first_new:
            old += base.ask(url=url, rounds=1, warm=False)
        new += this.ask(url=url, rounds=1, warm=False)
        if first_new:
            old += base.ask(url=url, rounds=1, warm=False)
    return new, old


def explain(project, moment: datetime) -> None:
    """The plans of the as-of page's queries: the page's ids, and the type counts of each
    part of the moment's intervals (imagesync.history.stabbing_parts)."""
    from django.db import connection
    from django.db.models import Count

    from imagesync.filters import ImageAsOfFilter
    from imagesync.history import STABBING_PARTS, ImageInterval

    def filterset(branch=None):
        return ImageAsOfFilter(
            {"as_of": moment.isoformat()},
            queryset=ImageInterval.objects.filter(project_id__in=[project.pk]),
            project=project,
            branch=branch,
        )

    queries = {"page ids": filterset().rows.values_list("pk", flat=True)[:20]}
    for branch in STABBING_PARTS:
        counted = filterset(branch).qs.order_by().values_list("repository_type")
        queries[f"type counts, {branch}"] = counted.annotate(n=Count("*"))
    for label, queryset in queries.items():
        print(f"\n-- {label} ({connection.vendor})")
        print(queryset.explain())


def pages_part(args) -> None:
    from imagesync.history import Change, ImageInterval
    from imagesync.models import Image

    project = seed_pages(args.reseed)
    analyze()
    counts = (
        Image.objects.filter(project=project).count(),
        Change.objects.filter(project=project).count(),
        ImageInterval.objects.filter(project=project).count(),
    )
    print(f"\n## pages: {counts[0]:,} images, {counts[1]:,} changes, {counts[2]:,} intervals")
    client = viewer_client(project)
    if args.explain:
        explain(project, datetime.now(UTC) - timedelta(days=200))
    base = base_checkout(args.compare) if args.compare else None
    this = Server(CODE_ROOT, "this checkout") if base is not None else None
    print(f"load average at start: {os.getloadavg()}")
    if base is not None:
        print(f"base: {base.label} (ms of both, one request each in turn, each in a process)")
        print(
            f"{'case':<40}{'base p50':>9}{'p50':>7}{'base p95':>9}{'p95 ms':>9}{'ratio':>7}  target"
        )
    else:
        print(f"{'case':<40}{'p50 ms':>9}{'p95 ms':>9}  target")
    missed = 0
    try:
        for label, url, name in page_cases(project, args.cases):
            target = 200 if name == "imagesync:image-list" else 100
            if base is not None:
                values, old = compared(this, base, url, args.rounds)
                medians = f"{statistics.median(old):>9.1f}{statistics.median(values):>7.1f}"
                first = f"{medians}{p95(old):>9.1f}"
            else:
                values = timed(client, url, args.rounds)
                first = f"{statistics.median(values):>9.1f}"
            high = p95(values)
            ratio = f"{high / p95(old):>7.2f}" if base is not None else ""
            verdict = "ok" if high <= target else "MISSED"
            missed += high > target
            print(f"{label:<40}{first}{high:>9.1f}{ratio}  <= {target}: {verdict}", flush=True)
    finally:
        if base is not None:
            base.close()
            this.close()
    print(f"{missed} case(s) over target; load average at end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["sync", "pages", "all"], default="all")
    parser.add_argument("--repos", type=int, default=200, help="sync part: repositories")
    parser.add_argument("--tags", type=int, default=50, help="sync part: tags per repository")
    parser.add_argument(
        "--sync-rounds",
        type=int,
        default=4,
        help="sync part: rounds; they alternate which project syncs first, so an even number"
        " gives both orders the same weight",
    )
    parser.add_argument(
        "--http", action="store_true", help="sync part: a real registry over HTTP (default: none)"
    )
    parser.add_argument("--rounds", type=int, default=20, help="pages part: timings per case")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--compare",
        metavar="REV",
        default="",
        help="pages part: also time the code of git revision REV, in turn with this checkout's",
    )
    parser.add_argument(
        "--cases", default="", help="pages part: only the cases whose label contains one of these"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--db-suffix",
        default="",
        help="appended to the databases' names (e.g. _h3: imagesync_bench_history_h3)",
    )
    args = parser.parse_args()
    if args.db_suffix and not args.db_suffix.replace("_", "").isalnum():
        parser.error("--db-suffix: letters, digits and _ only")
    parts = ["sync", "pages"] if args.part == "all" else [args.part]
    if len(parts) > 1:  # one database per process: run each part in its own
        import subprocess

        for part in parts:
            command = [sys.executable, __file__, *sys.argv[1:], "--part", part]
            subprocess.run(command, check=True)
        return
    if args.serve:  # the database is the one the parent process configured (its environment)
        setup_django(migrate=False)
        return serve(args)
    label = configure_database(parts[0], args.db_suffix)
    setup_django()
    print(f"database: {label}; cores={os.cpu_count()}")
    sync_part(args) if parts[0] == "sync" else pages_part(args)


if __name__ == "__main__":
    main()
