"""Load benchmark: bin/run's production server (gunicorn, deploy/gunicorn.conf.py) against
Django's development server (`manage.py runserver`), on the same data in one run, with and
without a large sync rewriting every image meanwhile.

The console runs on loopback against PostgreSQL (a dedicated database, `imagesync_load` by
default, dropped and re-created) and Redis (cache), or with `--database sqlite` on a SQLite
file (the embedded default: several gunicorn processes and the sync writer share it, which
shows that WAL mode and the busy timeout keep "database is locked" away). The inventory is
seeded by a first sync of a fake fast registry client (no HTTP), and the writer process keeps
running full syncs in which every digest changes, i.e. every image row is updated.

Each server gets the same phases, in alternating slices (`--rounds`) so that both see the
same background load: signed-in `requests` sessions drive a mix of Image View
pages (unfiltered, deep page, text search, sort + type filter, namespace filter with 100
rows, htmx fragment), Manage Task (page, live-polling fragment, a task's detail) and the API
(image list, type counts, tasks) for a bounded time, first with no sync running, then while
the writer rewrites every image. The script prints per-case p50/p95 and errors, the
throughput of each phase and the ratio gunicorn / runserver; the exit status is 1 on any
error.

Usage (from the repository root; PostgreSQL and Redis on loopback):

    .venv/bin/python bench/bench_load.py [--duration 30] [--clients 8] [--repos 1000]
        [--tags 100] [--database postgres|sqlite] [--servers runserver,gunicorn]
        [--database-url postgres://postgres@127.0.0.1:5432/postgres]
        [--redis-url redis://127.0.0.1:6379/14]

DATABASE_URL / REDIS_URL from the environment choose the server; the database name is always
replaced by `--database-name` (default imagesync_load) so no real data is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
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
sys.path.insert(0, str(ROOT))

from tests.support.processes import stat_fields  # noqa: E402

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

        def list_images(self, repository, known=None, previous=None):
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
# A generation no earlier run used (a reused database holds the last run's digests).
generation = 2 + int(time.time()) % 900_000
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


def start_server(kind: str, env: dict, port: int, log: Path, variants: dict) -> subprocess.Popen:
    """`runserver` exactly as the old bin/run started it (threaded, no reload, --insecure), or
    gunicorn exactly as bin/run starts it now (its config file, WEB_CONCURRENCY / WEB_THREADS
    from the environment: unset unless the bench's own environment sets them), or a variant:
    gunicorn with the extra command-line options of `--variant NAME=OPTIONS`."""
    if kind == "runserver":
        address = f"127.0.0.1:{port}"
        command = [sys.executable, "manage.py", "runserver", address, "--noreload", "--insecure"]
    else:
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        command = [gunicorn, "--config", str(ROOT / "deploy" / "gunicorn.conf.py")]
        command += shlex.split(variants.get(kind, ""))
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**env, "BIND": f"127.0.0.1:{port}"},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/login/", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise SystemExit(f"the console did not start; see {log}")


def stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
    except ProcessLookupError:
        pass


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """utime + stime of one process, seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def group_cpu(pgid: int) -> float:
    """CPU seconds of a server's process group (gunicorn's master and workers), the children
    that exited included (cutime/cstime of the group leader)."""
    return sum(
        sum(int(x) for x in fields[11:15]) / CLOCK_TICKS
        for _, fields in stat_fields()
        if int(fields[2]) == pgid
    )


def postgres_cpu(database: str) -> dict[int, float]:
    """pid -> CPU seconds of the live PostgreSQL backends serving `database` (compare two
    readings with backend_cpu: a backend that ends between them takes its share along)."""
    found: dict[int, float] = {}
    if not database:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
            found[int(entry.name)] = process_cpu(int(entry.name))
    return found


def backend_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the backends alive at `after` used since `before` (a new one: all of it)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


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


def cases(task_id: int, project_id: int) -> list[tuple[str, str, dict]]:
    """(case name, path, headers) of the request mix."""
    fragment = {"HX-Request": "true"}
    api = f"/api/v1/projects/{project_id}"
    return [
        ("api images", f"{api}/images/?page_size=50", {}),
        ("api images filtered", f"{api}/images/?namespace=team-3&ordering=-size", {}),
        ("api type counts", f"{api}/images/type-counts/", {}),
        ("api tasks", f"{api}/sync-tasks/", {}),
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--servers",
        default="runserver,gunicorn",
        help="runserver, gunicorn (as bin/run) and names given by --variant, comma-separated",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OPTIONS",
        help="a gunicorn variant: bin/run's config plus these command-line options, "
        "e.g. 'sync3=--workers 3 --worker-class sync'",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the database if an earlier run seeded it with the same counts (PostgreSQL)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="slices per server and phase")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--database-name", default="imagesync_load")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/14"
    )
    return parser.parse_args()


def environment(args: argparse.Namespace, work: Path) -> tuple[dict, bool]:
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "PYTHONPATH": str(ROOT),
        "IMAGESYNC_VAR_DIR": str(work / "var"),
        "SECRET_KEY": "load-bench-" + "x" * 40,
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "SYNC_WORKERS": "4",
        "SYNC_HEARTBEAT_INTERVAL": "5",
        "API_THROTTLE_RATE": "1000000/minute",  # the clients are the load, not abusers
    }
    if args.database == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{work / 'db.sqlite3'}"
        print(f"database: SQLite file {work / 'db.sqlite3'} (WAL), cache in the database")
        return env, False
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("--database postgres needs DATABASE_URL=postgres://...")
    db_url, admin_url = database_url(args.database_url, args.database_name)
    env.update(DATABASE_URL=db_url, REDIS_URL=args.redis_url)
    if args.reuse and seeded_before(db_url) == args.repos * args.tags:
        print(f"database {args.database_name} (kept: seeded before), cache {args.redis_url}")
        return env, True
    print(f"database {args.database_name} (re-created), cache {args.redis_url}")
    recreate_database(admin_url, args.database_name)
    return env, False


def seeded_before(db_url: str) -> int:
    """Images of the project an earlier run seeded, with no sync left running (0 if none)."""
    import psycopg

    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            running = conn.execute(
                "SELECT count(*) FROM imagesync_synctask WHERE status IN ('queued', 'running')"
            ).fetchone()[0]
            images = conn.execute(
                "SELECT count(*) FROM imagesync_image i JOIN imagesync_project p "
                "ON p.id = i.project_id WHERE p.name = 'load'"
            ).fetchone()[0]
    except psycopg.Error:
        return 0
    return 0 if running else images


def reused_inventory(env: dict) -> dict:
    """What seed_inventory reports, for a database seeded by an earlier run."""
    return run_django(
        env,
        """
        from imagesync.models import Image, Project, SyncTask
        project = Project.objects.get(name="load")
        first = SyncTask.objects.filter(project=project).order_by("pk").first()
        result = {"task": first.pk, "project": project.pk, "status": first.status,
                  "images": Image.objects.filter(project=project).count(), "seconds": 0}
        """,
    )


def prepare(env: dict) -> None:
    """Migrate (a reused database too: the code may have new migrations) and collect static."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def seed_inventory(env: dict, args: argparse.Namespace) -> dict:
    seeded = run_django(
        env,
        f"""
        import time
        from django.contrib.auth.models import User
        from imagesync.models import Image, Project, ProjectMembership, Registry, SyncTask
        from imagesync.tasks import run_sync_task
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
        result = {{"task": task.pk, "project": project.pk, "status": task.status,
                  "images": Image.objects.count(), "seconds": time.monotonic() - started}}
        """,
    )
    print(
        f"seeded {seeded['images']:,} images by a first sync in {seeded['seconds']:.1f} s "
        f"({seeded['images'] / seeded['seconds']:,.0f} images/s), task {seeded['status']}"
    )
    assert seeded["status"] == "succeeded", seeded
    if args.database == "postgres":
        # Planner statistics as autovacuum would have them in steady state.
        import psycopg

        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("ANALYZE")
    return seeded


def main() -> int:
    args = parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    variants = dict(v.split("=", 1) for v in args.variant)
    unknown = set(servers) - {"runserver", "gunicorn", *variants}
    if unknown:
        raise SystemExit(f"unknown server(s) {sorted(unknown)}: name them with --variant")
    work = Path(tempfile.mkdtemp(prefix="imagesync-load-"))
    env, reused = environment(args, work)
    prepare(env)
    seeded = reused_inventory(env) if reused else seed_inventory(env, args)
    if reused:
        import psycopg

        # The earlier runs' writer left dead rows; the state autovacuum would leave.
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average before the phases: {load}; {os.cpu_count()} CPUs")
    mix = cases(seeded["task"], seeded["project"])
    running: dict[str, tuple[subprocess.Popen, str, list]] = {}
    stop_file = work / "stop-writer"
    writer = None
    phases: list[tuple[str, str, tuple]] = []
    try:
        for kind in servers:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = start_server(kind, env, port, work / f"{kind}.log", variants)
            sessions = [signed_in_session(base, f"loader{i}") for i in range(args.clients)]
            for _name, path, headers in mix:  # warm-up, not measured
                for session in sessions:
                    session.get(base + path, headers=headers, timeout=60)
            running[kind] = (server, base, sessions)
        phases += interleaved(running, mix, "no sync", args)
        writer = start_writer(env, args.repos, args.tags, stop_file)
        time.sleep(3.0)  # let the writer's sync get past its start
        phases += interleaved(running, mix, "sync", args)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"load average after the phases: {load}")
    finally:
        stop_file.touch()
        if writer is not None:
            cancel_running_syncs(env)
        for server, _base, _sessions in running.values():
            stop_server(server)
    out, err = writer.communicate(timeout=900) if writer is not None else ("", "")
    syncs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if writer is not None and writer.returncode != 0:
        print(err[-3000:])
    return summarize(args, seeded, mix, phases, syncs, writer)


def interleaved(running: dict, mix, phase: str, args) -> list[tuple[str, str, tuple]]:
    """Drive each server in turn, `--rounds` slices each, so that both see the same load from
    whatever else runs on the machine (and the same stage of the writer's sync); the slices
    of one server are merged."""
    merged: dict[str, list] = {}
    database = args.database_name if args.database == "postgres" else ""
    for _ in range(args.rounds):
        for kind, (server, base, sessions) in running.items():
            before = (
                group_cpu(server.pid),
                postgres_cpu(database),
                *machine_busy(),
                time.process_time(),
            )
            latencies, errors, elapsed = drive(base, sessions, mix, args.duration / args.rounds)
            after = (
                group_cpu(server.pid),
                postgres_cpu(database),
                *machine_busy(),
                time.process_time(),
            )
            used = [
                backend_cpu(a, b) if isinstance(a, dict) else b - a
                for a, b in zip(before, after, strict=True)
            ]
            total = merged.setdefault(kind, [defaultdict(list), defaultdict(list), 0.0, [0.0] * 5])
            for name, values in latencies.items():
                total[0][name] += values
            for name, values in errors.items():
                total[1][name] += values
            total[2] += elapsed
            total[3] = [x + y for x, y in zip(total[3], used, strict=True)]
    return [(kind, phase, tuple(total)) for kind, total in merged.items()]


def cancel_running_syncs(env: dict) -> None:
    """End the writer's sync in progress (cancel is honoured between repositories)."""
    run_django(
        env,
        """
        from imagesync.models import SyncTask
        result = [t.cancel() for t in SyncTask.objects.filter(status="running")]
        """,
    )


def summarize(args, seeded, mix, phases, syncs, writer) -> int:
    errors = 0
    throughput: dict[tuple, float] = {}
    kinds: list[str] = []
    for kind, phase, (latencies, failed, elapsed, cpu) in phases:
        if kind not in kinds:
            kinds.append(kind)
        label = "no sync running" if phase == "no sync" else "while a sync rewrote every image"
        errors += report(
            mix,
            latencies,
            failed,
            elapsed,
            f"{kind}: {args.clients} signed-in clients for {elapsed:.1f} s, {args.database}, "
            f"{seeded['images']:,} images, {label}",
        )
        done = sum(len(v) for v in latencies.values())
        every = [x for v in latencies.values() for x in v]
        throughput[kind, phase] = done / elapsed
        throughput[kind, phase, "p95"] = percentile(every, 0.95) * 1000
        server_cpu, pg_cpu, busy, total, client_cpu = cpu
        per = 1000 / max(done, 1)
        print(
            f"CPU per request: server {server_cpu * per:.0f} ms, PostgreSQL backends "
            f"{pg_cpu * per:.0f} ms, load generator {client_cpu * per:.0f} ms; cores used: "
            f"server {server_cpu / elapsed:.2f}, PostgreSQL {pg_cpu / elapsed:.2f}, generator "
            f"{client_cpu / elapsed:.2f}, whole machine {busy / elapsed:.2f} of "
            f"{total / elapsed:.0f}"
        )
    print("\nsummary (requests/s, p95 ms):")
    for phase in ("no sync", "sync"):
        row = {kind: throughput.get((kind, phase)) for kind in kinds}
        parts = [
            f"{kind} {row[kind]:.1f} req/s p95 {throughput[kind, phase, 'p95']:.0f} ms"
            for kind in row
            if row[kind] is not None
        ]
        print(f"  {phase:8} " + "; ".join(parts))
        if row.get("runserver"):
            ratios = [
                f"{kind} / runserver = {row[kind] / row['runserver']:.2f}x"
                for kind in kinds
                if kind != "runserver" and row[kind]
            ]
            if ratios:
                print(f"  {'':8} -> " + "; ".join(ratios))
    for s in syncs:
        rate = (s["updated"] + s["added"]) / s["seconds"] if s["seconds"] else 0
        print(
            f"concurrent sync task #{s['task']}: {s['status']}, {s['updated']:,} images updated, "
            f"{s['added']:,} added in {s['seconds']:.1f} s ({rate:,.0f} images/s)"
        )
    print(f"errors in all phases: {errors}")
    return 1 if errors or (writer is not None and writer.returncode != 0) else 0


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
