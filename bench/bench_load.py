"""Load benchmark: concurrent Image View and Manage Task requests while a large sync writes.

Runs the scale-out stack on loopback: PostgreSQL (a dedicated database, `imagesync_load` by
default, dropped and re-created) and Redis (cache), the console served by `manage.py
runserver` (threaded WSGI) in a subprocess, and a sync writer process that keeps running full
syncs of a large inventory. The writer's registry client is a fake fast client (no HTTP), so
the database writes are as heavy as they get: every sync changes every digest, i.e. updates
every image row, and the sync engine's batched reconcile and counters run for real.

Meanwhile a thread pool of signed-in `requests` sessions drives a mix of Image View pages
(unfiltered, deep page, text search, sort + type filter, namespace filter with 100 rows),
the Manage Task list (page and the htmx live-polling fragment) and a task's detail, for a
bounded time, and the script reports throughput, p50/p95 latency per case and overall, and
the error count (must be 0; the exit status is 1 otherwise).

Usage (from the repository root; PostgreSQL and Redis on loopback):

    .venv/bin/python bench/bench_load.py [--duration 30] [--clients 6] [--repos 300]
        [--tags 100] [--database-url postgres://postgres@127.0.0.1:5432/imagesync_load]
        [--redis-url redis://127.0.0.1:6379/14]

DATABASE_URL / REDIS_URL from the environment choose the server; the database name is always
replaced by `--database-name` (default imagesync_load) so no real data is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "load-bench-password-4f2a"

FAKE_CLIENT = textwrap.dedent(
    """
    import hashlib
    from datetime import UTC, datetime, timedelta
    from imagesync.models import Registry
    from imagesync.registries.base import ImageInfo, RepositoryInfo

    BASE = datetime(2026, 1, 1, tzinfo=UTC)

    class FastClient:
        '''Serves REPOS x TAGS images; every generation changes every digest.'''
        max_concurrency = 8

        def __init__(self, repos, tags, generation):
            self.repos, self.tags, self.generation = repos, tags, generation

        def list_repositories(self, types=None):
            for i in range(self.repos):
                yield RepositoryInfo.from_path("other", f"team-{i % 20}/app-{i:04d}")

        def list_images(self, repository, known=None):
            images = []
            for t in range(self.tags):
                seed = f"{repository.path}:{t}:{self.generation}".encode()
                images.append(ImageInfo(
                    tag=f"v{t}",
                    digest="sha256:" + hashlib.sha256(seed).hexdigest(),
                    media_type="application/vnd.oci.image.manifest.v1+json",
                    size=1_000_000 + 1000 * t + self.generation,
                    platforms=("linux/amd64", "linux/arm64") if t % 5 == 0 else ("linux/amd64",),
                    multi_arch=t % 5 == 0,
                    created=BASE + timedelta(hours=t),
                    updated=BASE + timedelta(days=self.generation, minutes=t),
                ))
            return images

        def close(self):
            pass

    def use_fast_client(repos, tags, generation):
        Registry.build_client = lambda self: FastClient(repos, tags, generation)
    """
)


def database_url(base: str, name: str) -> tuple[str, str]:
    """(URL of the dedicated database, URL of the maintenance database)."""
    parts = urlsplit(base)
    return (
        urlunsplit(parts._replace(path=f"/{name}")),
        urlunsplit(parts._replace(path="/postgres")),
    )


def recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def run_django(env: dict, code: str, timeout: float = 1800) -> dict:
    script = (
        "import django, json\ndjango.setup()\n"
        + FAKE_CLIENT
        + textwrap.dedent(code)
        + "\nprint('@@' + json.dumps(result, default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(f"setup step failed:\n{done.stderr[-3000:]}")
    line = [x for x in done.stdout.splitlines() if x.startswith("@@")][-1]
    return json.loads(line[2:])


WRITER = """
import sys, time, json
from imagesync.models import SyncTask
from imagesync.tasks import run_sync_task
from imagesync.models import Project
project = Project.objects.get(name="load")
repos, tags, stop_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
generation = 1
while True:
    generation += 1
    use_fast_client(repos, tags, generation)
    task = SyncTask.objects.request(project, enqueue=False)
    started = time.monotonic()
    run_sync_task(task.pk)
    task.refresh_from_db()
    took = time.monotonic() - started
    print(json.dumps({"task": task.pk, "status": task.status, "seconds": round(took, 2),
                      "updated": task.images_updated, "added": task.images_added}), flush=True)
    import os
    if os.path.exists(stop_file):
        break
"""


def start_writer(env: dict, repos: int, tags: int, stop_file: Path) -> subprocess.Popen:
    script = "import django\ndjango.setup()\n" + FAKE_CLIENT + WRITER
    return subprocess.Popen(
        [sys.executable, "-c", script, str(repos), str(tags), str(stop_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict, port: int, log: Path) -> subprocess.Popen:
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/login/", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.3)
    server.terminate()
    raise SystemExit(f"the console did not start; see {log}")


def signed_in_session(base: str, username: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/login/", timeout=10)
    answer = session.post(
        f"{base}/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/login/"},
        allow_redirects=False,
        timeout=10,
    )
    if answer.status_code != 302:
        raise SystemExit(f"sign-in failed: HTTP {answer.status_code}")
    return session


def cases(task_id: int) -> list[tuple[str, str, dict]]:
    """(case name, path, headers) of the request mix."""
    fragment = {"HX-Request": "true"}
    return [
        ("image view", "/images/", {}),
        ("image view page 50", "/images/?page=50", {}),
        ("image view search", "/images/?q=app-01", {}),
        ("image view sort+type", "/images/?sort=-size&type=other", {}),
        ("image view namespace x100", "/images/?namespace=team-3&per_page=100", {}),
        ("image view fragment", "/images/?sort=tag&page=3", fragment),
        ("manage task", "/tasks/", {}),
        ("manage task polling", "/tasks/", fragment),
        ("task detail", f"/tasks/{task_id}/", {}),
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def drive(base: str, sessions: list[requests.Session], mix, duration: float):
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker(index: int) -> None:
        session = sessions[index]
        n = index
        while time.monotonic() < stop_at:
            name, path, headers = mix[n % len(mix)]
            n += 1
            started = time.perf_counter()
            try:
                answer = session.get(base + path, headers=headers, timeout=60)
                elapsed = time.perf_counter() - started
                problem = "" if answer.status_code == 200 else f"HTTP {answer.status_code}"
                if not problem and b"Sign in" in answer.content[:2000] and "/login" in answer.url:
                    problem = "signed out"
            except requests.RequestException as exc:
                elapsed = time.perf_counter() - started
                problem = type(exc).__name__
            with lock:
                if problem:
                    errors[name].append(problem)
                else:
                    latencies[name].append(elapsed)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        for future in [pool.submit(worker, i) for i in range(len(sessions))]:
            future.result()
    return latencies, errors, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--repos", type=int, default=300)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first measure the same load with no sync running",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--database-name", default="imagesync_load")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/14"
    )
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("bench_load needs PostgreSQL: set DATABASE_URL=postgres://...")

    db_url, admin_url = database_url(args.database_url, args.database_name)
    work = Path(tempfile.mkdtemp(prefix="imagesync-load-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "PYTHONPATH": str(ROOT),
        "IMAGESYNC_VAR_DIR": str(work / "var"),
        "DATABASE_URL": db_url,
        "REDIS_URL": args.redis_url,
        "SECRET_KEY": "load-bench-" + "x" * 40,
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "SYNC_WORKERS": "4",
        "SYNC_HEARTBEAT_INTERVAL": "5",
    }
    print(f"database {args.database_name} (re-created), cache {args.redis_url}")
    recreate_database(admin_url, args.database_name)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    seeded = run_django(
        env,
        f"""
        import time
        from django.contrib.auth.models import User
        from imagesync.models import SyncTask
    from imagesync.tasks import run_sync_task
        from imagesync.models import Image, Project, ProjectMembership, Registry
        project = Project.objects.create(name="load", region="bench-1")
        for i in range({args.clients}):
            user = User.objects.create_user(f"loader{{i}}", password={PASSWORD!r})
            ProjectMembership.objects.create(user=user, project=project, role="operator")
        Registry.objects.create(project=project, kind="other", name="bulk",
                                endpoint="https://bulk.registry.invalid")
        use_fast_client({args.repos}, {args.tags}, 1)
        task = SyncTask.objects.request(project, enqueue=False)
        started = time.monotonic()
        run_sync_task(task.pk)
        task.refresh_from_db()
        result = {{"task": task.pk, "status": task.status, "images": Image.objects.count(),
                  "seconds": time.monotonic() - started}}
        """,
    )
    print(
        f"seeded {seeded['images']:,} images by a first sync in {seeded['seconds']:.1f} s "
        f"({seeded['images'] / seeded['seconds']:,.0f} images/s), task {seeded['status']}"
    )
    assert seeded["status"] == "succeeded", seeded
    # Planner statistics as autovacuum would have them in steady state; right after a bulk
    # load of a fresh database they are missing and the type filter's join is planned badly
    # (~300 ms instead of ~15 ms per query).
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(env, port, work / "runserver.log")
    stop_file = work / "stop-writer"
    writer = None
    try:
        sessions = [signed_in_session(base, f"loader{i}") for i in range(args.clients)]
        mix = cases(seeded["task"])
        # Warm-up: one pass of every case (templates, connections), not measured.
        for _name, path, headers in mix:
            sessions[0].get(base + path, headers=headers, timeout=60)
        quiet = drive(base, sessions, mix, args.duration) if args.baseline else None
        writer = start_writer(env, args.repos, args.tags, stop_file)
        time.sleep(1.0)  # let the writer get going
        latencies, errors, elapsed = drive(base, sessions, mix, args.duration)
        stop_file.touch()
        out, err = writer.communicate(timeout=600)
    finally:
        stop_file.touch()
        if writer is not None and writer.poll() is None:
            writer.kill()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    syncs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if writer.returncode != 0:
        print(err[-3000:])

    if quiet is not None:
        report(mix, *quiet, f"{args.clients} clients, no sync running (baseline)")
    total_errors = report(
        mix,
        latencies,
        errors,
        elapsed,
        f"{args.clients} signed-in clients for {elapsed:.1f} s against runserver on PostgreSQL "
        f"+ Redis, {seeded['images']:,} images, while a sync rewrote every image",
    )
    if quiet is not None:
        total_errors += sum(len(v) for v in quiet[1].values())
    for s in syncs:
        rate = (s["updated"] + s["added"]) / s["seconds"] if s["seconds"] else 0
        print(
            f"concurrent sync task #{s['task']}: {s['status']}, {s['updated']:,} images updated, "
            f"{s['added']:,} added in {s['seconds']:.1f} s ({rate:,.0f} images/s)"
        )
    if not syncs:
        print("warning: no sync finished during the run")
    return 1 if total_errors or writer.returncode != 0 or not syncs else 0


def report(mix, latencies, errors, elapsed: float, title: str) -> int:
    """Print the table of one phase; returns its error count."""
    total_ok = sum(len(v) for v in latencies.values())
    total_errors = sum(len(v) for v in errors.values())
    every = [x for v in latencies.values() for x in v]
    print(f"\n{title}:")
    print(f"{'case':28} {'requests':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'errors':>7}")
    for name, _path, _headers in mix:
        values = latencies.get(name, [])
        print(
            f"{name:28} {len(values):9d} {percentile(values, 0.5) * 1000:8.0f} "
            f"{percentile(values, 0.95) * 1000:8.0f} {max(values or [0]) * 1000:8.0f} "
            f"{len(errors.get(name, [])):7d}"
        )
    print(
        f"{'all':28} {total_ok:9d} {percentile(every, 0.5) * 1000:8.0f} "
        f"{percentile(every, 0.95) * 1000:8.0f} {max(every or [0]) * 1000:8.0f} "
        f"{total_errors:7d}"
    )
    print(f"throughput: {total_ok / elapsed:.1f} requests/s; errors: {total_errors}")
    if errors:
        print("errors:", {k: sorted(set(v)) for k, v in errors.items()})
    return total_errors


if __name__ == "__main__":
    sys.exit(main())
