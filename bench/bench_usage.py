"""Benchmark: what reading usage (pull times, pull counts, untagged artifacts) adds to a Harbor
and an SWR Enterprise Edition sync.

Both registries send pull times in the artifact listing the sync reads anyway, so usage costs
no request; what it may cost is parsing and storing. The script times whole syncs
(`run_sync_task`: repositories listed, every artifact listing read, every image written) of R
repositories x A artifacts (one tag each) of one connection, in a fresh project per sync pair,
against two sets of answers shaped like the test fixtures (tests/support/harbor_payloads.py,
tests/fixtures/swr/*.json):

* baseline: the same answers without any pull time or pull count and without untagged
  artifacts (a registry that reports no usage);
* usage: the answers as the registries send them, with pull times and the repositories' pull
  counts, one untagged artifact per repository, and between the first sync and the re-sync a
  fifth of the pull times moved (the re-sync then writes those usage fields, as it would
  after a day of pulls).

The answers are served two ways:

* `http`: by a real HTTP server in another process on loopback, which waits `--latency-ms`
  (default 5 ms) before each answer, like a registry nearby: the ratio is what a user's sync
  costs more;
* `responses`: in-process through the `responses` library (no network, no latency): the
  database and the parsing are all there is, so this ratio is an upper bound.

Baseline and usage take turns (A B B A ...) for `--rounds` rounds, each round a first sync and
a re-sync of each; the script prints per kind, transport and sync the median time of each, the
median of the per-round ratios usage / baseline (target: at most 1.10) and their spread (min,
quartiles, max), with the load average; for the wall-clock time and for the CPU time of this
process (every thread; with SQLite the database's work is in it too), which other jobs on the
machine move much less than wall-clock time. Usage, from the repository root:

    .venv/bin/python bench/bench_usage.py [--repos 100] [--artifacts 50] [--rounds 12]
        [--latency-ms 5] [--transports http,responses] [--kinds harbor,swr]

The database is a fresh SQLite file unless DATABASE_URL is set (PostgreSQL: the projects
made are deleted at the end).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROJECT_ID = "0123456789abcdef0123456789abcdef"
INSTANCE = "5b8f1f62-0000-4a8e-9d3e-0123456789ab"
VARIANTS = ("base", "usage", "usage-moved")  # the answers of the baseline and of the usage runs
HARBOR_PAGE = 100  # Harbor's page_size maximum, which the client asks for


def setup_django(workdir: Path, migrate: bool = True) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("IMAGESYNC_VAR_DIR", str(workdir / "var"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'usage.sqlite3'}")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


# --- the answers ------------------------------------------------------------------------------


def strip_usage(item: dict) -> None:
    item.pop("pull_time", None)
    for tag in item.get("tags") or []:
        tag.pop("pull_time", None)


def harbor_artifacts(r: int, artifacts: int, variant: str) -> list[dict]:
    from tests.support import harbor_payloads as hp

    moved = variant == "usage-moved"
    items = []
    for a in range(artifacts):
        n = r * 1000 + a + 1
        pulled = f"2024-06-{1 + (a % 5 == 0 and moved):02d}T10:00:00.000Z"
        item = hp.single_artifact(n, [hp.tag(n, n, f"v{a}", "2024-05-01T08:00:00.000Z")])
        if a % 7 == 3:
            item["pull_time"] = item["tags"][0]["pull_time"] = hp.ZERO  # never pulled
        else:
            item["pull_time"] = item["tags"][0]["pull_time"] = pulled
        items.append(item)
    if variant == "base":
        for item in items:
            strip_usage(item)
    else:
        items.append(hp.single_artifact(r * 1000 + 999, []))  # untagged, pullable by digest
    return items


def swr_artifacts(r: int, artifacts: int, variant: str) -> list[dict]:
    from tests.support.swr_payloads import fixture

    template = fixture("artifact.json")
    moved = variant == "usage-moved"
    items = []
    for a in range(artifacts):
        item = copy.deepcopy(template)
        item["id"] = item["tags"][0]["artifact_id"] = r * 1000 + a + 1
        item["digest"] = "sha256:" + f"{r * 1000 + a + 1:064x}"
        item["tags"][0]["name"] = f"v{a}"
        if a % 7 == 3:
            item["pull_time"] = item["tags"][0]["pull_time"] = "0001-01-01T00:00:00Z"
        else:
            pulled = f"2024-06-{1 + (a % 5 == 0 and moved):02d}T10:00:00Z"
            item["pull_time"] = item["tags"][0]["pull_time"] = pulled
        items.append(item)
    if variant == "base":
        for item in items:
            strip_usage(item)
    else:
        lone = copy.deepcopy(template)
        lone["digest"], lone["tags"] = "sha256:" + f"{r * 1000 + 999:064x}", []
        items.append(lone)
    return items


class Answers:
    """Every answer of a Harbor and an SWR (Enterprise Edition) registry, per variant, as
    bytes built before any timing: (variant, path, page) -> (headers, body)."""

    def __init__(self, repos: int, artifacts: int):
        from tests.support import harbor_payloads as hp
        from tests.support import swr_payloads as sp

        self.pages: dict[tuple[str, str, int], tuple[dict, bytes]] = {}
        names = [f"repo{r:04d}" for r in range(repos)]
        for variant in VARIANTS:
            # Harbor: projects, repositories (with pull_count), artifacts, paged by page/size.
            self.harbor(variant, "/api/v2.0/projects", [hp.project(1, "lib")])
            repositories = []
            for r, name in enumerate(names):
                repo = hp.repository(100 + r, 1, f"lib/{name}", artifacts)
                if variant == "base":
                    repo.pop("pull_count")
                else:
                    repo["pull_count"] = 7 + r
                repositories.append(repo)
            self.harbor(variant, "/api/v2.0/projects/lib/repositories", repositories)
            for r, name in enumerate(names):
                path = f"/api/v2.0/projects/lib/repositories/{name}/artifacts"
                self.harbor(variant, path, harbor_artifacts(r, artifacts, variant))
            # SWR: no private or shared repository; one Enterprise instance.
            ee = f"/v2/{PROJECT_ID}/instances"
            self.put(variant, "/v2/manage/repos", 0, {"Content-Range": "0-0/0"}, [])
            self.put(variant, "/v2/manage/shared-repositories", 0, {"Content-Range": "0-0/0"}, [])
            self.swr(variant, ee, "instances", [sp.instance(id=INSTANCE)])
            repositories = []
            for r, name in enumerate(names):
                repo = sp.instance_repository("ns", name, id=100 + r, artifact_count=artifacts)
                if variant == "base":
                    repo.pop("pull_count")
                else:
                    repo["pull_count"] = 7 + r
                repositories.append(repo)
            self.swr(variant, f"{ee}/{INSTANCE}/repositories", "repositories", repositories)
            for r, name in enumerate(names):
                path = f"{ee}/{INSTANCE}/namespaces/ns/repositories/{name}/artifacts"
                self.swr(variant, path, "artifacts", swr_artifacts(r, artifacts, variant))

    def put(self, variant: str, path: str, page: int, headers: dict, body: object) -> None:
        data = json.dumps(body).encode()
        self.pages[variant, path, page] = ({"Content-Type": "application/json", **headers}, data)

    def harbor(self, variant: str, path: str, items: list) -> None:
        total = {"X-Total-Count": str(len(items))}
        for page in range(max(1, -(-len(items) // HARBOR_PAGE))):
            chunk = items[page * HARBOR_PAGE : (page + 1) * HARBOR_PAGE]
            self.put(variant, path, page + 1, total, chunk)

    def swr(self, variant: str, path: str, field: str, items: list) -> None:
        size = 100  # the client's default limit (and the Enterprise Edition maximum)
        for page in range(max(1, -(-len(items) // size))):
            chunk = items[page * size : (page + 1) * size]
            self.put(variant, path, page * size, {}, {field: chunk, "total": len(items)})

    def respond(self, request) -> tuple[int, dict, bytes]:
        """The `responses` callback."""
        return self.answer(request.url)

    def answer(self, url: str) -> tuple[int, dict, bytes]:
        """The answer to a GET of `url` (path /<variant>/<registry path>?query)."""
        parts = urlsplit(url)
        variant, _, path = parts.path.lstrip("/").partition("/")
        query = parse_qs(parts.query)
        if path.startswith("api/"):
            page = int(query.get("page", ["1"])[0])
        elif path.startswith("v2/manage/"):
            page = 0
        else:
            page = int(query.get("offset", ["0"])[0])
        found = self.pages.get((variant, "/" + path, page))
        if found is None:
            return 404, {"Content-Type": "application/json"}, b'{"errors": []}'
        return 200, found[0], found[1]


# --- serving ----------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """The HTTP server process: prints its port, serves until stdin closes."""
    setup_django(Path(tempfile.mkdtemp()), migrate=False)
    answers = Answers(args.repos, args.artifacts)
    delay = args.latency_ms / 1000

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            time.sleep(delay)
            status, headers, body = answers.answer(self.path)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 64

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # the parent closes it (or dies)
    server.shutdown()


class HttpRegistry:
    def __init__(self, args: argparse.Namespace):
        command = [
            sys.executable,
            __file__,
            "--serve",
            f"--repos={args.repos}",
            f"--artifacts={args.artifacts}",
            f"--latency-ms={args.latency_ms}",
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        self.base = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


# --- syncing ----------------------------------------------------------------------------------


def make_project(kind: str, endpoint: str):
    from imagesync.models import AuthorizationGrant, Project, Registry

    project = Project.objects.create(name=f"usage-{uuid.uuid4().hex[:8]}")
    options = {"project_id": PROJECT_ID} if kind == "swr" else {}
    registry = Registry(
        project=project,
        kind=kind,
        name=kind,
        endpoint=endpoint,
        username="AK" if kind == "swr" else "robot$bench",
        allow_insecure_http=True,
        options=options,
    )
    registry.set_secret("s" * 40)
    registry.save()
    if kind == "swr":
        policy = AuthorizationGrant.Policy.SWR_AUTHORIZATION
        AuthorizationGrant.objects.create(project=project, policy=policy)
    return project, registry


def timed_sync(project, registry, endpoint: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one sync: CPU is this process's, every thread's (with SQLite the
    database's work is in it too); it moves less than wall time with the machine's load."""
    from imagesync.models import SyncTask
    from imagesync.tasks import run_sync_task

    type(registry).objects.filter(pk=registry.pk).update(endpoint=endpoint)
    task = SyncTask.objects.request(project, enqueue=False)
    started, cpu = time.perf_counter(), time.process_time()
    run_sync_task(task.pk)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    task.refresh_from_db()
    if task.status != "succeeded":
        reasons = list(task.results.exclude(status="succeeded").values_list("failure_reason"))
        raise SystemExit(f"sync {task.status}: {task.failure_reason} {reasons[:3]}")
    return elapsed, cpu


def sync_pair(
    kind: str, base: str, usage: bool, expected: int, args_artifacts: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """((wall, CPU) of the first sync, (wall, CPU) of the re-sync) of a fresh project."""
    from imagesync.models import Image

    project, registry = make_project(kind, f"{base}/base")
    first_variant, again_variant = ("usage", "usage-moved") if usage else ("base", "base")
    first = timed_sync(project, registry, f"{base}/{first_variant}")
    again = timed_sync(project, registry, f"{base}/{again_variant}")
    images = Image.objects.filter(project=project)
    stored = images.count()
    untagged = expected // max(1, args_artifacts) if usage else 0  # one per repository
    assert stored == expected + untagged, (stored, expected, untagged)
    assert images.filter(tagged=True).count() == expected
    if usage:
        assert images.filter(pull_known=True).count() == stored
    else:
        assert not images.filter(pull_known=True).exists()
    project.delete()
    return first, again


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def measure(kind: str, transport: str, base: str, args, mocked=None) -> list[str]:
    expected = args.repos * args.artifacts
    sync_pair(
        kind, base, True, expected, args.artifacts
    )  # warm-up: imports, caches, first connections
    times: dict[tuple[str, str, bool], list[float]] = {}
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for usage in order:
            first, again = sync_pair(kind, base, usage, expected, args.artifacts)
            for which, (wall, cpu) in (("first sync", first), ("re-sync", again)):
                times.setdefault((which, "wall", usage), []).append(wall)
                times.setdefault((which, "cpu", usage), []).append(cpu)
    lines = []
    for which in ("first sync", "re-sync"):
        for clock in ("wall", "cpu"):
            plain, used = times[which, clock, False], times[which, clock, True]
            ratios = [u / b for u, b in zip(used, plain, strict=True)]
            q1, q3 = quartiles(ratios)
            lines.append(
                f"{kind:7} {transport:9} {which:10} {clock:4} {statistics.median(plain):8.3f} "
                f"{statistics.median(used):8.3f} {statistics.median(ratios):7.3f} "
                f"{min(ratios):6.2f} {q1:6.2f} {q3:6.2f} {max(ratios):6.2f}"
            )
            print(lines[-1], flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  (load average {load})", flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--artifacts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--transports", default="http,responses")
    parser.add_argument("--kinds", default="harbor,swr")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-usage-"))
    setup_django(workdir)
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"usage cost: {args.repos} repositories x {args.artifacts} artifacts, {engine}, "
        f"{args.rounds} alternating rounds, SYNC_WORKERS={settings.SYNC_WORKERS}, "
        f"load average {load}"
    )
    print(
        f"{'kind':7} {'transport':9} {'sync':10} {'time':4} {'base s':>8} {'usage s':>8} {'ratio':>7} "
        f"{'min':>6} {'q1':>6} {'q3':>6} {'max':>6}   (ratio: median of per-round usage/base)"
    )
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for transport in [t.strip() for t in args.transports.split(",") if t.strip()]:
        if transport == "http":
            registry = HttpRegistry(args)
            try:
                print(f"# http: a server process on {registry.base}, {args.latency_ms:g} ms/answer")
                for kind in kinds:
                    measure(kind, transport, registry.base, args)
            finally:
                registry.close()
        elif transport == "responses":
            import responses

            answers = Answers(args.repos, args.artifacts)
            base = "https://registry.bench.invalid"
            with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
                mocked.add_callback(
                    "GET", re.compile(re.escape(base) + "/.*"), callback=answers.respond
                )
                for kind in kinds:
                    measure(kind, transport, base, args)
        else:
            raise SystemExit(f"unknown transport {transport!r}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end: {load}")


if __name__ == "__main__":
    main()
