"""Benchmark: `manage.py sync_images --project P --wait`, the whole command a user runs (process
start included), against two plain-`requests` clients with 8 threads sharing one session.

* same-data client: catalog, tag lists, one manifest GET per tag and one config blob GET per
  config digest (none for an index) -- the data the inventory keeps;
* digests-only client: catalog, tag lists, one manifest HEAD per tag.

Each round, interleaved: same-data client, first sync (a new project: every image new),
digests-only client, unchanged re-sync of that project. The first sync is compared with the
same-data client, the re-sync with the digests-only client (targets: >= 1.0x both). After
every sync the inventory is checked against what was seeded: every seeded tag, with its digest,
and nothing else.

The registry is a local Distribution (Debian docker-registry) seeded through its storage;
`--latency-ms N` puts tests/support/counting_proxy.py in front of it, in its own process,
delaying every request and every response by N ms (N ms each way; a delay line in each
direction, so requests the command pipelines travel together, as on a network; the scripts
wait for each answer before their next request), and each round then also
prints, for each step, the requests the proxy held on average from the step's first request to
its last response, and how long that was: how well a contender keeps the registry busy, and
how much of its time is spent before the first request and after the last. The database is a
fresh SQLite file in the work directory unless DATABASE_URL is set.

    .venv/bin/python bench/bench_pace.py [--repos 1000] [--tags 10] [--rounds 3]
        [--latency-ms 0] [--threads 8] [--pipeline-depth N] [--keep DIR] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


# --- the two baseline clients --------------------------------------------------------------


def _paged(session: requests.Session, url: str, key: str) -> list[str]:
    items: list[str] = []
    params: dict | None = {"n": 1000}
    while url:
        response = session.get(url, params=params)
        response.raise_for_status()
        items += response.json().get(key) or []
        link = response.links.get("next", {}).get("url")
        url = urljoin(response.url, link) if link else ""
        params = None
    return items


def plain_client(base: str, threads: int, same_data: bool) -> dict[str, dict[str, str]]:
    """path -> tag -> digest, as a user's script with `threads` threads and one session would
    list it (see the module docstring)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=threads)
    session.mount("http://", adapter)
    repos = _paged(session, f"{base}/v2/_catalog", "repositories")
    configs: set[str] = set()
    lock = threading.Lock()

    def one_repo(path: str) -> tuple[str, dict[str, str]]:
        tags = _paged(session, f"{base}/v2/{path}/tags/list", "tags")
        found = {}
        for tag in tags:
            url = f"{base}/v2/{path}/manifests/{tag}"
            headers = {"Accept": MANIFEST_ACCEPT}
            if not same_data:
                response = session.head(url, headers=headers)
                response.raise_for_status()
                found[tag] = response.headers["Docker-Content-Digest"]
                continue
            response = session.get(url, headers=headers)
            response.raise_for_status()
            found[tag] = response.headers["Docker-Content-Digest"]
            manifest = response.json()
            if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
                continue
            config = manifest["config"]["digest"]
            with lock:
                new = config not in configs
                configs.add(config)
            if new:
                blob = session.get(f"{base}/v2/{path}/blobs/{config}")
                blob.raise_for_status()
                blob.json()
        return path, found

    with ThreadPoolExecutor(max_workers=threads) as pool:
        listed = dict(pool.map(one_repo, repos))
    session.close()
    return listed


# --- the command ------------------------------------------------------------------------------


PROFILE: list[str] = []  # a py-spy command line to run the command under (--profile)
CPU: dict[str, float] = {}  # the last command's CPU seconds (user + system), from run_command


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(name: str = "postgres") -> float:
    """CPU seconds used so far by a local database server's processes (`name`): its main
    process with its ended children (which it waited for) and its running ones; 0 when none
    runs here. Read as root or as the server's user."""
    processes = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        command, rest = text.split(" (", 1)[1].rsplit(")", 1)
        if command == name:
            fields = rest.split()
            processes[int(stat.parent.name)] = (int(fields[1]), [int(f) for f in fields[11:15]])
    ticks = 0
    for parent, (utime, stime, cutime, cstime) in processes.values():
        ticks += utime + stime + (0 if parent in processes else cutime + cstime)
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(run, registry_pid: int) -> tuple[Any, float, float, float, float]:
    """`run()`'s result and wall seconds, and the CPU seconds spent meanwhile by this process
    (the clients' threads), by the registry and by a local PostgreSQL server."""
    registry = process_cpu(registry_pid)
    server = server_cpu()
    own = time.process_time()
    started = time.perf_counter()
    result = run()
    return (
        result,
        time.perf_counter() - started,
        time.process_time() - own,
        process_cpu(registry_pid) - registry,
        server_cpu() - server,
    )


def run_command(project: str, env: dict, name: str = "") -> tuple[float, int, str]:
    """Time `manage.py sync_images --project P --wait` from process start to exit."""
    command = [sys.executable, str(ROOT / "manage.py"), "sync_images", "--project", project]
    if PROFILE:
        command = [*PROFILE[:-1], "-o", f"{PROFILE[-1]}-{name}.txt", "--", *command]
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [*command, "--wait"], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["command"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode:
        print(done.stdout[-2000:], done.stderr[-4000:])
        raise SystemExit(f"sync_images exited with {done.returncode}")
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("py-spy>")]
    return elapsed, int(lines[0]), lines[-1]


def inventory(project_name: str) -> dict[str, dict[str, str]]:
    from imagesync.models import Image

    found: dict[str, dict[str, str]] = {}
    rows = Image.objects.filter(project__name=project_name)
    for path, tag, digest in rows.values_list("repository__path", "tag", "digest"):
        found.setdefault(path, {})[tag] = digest
    return found


def check_task(task_id: int, added: int, unchanged: int) -> None:
    from imagesync.models import SyncTask

    task = SyncTask.objects.get(pk=task_id)
    assert task.status == SyncTask.Status.SUCCEEDED, (task.status, task.failure_reason)
    got = (task.images_added, task.images_updated, task.images_removed, task.images_unchanged)
    assert got == (added, 0, 0, unchanged), got


def make_project(
    url: str, concurrency: int | None, direct_http: bool = True, pipeline_depth: int | None = None
) -> str:
    from imagesync.models import Project, Registry

    project = Project.objects.create(name=f"pace-{uuid.uuid4().hex[:8]}")
    options = {} if concurrency is None else {"max_concurrency": concurrency}
    if not direct_http:
        options["direct_http"] = False
    if pipeline_depth is not None:
        options["pipeline_depth"] = pipeline_depth
    Registry.objects.create(
        project=project,
        kind="other",
        name="bench",
        endpoint=url,
        allow_insecure_http=True,
        options=options,
    )
    return project.name


# --- setup ------------------------------------------------------------------------------------


def setup_django(workdir: Path) -> dict:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    env.setdefault("IMAGESYNC_VAR_DIR", str(workdir / "var"))
    env.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'pace.sqlite3'}")
    env.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def seeded_registry(args, workdir: Path):
    from tests.support.registry_fixtures import start_registry
    from tests.support.registry_seed import SeedResult, seed

    base = Path(args.keep) if args.keep else workdir / "registry"
    marker = base / "seeded.json"
    wanted = {"repos": args.repos, "tags": args.tags}
    reg = start_registry(base, auth=args.auth)
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("wanted") == wanted:
            print(f"reusing the registry seeded in {base}")
            return reg, SeedResult(images=saved["images"])
    started = time.perf_counter()
    seeded = seed(reg, repos=args.repos, tags=args.tags, prefix="pace", via="storage")
    print(f"seeded {seeded.tag_count} tags in {time.perf_counter() - started:.1f} s")
    marker.write_text(json.dumps({"wanted": wanted, "images": seeded.images}))
    return reg, seeded


PROXY_CODE = """
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from tests.support.counting_proxy import CountingProxy

proxy = CountingProxy("127.0.0.1", int(sys.argv[2]), float(sys.argv[3]) / 1000).start()
report = sys.argv[4]


def write_report(*_):  # SIGUSR1: what the proxy saw since the last report
    seen = {
        "requests": proxy.requests,
        "mean": proxy.mean_in_flight,
        "connections": proxy.mean_busy_connections,
        "span": proxy.span,
    }
    proxy.reset_counts()
    with open(report + ".tmp", "w") as out:
        json.dump(seen, out)
    os.replace(report + ".tmp", report)


signal.signal(signal.SIGUSR1, write_report)
print(proxy.port, flush=True)
while True:
    time.sleep(1)
"""


def start_proxy(port: int, latency_ms: float, report: Path) -> tuple[subprocess.Popen, str]:
    """tests/support/counting_proxy.py in its own process (not sharing the clients' GIL); it
    writes what it saw to `report` on SIGUSR1 (`proxy_report`)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PROXY_CODE, str(ROOT), str(port), str(latency_ms), str(report)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}"


def proxy_report(proc: subprocess.Popen, report: Path) -> dict:
    """What the proxy saw since its last report: requests, the mean held in flight from the
    first request to the last response, the mean connections busy over it, and that span in
    seconds."""
    report.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not report.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the proxy did not report")
        time.sleep(0.01)
    return json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="threads of the two clients")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added each way")
    parser.add_argument("--auth", choices=["none", "basic"], default="none")
    parser.add_argument(
        "--concurrency", type=int, help="the registry's max_concurrency (default: the product's)"
    )
    parser.add_argument(
        "--no-direct-http",
        dest="direct_http",
        action="store_false",
        help="the registry's direct_http option off: every request through requests",
    )
    parser.add_argument(
        "--pipeline-depth",
        type=int,
        help="the registry's pipeline_depth (default: the product's; 1: no pipelining)",
    )
    parser.add_argument("--keep", help="registry directory to keep and reuse (seeded once)")
    parser.add_argument("--workdir", help="database and var directory (default: a temporary one)")
    parser.add_argument(
        "--profile",
        help="run each command under py-spy (installed by hand), raw stacks to PREFIX-*.txt",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (where the CPU goes), "
        "instead of every thread, idle ones included (where each thread waits)",
    )
    args = parser.parse_args()
    if args.profile:
        py_spy = Path(sys.executable).parent / "py-spy"
        mode = "--gil" if args.profile_gil else "--idle"
        PROFILE.extend([str(py_spy), "record", "-r", "250", "-f", "raw", mode, "-t"])
        PROFILE.append(args.profile)

    from tests.support.registry_fixtures import stop_registry

    with tempfile.TemporaryDirectory(prefix="imagesync-pace-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        env = setup_django(workdir)
        from django.conf import settings

        reg, seeded = seeded_registry(args, workdir)
        tags = seeded.tag_count
        proxy = None
        url = reg.url
        try:
            if args.latency_ms:
                report = workdir / "proxy-report.json"
                port = int(reg.host.rsplit(":", 1)[1])
                proxy, url = start_proxy(port, args.latency_ms, report)
                proxy_report(proxy, report)  # nothing yet: check that it answers
            db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
            print(
                f"{args.repos} x {args.tags} = {tags} tags; database {db}; latency "
                f"{args.latency_ms:g} ms each way; clients {args.threads} threads; "
                f"SYNC_WORKERS={settings.SYNC_WORKERS}; cores {os.cpu_count()}"
            )
            rows = []
            for number in range(1, args.rounds + 1):
                load = os.getloadavg()[0]
                pid = reg.process.pid
                cpu = {}
                project = make_project(url, args.concurrency, args.direct_http, args.pipeline_depth)
                steps = [
                    ("same-data", partial(plain_client, url, args.threads, True)),
                    ("first sync", partial(run_command, project, env, f"first-{number}")),
                    ("digests-only", partial(plain_client, url, args.threads, False)),
                    ("re-sync", partial(run_command, project, env, f"again-{number}")),
                ]
                walls, seen = {}, {}
                for name, step in steps:
                    result, wall, own, registry, server = timed(step, pid)
                    if proxy is not None:
                        seen[name] = proxy_report(proxy, report)
                    if "sync" in name:
                        wall, task_id, _ = result  # the command's, from process start to exit
                        own = CPU["command"]  # its process's CPU, not this one's
                        assert inventory(project) == seeded.images, f"{name}: inventory differs"
                        check_task(task_id, *((tags, 0) if name == "first sync" else (0, tags)))
                    else:
                        assert result == seeded.images, f"{name}: not what was seeded"
                    walls[name], cpu[name] = wall, (own, registry, server)
                same, first = walls["same-data"], walls["first sync"]
                digests, again = walls["digests-only"], walls["re-sync"]
                row = (same, first, same / first, digests, again, digests / again, load)
                rows.append(row)
                print(
                    f"round {number}: same-data {same:6.2f} s ({tags / same:4.0f}/s), first sync "
                    f"{first:6.2f} s ({tags / first:4.0f}/s) -> {row[2]:.2f}x | digests-only "
                    f"{digests:6.2f} s ({tags / digests:4.0f}/s), re-sync {again:6.2f} s "
                    f"({tags / again:4.0f}/s) -> {row[5]:.2f}x | load {load:.1f}",
                    flush=True,
                )
                print(
                    "  CPU s (client or command / registry / PostgreSQL server): "
                    + ", ".join(
                        f"{name} {c:.1f} / {r:.1f} / {d:.1f}" for name, (c, r, d) in cpu.items()
                    ),
                    flush=True,
                )
                if seen:
                    print(
                        "  requests in flight at the registry / connections busy, mean from "
                        "the first request to the last response (that span of the wall time): "
                        + ", ".join(
                            f"{name} {s['mean']:.2f} / {s['connections']:.2f} "
                            f"({s['span']:.2f} of {walls[name]:.2f} s)"
                            for name, s in seen.items()
                        ),
                        flush=True,
                    )
                if not db.endswith("sqlite3"):
                    from imagesync.models import Project

                    Project.objects.filter(name=project).delete()
            first_ratios = [r[2] for r in rows]
            again_ratios = [r[5] for r in rows]
            print(
                f"first sync vs same-data: median {statistics.median(first_ratios):.2f}x "
                f"(rounds {', '.join(f'{r:.2f}' for r in first_ratios)}); "
                f"re-sync vs digests-only: median {statistics.median(again_ratios):.2f}x "
                f"(rounds {', '.join(f'{r:.2f}' for r in again_ratios)}); "
                f"load {os.getloadavg()[0]:.1f}"
            )
        finally:
            if proxy is not None:
                proxy.kill()
                proxy.wait()
            stop_registry(reg)


if __name__ == "__main__":
    main()
