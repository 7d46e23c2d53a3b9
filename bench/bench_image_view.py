"""Benchmark: Image View page renders with 100,000 images in one project.

Creates (once; `--reseed` to start over) a project with 100,000 images in 2,000 repositories
of all six types across five registries, then renders Image View through the Django test
Client — unfiltered, each filter, a text search, each sort in both directions, a deep page,
the largest page size, a few cases of the JSON API's image list (`API ...`, session auth) and
the CSV export — and prints the median and the 95th percentile per case. Target: every case
under 150 ms at p95. With `--explain` it also prints the query plan of the main (page) query
for a few cases, to check that indexes are used.

Database: a SQLite file var/bench/image_view.sqlite3 by default (or DATABASE_URL's SQLite file
when its path contains `bench`); when DATABASE_URL points at
PostgreSQL, a separate database `imagesync_bench` on that server (created if missing), so the
benchmark never touches the console's own data — or the URL's own database when its name
contains `bench` (e.g. `.../imagesync_bench_h1`, for runs side by side). Usage,
from the repository root:

    .venv/bin/python bench/bench_image_view.py [--images 100000] [--rounds 20] [--explain]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/imagesync .venv/bin/python bench/bench_image_view.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = "imagesync_bench"
TYPES = ("swr_private", "swr_shared", "swr_enterprise", "harbor", "jfrog", "other")


def configure_database() -> str:
    """Point DATABASE_URL at the benchmark's own database; return a label for the report."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        name = parts.path.lstrip("/")
        if "bench" not in name:
            name = BENCH_DB
        bench_url = urlunsplit(parts._replace(path=f"/{name}"))
        create_postgres_database(parts, name)
        os.environ["DATABASE_URL"] = bench_url
        return f"PostgreSQL ({parts.hostname}:{parts.port or 5432}/{name})"
    path = ROOT / "var" / "bench" / "image_view.sqlite3"
    if url.startswith("sqlite:///") and "bench" in url:
        path = Path(url.removeprefix("sqlite:///")).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    return f"SQLite ({path})"


def create_postgres_database(parts, name: str) -> None:
    import psycopg

    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(total: int, reseed: bool):
    """The benchmark project with `total` images (bulk_create), reused when already there."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from imagesync.models import Image, Project, ProjectMembership, Registry, Repository

    project = Project.objects.filter(name="bench").first()
    if (
        project is not None
        and not reseed
        and project.images.count() == total
        and project.images.filter(tagged=False).exists()  # seeded with usage data
    ):
        analyze()
        return project
    if project is not None:
        project.delete()
    started = time.perf_counter()
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username="bench-admin")
    now = datetime.now(UTC)
    with transaction.atomic():
        project = Project.objects.create(name="bench", region="cn-north-4")
        ProjectMembership.objects.get_or_create(user=user, project=project, role="admin")
        kinds = ("swr", "harbor", "jfrog", "other", "other")
        registries = [
            Registry.objects.create(
                project=project,
                kind=kind,
                name=f"registry-{n}",
                endpoint=f"https://r{n}.example.com",
            )
            for n, kind in enumerate(kinds)
        ]
        per_repository = 50
        repositories = []
        for n in range(max(1, total // per_repository)):
            namespace = f"team{n % 40:02d}"
            name = f"service-{n:05d}"
            repositories.append(
                Repository(
                    registry=registries[n % len(registries)],
                    type=TYPES[n % len(TYPES)],
                    path=f"{namespace}/{name}",
                    namespace=namespace,
                    name=name,
                    image_count=per_repository,
                    # Its images' "Last synced": spread over two days, as before (the
                    # images' own column until migration 0029).
                    last_synced_at=now - timedelta(minutes=(n * 50) % 3000),
                )
            )
        Repository.objects.bulk_create(repositories, batch_size=2000)
        repositories = list(Repository.objects.filter(registry__project=project).order_by("id"))
        batch = []
        made = 0
        for repository in repositories:
            for t in range(per_repository):
                if made >= total:
                    break
                made += 1
                multi = made % 7 == 0
                # Usage: a fifth unknown, a fifth never pulled, the rest pulled 0-499 days
                # ago; one image in 50 untagged (keyed by digest, empty tag).
                known = made % 5 != 0
                pulled_at = now - timedelta(days=made % 500) if made % 5 > 1 else None
                tagged = made % 50 != 3
                batch.append(
                    Image(
                        tagged=tagged,
                        last_pulled=pulled_at,
                        pull_known=known,
                        pull_source="harbor" if known else "",
                        pull_count=made % 1000 if known else None,
                        project=project,
                        repository=repository,
                        tag=f"v{t // 10}.{t % 10}.{made % 13}" if tagged else "",
                        digest=f"sha256:{made:064x}",
                        media_type="application/vnd.oci.image.manifest.v1+json",
                        size=(made * 7919) % (900 * 1024 * 1024),
                        platforms=["linux/amd64", "linux/arm64"] if multi else ["linux/amd64"],
                        multi_arch=multi,
                        is_latest=t == per_repository - 1,
                        image_created_at=now - timedelta(days=made % 700),
                        registry_updated_at=now - timedelta(hours=made % 5000),
                        first_seen_at=now - timedelta(days=30),
                    )
                )
                if len(batch) >= 5000:
                    Image.objects.bulk_create(batch)
                    batch = []
        if batch:
            Image.objects.bulk_create(batch)
    print(
        f"seeded {made:,} images in {len(repositories):,} repositories "
        f"in {time.perf_counter() - started:.1f} s"
    )
    analyze()
    return project


def analyze() -> None:
    """Refresh the planner's statistics, as a deployment should after large syncs (PostgreSQL's
    autovacuum does it by itself; SQLite needs ANALYZE or PRAGMA optimize). Without them
    SQLite picks the (project, ...) index for every query, since all 100,000 rows share one
    project, and scans them all."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # As autovacuum leaves a table some time after a bulk insert: hint bits set and
            # the visibility map filled, so that counts can read an index alone. Right after
            # the seed, the first reads of every page also write it (hint bits).
            cursor.execute("VACUUM ANALYZE imagesync_image")
            cursor.execute("ANALYZE")
        else:
            cursor.execute("ANALYZE")


def cases(project) -> list[tuple[str, dict]]:
    from imagesync.models import Registry

    registry = Registry.objects.filter(project=project).order_by("name").first()
    today = datetime.now(UTC).date()
    result = [
        ("unfiltered", {}),
        ("type=harbor", {"type": "harbor"}),
        ("type=swr_private+jfrog", {"type": ["swr_private", "jfrog"]}),
        ("registry", {"registry": registry.pk}),
        ("namespace=team07", {"namespace": "team07"}),
        ("image name=service-0123", {"name": "service-0123"}),
        ("tag=v3.4", {"tag": "v3.4"}),
        ("digest (short)", {"digest": f"{77777:064x}"[:12]}),
        ("multi-arch only", {"multi_arch": "on"}),
        ("latest only", {"latest": "on"}),
        ("size 100-200 MiB", {"size_min_mib": "100", "size_max_mib": "200"}),
        ("updated last 30 days", {"updated_from": (today - timedelta(days=30)).isoformat()}),
        (
            "synced range",
            {
                "synced_from": (today - timedelta(days=1)).isoformat(),
                "synced_to": today.isoformat(),
            },
        ),
        ("search q=service-01", {"q": "service-01"}),
        ("search q=nothing-matches", {"q": "nothing-matches"}),
        ("deep page (1000 of 1000, 100/page)", {"per_page": 100, "page": 1000}),
        ("middle page (500 of 1000, 100/page)", {"per_page": 100, "page": 500}),
        ("deep page, sorted by name", {"per_page": 100, "page": 900, "sort": "name"}),
        ("100 per page", {"per_page": 100}),
        # Usage (imagesync.usage)
        ("untagged", {"tagged": "untagged"}),
        ("tagged and untagged", {"tagged": "all"}),
        ("not pulled in 30 days", {"not_pulled_days": 30}),
        ("not pulled in 365 days", {"not_pulled_days": 365}),
        ("never pulled", {"pulled": "never"}),
        ("pull data unknown", {"pulled": "unknown"}),
        ("type=harbor, not pulled in 90 days", {"type": "harbor", "not_pulled_days": 90}),
        ("not pulled 90 days, deep page", {"not_pulled_days": 90, "per_page": 100, "page": 300}),
    ]
    for key in (
        "name",
        "tag",
        "namespace",
        "type",
        "registry",
        "digest",
        "size",
        "platforms",
        "created",
        "updated",
        "synced",
        "last_pulled",
    ):
        result.append((f"sort {key}", {"sort": key}))
        result.append((f"sort -{key}", {"sort": f"-{key}"}))
    return result


def api_cases(project) -> list[tuple[str, str]]:
    """The JSON API's image list (the same FilterSet and sorts as the page): (name, URL)."""
    base = f"/api/v1/projects/{project.pk}/images/"
    return [
        (f"API {name}", base + ("?" + urlencode(params, doseq=True) if params else ""))
        for name, params in (
            ("unfiltered", {}),
            ("200 per page", {"page_size": 200}),
            ("deep page (490 of 490, 200/page)", {"page_size": 200, "page": 490}),
            ("type=harbor", {"type": "harbor"}),
            ("not pulled in 90 days", {"not_pulled_days": 90}),
            ("search q=service-01", {"q": "service-01"}),
            ("sort -namespace", {"ordering": "-namespace"}),
            ("sort size", {"ordering": "size"}),
        )
    ]


def timed(client, url: str, rounds: int) -> list[float]:
    times = []
    for _ in range(2):  # warm-up: template compilation, caches
        client.get(url)
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def explain(client, url: str) -> None:
    """Print the query plan of the page query (the SELECT with LIMIT on imagesync_image)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    page_queries = [
        q["sql"]
        for q in captured.captured_queries
        if 'FROM "imagesync_image"' in q["sql"]
        and "LIMIT" in q["sql"]
        and not q["sql"].startswith("EXPLAIN")  # the filters' own plan probes
    ]
    if not page_queries:
        return
    sql = page_queries[0]
    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql)
        rows = cursor.fetchall()
    print(f"\n  plan of {url}  ({len(captured.captured_queries)} queries in the request)")
    for row in rows:
        print("   ", row[-1] if connection.vendor == "sqlite" else row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print query plans")
    parser.add_argument("--target-ms", type=float, default=150.0)
    parser.add_argument(
        "--cases",
        default="",
        help="only the cases whose label contains one of these comma-separated words (no CSV)",
    )
    args = parser.parse_args()
    wanted = [word.strip() for word in args.cases.split(",") if word.strip()]

    label = configure_database()
    setup_django()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from imagesync.middleware import SESSION_KEY

    project = seed(args.images, args.reseed)
    client = Client(SERVER_NAME="localhost")
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    session = client.session
    session[SESSION_KEY] = project.pk
    session.save()

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"Image View, {project.images.count():,} images, {label}, {args.rounds} rounds per case, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    print(f"{'case':40} {'median ms':>10} {'p95 ms':>10} {'median / unfiltered':>8}")
    worst = 0.0
    baseline = 0.0
    slow = []
    all_cases = cases(project)
    urls = [
        (name, "/images/" + ("?" + urlencode(params, doseq=True) if params else ""))
        for name, params in all_cases
    ]
    for name, url in urls + api_cases(project):
        if wanted and not any(word in name for word in wanted):
            continue
        times = timed(client, url, args.rounds)
        median, high = statistics.median(times), p95(times)
        worst = max(worst, high)
        flag = "" if high < args.target_ms else "  <-- over target"
        if flag:
            slow.append(name)
        if name == "unfiltered":
            baseline = median
        ratio = f"{median / baseline:6.2f}x" if baseline else ""
        print(f"{name:40} {median:10.1f} {high:10.1f} {ratio}{flag}")
    if not wanted:
        started = time.perf_counter()
        response = client.get("/images/export.csv?type=harbor")
        rows = sum(chunk.count(b"\n") for chunk in response.streaming_content) - 1
        print(
            f"{'CSV export type=harbor (all rows)':40}"
            f" {(time.perf_counter() - started) * 1000:10.1f}"
            f" {'':>10}  ({rows:,} rows, streamed)"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end: {load}")
    print(
        f"\nworst p95: {worst:.1f} ms (target < {args.target_ms:.0f} ms): "
        + ("OK" if not slow else "over target: " + ", ".join(slow))
    )
    if args.explain:
        for name, params in all_cases:
            if wanted and any(word in name for word in wanted):
                explain(client, "/images/?" + urlencode(params, doseq=True))
            elif not wanted and name in (
                "unfiltered",
                "type=harbor",
                "namespace=team07",
                "tag=v3.4",
                "sort name",
                "sort -size",
                "search q=service-01",
                "deep page (1000 of 1000, 100/page)",
            ):
                explain(client, "/images/?" + urlencode(params, doseq=True))


if __name__ == "__main__":
    main()
