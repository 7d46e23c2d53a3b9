"""Registry events benchmark: push-to-visible latency and receiver throughput.

The console runs as bin/run runs it -- gunicorn with deploy/gunicorn.conf.py and one django-q2
worker (`bin/worker`, i.e. `manage.py qcluster`) -- on a throw-away database: a SQLite file with
the ORM broker (the embedded default), or PostgreSQL (a dedicated database, re-created) with
Redis (`--database postgres`). A real Distribution registry (Debian `docker-registry`) is
configured with a `notifications:` block pointing at the console's receiver URL.

1. Latency: `--pushes` times, push a new tag to one of `--repositories` repositories (round
   robin) and poll the database until the image is in the inventory (what Image View shows);
   p50/p95/max of push end -> visible. A refresh re-lists the whole repository (one manifest
   HEAD per known tag, each reported back by Distribution as a pull event), so the figure
   grows with the tags per repository: `--repositories 1` ends with 100 tags in one.
   It is the registry's delivery + the receiver + django-q2's broker poll (ORM: Q_CLUSTER poll,
   0.2 s by default; Redis: a blocking pop) + the coalescing window
   (REGISTRY_EVENTS_COALESCE_MS) + one re-list and reconcile.
2. Throughput: `--clients` threads with keep-alive connections POST distinct one-event
   Distribution envelopes (all naming one repository, as a burst would) for `--seconds`, first
   to a baseline -- a bare Django view answering 204, served by the same gunicorn command with
   the same middleware -- then to the receiver; accepted per second, p50/p95, and the share
   answered within 50 ms, with the ratio receiver / baseline. The two runs alternate
   `--rounds` times so both see the same background load.

Usage (from the repository root):

    .venv/bin/python bench/bench_events.py --database sqlite [--pushes 100] [--seconds 10]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python bench/bench_events.py --database postgres

The machine's load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.registry_events import distribution_envelope  # noqa: E402
from tests.support.registry_fixtures import (  # noqa: E402
    free_port,
    notifications_block,
    start_registry,
    stop_registry,
)
from tests.support.registry_seed import push_image  # noqa: E402

BASELINE_SETTINGS = """
from console.settings import *  # noqa: F403
ROOT_URLCONF = "bench_events_baseline_urls"
"""
BASELINE_URLS = """
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
@login_not_required
def nothing(request):
    request.read()
    return HttpResponse(status=204)


urlpatterns = [path("baseline/", nothing)]
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--database-name", default="imagesync_bench_events")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")
    )
    parser.add_argument("--pushes", type=int, default=100)
    parser.add_argument(
        "--repositories",
        type=int,
        default=10,
        help="pushes go round robin to this many repositories (a refresh re-lists the whole "
        "repository: its cost grows with the repository's tags)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each throughput slice")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--coalesce-ms", type=int, default=1000)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    return parser.parse_args()


def environment(args, work: Path) -> dict:
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "PYTHONPATH": f"{ROOT}:{work}",
        "IMAGESYNC_VAR_DIR": str(work / "var"),
        "SECRET_KEY": "events-bench-" + "x" * 40,
        "DEBUG": "false",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "REGISTRY_EVENTS_COALESCE_MS": str(args.coalesce_ms),
        "REGISTRY_EVENTS_PER_MINUTE": "100000000",
        "Q_WORKERS": "2",
    }
    if args.database == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{work / 'db.sqlite3'}"
        return env
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("--database postgres needs DATABASE_URL=postgres://...")
    import psycopg

    parts = urlsplit(args.database_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database_name}"')
    env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{args.database_name}"))
    env["REDIS_URL"] = args.redis_url
    return env


def django(env: dict, code: str) -> dict:
    script = "import django, json\ndjango.setup()\n" + textwrap.dedent(code)
    script += "\nprint('@@' + json.dumps(result))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"setup step failed:\n{done.stderr[-3000:]}")
    return json.loads([x for x in done.stdout.splitlines() if x.startswith("@@")][-1][2:])


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(25)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


def gunicorn(env: dict, port: int, log: Path) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--config",
        str(ROOT / "deploy" / "gunicorn.conf.py"),
    ]
    server = start(command, {**env, "BIND": f"127.0.0.1:{port}"}, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/login/")
            if conn.getresponse().status in (200, 404):
                return server
        except OSError:
            pass
        time.sleep(0.3)
    stop(server)
    raise SystemExit(f"gunicorn did not start; see {log}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else 0.0


class Visible:
    """Polls the inventory database for one tag (a direct connection: no Django per poll)."""

    def __init__(self, env: dict) -> None:
        url = env["DATABASE_URL"]
        self.sql = (
            "SELECT 1 FROM imagesync_image i JOIN imagesync_repository r "
            "ON r.id = i.repository_id WHERE r.path = {p} AND i.tag = {p}"
        )
        if url.startswith("sqlite"):
            import sqlite3

            self.conn = sqlite3.connect(url.split("sqlite:///", 1)[1], timeout=30)
            self.sql = self.sql.format(p="?")
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
            self.sql = self.sql.format(p="%s")

    def has(self, path: str, tag: str) -> bool:
        return self.conn.execute(self.sql, (path, tag)).fetchone() is not None


def latency(args, env, reg, visible: Visible) -> dict:
    figures = []
    for i in range(args.pushes):
        tag, path = f"v{i}", f"bench/app{i % args.repositories}"
        push_image(reg, path, tag, created=f"2025-01-01T00:00:{i % 60:02d}Z")
        pushed = time.monotonic()
        deadline = pushed + 60
        while not visible.has(path, tag):
            if time.monotonic() > deadline:
                raise SystemExit(f"push {tag} never became visible")
            time.sleep(0.02)
        figures.append(time.monotonic() - pushed)
        time.sleep(0.2)
    return {
        "p50": percentile(figures, 0.5),
        "p95": percentile(figures, 0.95),
        "max": max(figures),
    }


def flood(port: int, path: str, headers: dict, seconds: float, clients: int) -> dict:
    """`clients` keep-alive connections POSTing distinct events for `seconds`."""
    stop_at = time.monotonic() + seconds
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop_at:
            body = distribution_envelope([("push", "bench/flood", uuid.uuid4().hex[:12])])
            started = time.monotonic()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                mine.append((response.status, time.monotonic() - started))
            except (OSError, http.client.HTTPException):
                mine.append((0, time.monotonic() - started))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    accepted = [took for status, took in results if 200 <= status < 300]
    return {
        "requests": len(results),
        "accepted": len(accepted),
        "errors": len(results) - len(accepted),
        "per_second": len(accepted) / elapsed,
        "p50_ms": 1000 * percentile(accepted, 0.5),
        "p95_ms": 1000 * percentile(accepted, 0.95),
        "under_50ms": sum(1 for t in accepted if t < 0.05) / max(1, len(accepted)),
    }


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="imagesync-bench-events-"))
    (work / "bench_events_baseline_settings.py").write_text(BASELINE_SETTINGS)
    (work / "bench_events_baseline_urls.py").write_text(BASELINE_URLS)
    env = environment(args, work)
    print(f"database: {args.database}; load average {os.getloadavg()}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = free_port()
    reg = None
    processes: list[subprocess.Popen] = []
    try:
        setup = django(
            env,
            """
            from imagesync.events import EventReceiver
            from imagesync.models import Project, Registry
            project = Project.objects.create(name="bench")
            registry = Registry.objects.create(
                project=project, kind="other", name="distribution",
                endpoint="http://127.0.0.1:1", allow_insecure_http=True,
            )
            receiver = EventReceiver.of(registry)
            result = {"secret": receiver.enable(), "path": receiver.path(), "id": registry.pk}
            """,
        )
        url = f"http://127.0.0.1:{port}{setup['path']}"
        # An open registry, as bench_connectors.py explains: Distribution checks a bcrypt hash
        # on every request with basic auth, which a production registry's tokens do not cost.
        reg = start_registry(
            work / "registry",
            auth="none",
            notifications=notifications_block(url, f"Bearer {setup['secret']}"),
        )
        django(
            env,
            f"""
            from imagesync.models import Registry
            registry = Registry.objects.get(pk={setup["id"]})
            registry.endpoint, registry.username = {reg.url!r}, {reg.username!r}
            registry.set_secret({reg.password!r})
            registry.save()
            result = True
            """,
        )
        push_image(reg, "bench/flood", "1")  # the throughput burst's repository exists
        processes.append(gunicorn(env, port, work / "web.log"))
        worker = [sys.executable, str(ROOT / "bin" / "worker")]
        processes.append(start(worker, env, work / "worker.log"))
        time.sleep(3)
        if not args.skip_latency:
            figures = latency(args, env, reg, Visible(env))
            print(
                f"push -> visible over {args.pushes} pushes to {args.repositories} "
                f"repositories: p50 {figures['p50']:.2f} s, "
                f"p95 {figures['p95']:.2f} s, max {figures['max']:.2f} s "
                f"(coalescing window {args.coalesce_ms} ms); load average {os.getloadavg()}"
            )
        if not args.skip_throughput:
            throughput(args, env, work, setup, port)
    finally:
        for process in processes:
            stop(process)
        if reg is not None:
            stop_registry(reg)
    return 0


def throughput(args, env, work, setup, port) -> None:
    base_port = free_port()
    baseline_env = {**env, "DJANGO_SETTINGS_MODULE": "bench_events_baseline_settings"}
    baseline = gunicorn(baseline_env, base_port, work / "baseline.log")
    auth = {"Authorization": f"Bearer {setup['secret']}", "Content-Type": "application/json"}
    runs: dict[str, list[dict]] = {"baseline": [], "receiver": []}
    try:
        for _ in range(args.rounds):
            runs["baseline"].append(
                flood(base_port, "/baseline/", auth, args.seconds, args.clients)
            )
            runs["receiver"].append(flood(port, setup["path"], auth, args.seconds, args.clients))
    finally:
        stop(baseline)
    for name, results in runs.items():
        total = sum(r["accepted"] for r in results)
        rate = sum(r["per_second"] for r in results) / len(results)
        errors = sum(r["errors"] for r in results)
        under = sum(r["under_50ms"] * r["accepted"] for r in results) / max(1, total)
        p95 = max(r["p95_ms"] for r in results)
        p50 = sorted(r["p50_ms"] for r in results)[len(results) // 2]
        print(
            f"{name:9s}: {rate:7.1f} accepted/s, p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
            f"{100 * under:.1f}% under 50 ms, {errors} errors ({total} requests accepted)"
        )
    ratio = (sum(r["per_second"] for r in runs["receiver"])) / max(
        1e-9, sum(r["per_second"] for r in runs["baseline"])
    )
    print(f"receiver / baseline throughput: {ratio:.2f}; load average {os.getloadavg()}")


if __name__ == "__main__":
    raise SystemExit(main())
