"""Benchmark: peak memory of one whole sync of up to 1,000,000 generated images.

Every measurement is one child process that does what a worker does with a task --
`run_sync_task`: claim, plan, the registry's listing job, the batch jobs in SYNC_WORKERS
threads, reconcile, history, conclude -- with an in-process client that generates the
registry (no HTTP), then reads its own peak resident set from the OS (`VmHWM` in
/proc/self/status) and checks the inventory against what was generated: every image's
repository, tag, digest and details (an order-independent sum of one hash per image, on both
sides), the task's counters, one `added` change and one open history interval per image (a
first sync), nothing changed (a re-sync).

The generated client behaves as a real one towards the sync: it takes `known` (the digests the
run already knows) and `previous`, and "fetches" only the details of a digest missing from
`known` (counted: a first sync fetches every image once, a re-sync none). Every tag is a
distinct image, the worst case for anything kept per digest. `--client oci` puts the real
OciClient (pages, HEAD / GET by tag, config blobs, its caches) over a transport answering from
the same kind of generated registry in this process.

Layouts are REPOSITORIESxTAGS: 10000x100 (1,000,000 images in repositories of 100 tags) and
10x100000 (a few huge repositories, whose listing is held at once). `--before REV` also runs
the code of commit REV (exported with `git archive` under var/bench/memory/), alternating
with the working tree in every round, so that peaks and rates compare within one run.

    .venv/bin/python bench/bench_memory.py --layouts 1000x100 --resync
    .venv/bin/python bench/bench_memory.py --layouts 10000x100,10x100000 --db sqlite,postgres \\
        --before HEAD~3 --rounds 2

The child loads Django as a worker does, so it has the worker's memory settings: glibc's
malloc arenas limited to two (imagesync.memory; the code of an older `--before` may not set
it) and the listing budget (SYNC_LISTING_BUDGET, from the environment; each measurement prints
the most images its listings held at once).

Databases: SQLite files under var/bench/memory/, or the PostgreSQL database of `--postgres`
(dropped and created again before every first sync; default h2_bench on 127.0.0.1), with
Redis `--redis`. The database is migrated by a separate `manage.py migrate` process, so the
peak is the sync's process only.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench" / "memory"
PROJECT = "memory-bench"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
PLATFORMS = ("linux/amd64",)


# --- the generated registry ------------------------------------------------------------------


def repository_path(index: int) -> str:
    return f"gen/repo-{index:05d}"


def digest_of(path: str, number: int) -> str:
    return "sha256:" + hashlib.sha256(f"{path}:{number}".encode()).hexdigest()


def details_of(number: int) -> tuple:
    """(media type, size, platforms, multi-arch, created, updated) of tag number `number`."""
    moment = T0 + timedelta(minutes=number)
    return MEDIA_TYPE, 1000 + number, PLATFORMS, False, moment, moment


class GeneratedClient:
    """An in-process client generating `repos` x `tags` distinct images (no HTTP)."""

    max_concurrency = 8

    def __init__(self, repos: int, tags: int):
        self.repos, self.tags = repos, tags
        self.fetched = 0  # details of digests `known` did not have
        self._lock = threading.Lock()

    def list_repositories(self, types=None):
        from imagesync.registries.base import RepositoryInfo

        for index in range(self.repos):
            yield RepositoryInfo.from_path("other", repository_path(index))

    def list_images(self, repository, known=None, previous=None):
        from imagesync.registries import base
        from imagesync.registries.base import DigestDetails, ImageInfo

        if hasattr(base, "listing_size"):  # not in the code of an older `--before`
            base.listing_size(self.tags)  # as the OCI client does after its tag list
        known = known or {}
        images, fetched = [], 0
        for number in range(self.tags):
            digest = digest_of(repository.path, number)
            media_type, size, platforms, multi_arch, created, updated = details_of(number)
            details = known.get(digest)
            if details is None:
                fetched += 1
                details = DigestDetails(media_type, size, platforms, multi_arch, created)
            images.append(ImageInfo.of(f"v{number}", digest, details, updated))
        with self._lock:
            self.fetched += fetched
        return images

    def close(self):
        pass


# --- the same registry behind the real OCI client -----------------------------------------------

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
PAGE = 1000
RECENT = 65_536  # configs the in-process registry can serve: those of its last manifests


def oci_documents(path: str, number: int) -> tuple[bytes, bytes]:
    """(manifest, config blob) of tag number `number`: a distinct image each (its own config)."""
    moment = T0 + timedelta(minutes=number)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "label": f"{path}:{number}",
        }
    ).encode()
    layer = "sha256:" + hashlib.sha256(f"layer {path}:{number}".encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "layer", "digest": layer, "size": 1000 + number}],
    }
    return json.dumps(manifest).encode(), config


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_expected(path: str, number: int) -> tuple:
    """What the inventory must hold for that tag: (digest, media type, size, platforms,
    multi-arch, created, updated); plain v2 tells no push time."""
    manifest, config = oci_documents(path, number)
    created = T0 + timedelta(minutes=number)
    return sha(manifest), MEDIA_TYPE, len(config) + 1000 + number, PLATFORMS, False, created, None


def oci_client(repos: int, tags: int):
    """The real OciClient over a transport that answers from the generated registry in this
    process (catalog and tag pages with Link headers, manifest HEAD / GET by tag, config
    blobs, one at a time or pipelined): everything the client does but the socket."""
    import requests
    from requests.structures import CaseInsensitiveDict

    from imagesync.registries.base import ClientConfig, Transport
    from imagesync.registries.oci import OciClient

    class InProcessTransport(Transport):
        def __init__(self, config):
            super().__init__(config)
            self.blobs_served = 0
            # config digest -> its image's number, for the last RECENT manifests served: a
            # client asks for a config after its manifest, but a pipelining one may ask for a
            # block of them after thousands of other repositories' manifests.
            self._recent: dict[str, int] = {}
            self._lock = threading.Lock()

        def _attempt(self, method, url, label, kwargs):
            with self._slots:
                status, headers, body = self._answer(method, url, kwargs.get("params") or {})
            response = requests.Response()
            response.status_code, response.url = status, url
            response.headers = CaseInsensitiveDict(headers)
            response._content, response._content_consumed = body, True
            return response

        def request_many(self, requests_, headers=None):
            """The client's pipelined requests, answered here in turn (`request_many` would
            otherwise try a socket to the generated host, and leave them all to `request`)."""
            return [self._attempt(method, self.url(path), "", {}) for method, path in requests_]

        def _answer(self, method, url, params):
            path, _, query = url[len(self.base_url) + len("/v2/") :].partition("?")
            args = dict(part.split("=", 1) for part in query.split("&") if part)
            start = int(args.get("last", params.get("last", -1))) + 1
            if path == "_catalog":
                names = [repository_path(i) for i in range(start, min(start + PAGE, repos))]
                return self._page(url, "repositories", names, start + PAGE < repos, start)
            if path.endswith("/tags/list"):
                names = [f"v{i}" for i in range(start, min(start + PAGE, tags))]
                return self._page(url, "tags", names, start + PAGE < tags, start)
            if "/manifests/v" in path:  # by tag (a GET by digest is not expected: 404)
                repository, _, number = path.partition("/manifests/v")
                manifest, config = oci_documents(repository, int(number))
                headers = {"Docker-Content-Digest": sha(manifest), "Content-Type": MEDIA_TYPE}
                if method == "HEAD":
                    return 200, headers, b""
                with self._lock:  # its config blob is asked for next
                    self._recent[sha(config)] = int(number)
                    while len(self._recent) > RECENT:
                        del self._recent[next(iter(self._recent))]
                return 200, headers, manifest
            if "/blobs/" in path:
                repository, _, digest = path.partition("/blobs/")
                with self._lock:
                    number = self._recent.get(digest)
                    self.blobs_served += 1
                if number is not None:
                    config = oci_documents(repository, number)[1]
                    return 200, {"Content-Type": OCI_CONFIG}, config
            return 404, {}, json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN"}]}).encode()

        def _page(self, url, key, names, more, start):
            headers = {"Content-Type": "application/json"}
            if more:
                base = url.partition("?")[0]
                headers["Link"] = f'<{base}?n={PAGE}&last={start + PAGE - 1}>; rel="next"'
            return 200, headers, json.dumps({key: names}).encode()

    config = ClientConfig(url="https://generated.invalid", options={"max_concurrency": 8})
    return OciClient(config, transport=InProcessTransport(config))


def row_hash(path, tag, digest, media_type, size, platforms, multi_arch, created, updated) -> int:
    """One image as a number; the sum over an inventory does not depend on the rows' order."""
    text = "\t".join(
        (
            path,
            tag,
            digest,
            media_type,
            str(size),
            ",".join(platforms or ()),
            str(bool(multi_arch)),
            created.astimezone(UTC).isoformat() if created else "",
            updated.astimezone(UTC).isoformat() if updated else "",
        )
    )
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def generated_expected(path: str, number: int) -> tuple:
    return digest_of(path, number), *details_of(number)


def expected_sum(repos: int, tags: int, expected=generated_expected) -> int:
    total = 0
    for index in range(repos):
        path = repository_path(index)
        for number in range(tags):
            total += row_hash(path, f"v{number}", *expected(path, number))
    return total % 2**256


def stored_sum(project) -> tuple[int, int]:
    from imagesync.models import Image

    rows = Image.objects.filter(project=project).values_list(
        "repository__path",
        "tag",
        "digest",
        "media_type",
        "size",
        "platforms",
        "multi_arch",
        "image_created_at",
        "registry_updated_at",
    )
    total = count = 0
    for row in rows.iterator(chunk_size=10_000):
        total += row_hash(*row)
        count += 1
    return total % 2**256, count


# --- the child: one sync ---------------------------------------------------------------------


def status_mb(field: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class Sampler(threading.Thread):
    """Resident set every `interval` seconds; with tracemalloc on, keeps the snapshot taken
    when the traced heap was largest."""

    def __init__(self, interval: float, trace: bool):
        super().__init__(daemon=True)
        self.interval, self.trace = interval, trace
        self.samples: list[tuple[float, float]] = []
        self.snapshot = None
        self.best = 0
        self.stop = threading.Event()
        self.started = time.perf_counter()

    def run(self) -> None:
        import tracemalloc

        while not self.stop.wait(self.interval):
            self.samples.append((time.perf_counter() - self.started, status_mb("VmRSS")))
            if self.trace:
                current = tracemalloc.get_traced_memory()[0]
                if current > self.best * 1.05:
                    self.best = current
                    self.snapshot = tracemalloc.take_snapshot()


def child(args) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from django.conf import settings

    from imagesync.models import Project, Registry, SyncTask
    from imagesync.tasks import run_sync_task

    try:
        from imagesync.sync.budget import listing_budget
    except ImportError:  # the code of an older `--before`, without a listing budget
        listing_budget = None

    assert not settings.DEBUG, "DEBUG keeps every query in memory: run with DEBUG off"
    repos, tags = parse_layout(args.layout)
    if args.client == "oci":
        client = oci_client(repos, tags)
        fetched, expected = (lambda: client.transport.blobs_served), oci_expected
    else:
        client = GeneratedClient(repos, tags)
        fetched, expected = (lambda: client.fetched), generated_expected
    Registry.build_client = lambda self: client  # the generated registry replaces HTTP
    if args.phase == "first":
        project = Project.objects.create(name=PROJECT)
        Registry.objects.create(
            project=project, kind="other", name="generated", endpoint="https://generated.invalid"
        )
    else:
        project = Project.objects.get(name=PROJECT)
    task = SyncTask.objects.request(project, enqueue=False)
    gc.collect()
    rss_start = status_mb("VmRSS")
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(args.tracemalloc)
    sampler = Sampler(args.sample, bool(args.tracemalloc))
    sampler.start()
    started = time.perf_counter()
    run_sync_task(task.pk)
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    peak = status_mb("VmHWM")  # before the checks below allocate anything
    budget = listing_budget() if listing_budget else None
    top = []
    if sampler.snapshot is not None:
        import tracemalloc

        stats = sampler.snapshot.statistics("lineno")
        top = [f"{s.size / 2**20:8.1f} MB {s.count:>9} {s.traceback}" for s in stats[:25]]
        tracemalloc.stop()
    task.refresh_from_db()
    images = repos * tags
    check(task, project, (repos, tags, expected), args.phase, fetched())
    return {
        "images": images,
        "seconds": seconds,
        "peak_mb": peak,
        "start_mb": rss_start,
        "fetched": fetched(),
        "most_held": budget.most_held if budget else "-",
        "waited": budget.waited if budget else "-",
        "samples": sampler.samples,
        "top": top,
    }


def check(task, project, generated: tuple, phase: str, fetched: int) -> None:
    """The inventory, the counters and the history are exactly what was generated."""
    from imagesync.history import Change, ImageInterval

    repos, tags, expected = generated
    images = repos * tags
    assert task.status == "succeeded", (task.status, task.failure_reason)
    assert task.repositories_total == task.repositories_done == repos, task
    total, count = stored_sum(project)
    assert count == images, (count, images)
    assert total == expected_sum(repos, tags, expected), "the stored images differ"
    changes = Change.objects.filter(project=project)
    intervals = ImageInterval.objects.filter(project=project)
    assert changes.count() == changes.filter(kind="added").count() == images
    assert intervals.count() == intervals.filter(valid_to__isnull=True).count() == images
    if phase == "first":
        assert (task.images_added, task.images_unchanged) == (images, 0), task
        assert fetched == images, fetched  # nothing known before: every digest fetched once
    else:
        assert (task.images_added, task.images_unchanged) == (0, images), task
        assert fetched == 0, fetched  # every digest known from the inventory


# --- the parent ------------------------------------------------------------------------------


def parse_layout(text: str) -> tuple[int, int]:
    try:
        repos, tags = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"a layout is REPOSITORIESxTAGS, e.g. 10000x100, not {text!r}") from None
    if repos < 1 or tags < 1:
        raise SystemExit(f"a layout needs at least one repository and one tag: {text!r}")
    return repos, tags


def export_code(rev: str) -> Path:
    """The tree of commit `rev` under var/bench/memory/ (exported once per commit)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if commit.returncode:
        raise SystemExit(f"not a commit: {rev!r}")
    target = VAR / f"code-{commit.stdout.strip()[:12]}"
    if not (target / "manage.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(
            ["git", "archive", commit.stdout.strip()], cwd=ROOT, stdout=subprocess.PIPE
        )
        subprocess.run(["tar", "-x", "-C", str(target)], stdin=archive.stdout, check=True)
        archive.wait()
    return target


def fresh_database(db: str, args, label: str) -> dict[str, str]:
    """The environment of a child using a new, migrated database."""
    env = dict(os.environ)
    env["LOG_LEVEL"] = "WARNING"
    env["DEBUG"] = "0"
    env["IMAGESYNC_VAR_DIR"] = str(VAR / "var")
    if db == "sqlite":
        path = VAR / f"{label}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        env["DATABASE_URL"] = f"sqlite:///{path}"
        env.pop("REDIS_URL", None)
    else:
        import psycopg

        url = args.postgres
        base, _, name = url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = url
        env["REDIS_URL"] = args.redis
    return env


def run_child(code: Path, env: dict, layout: str, phase: str, args) -> dict:
    if phase == "first":
        subprocess.run(
            [sys.executable, str(code / "manage.py"), "migrate", "--verbosity", "0"],
            cwd=code,
            env=env,
            check=True,
        )
    command = [sys.executable, __file__, "--child", "--layout", layout, "--phase", phase]
    command += ["--sample", str(args.sample), "--tracemalloc", str(args.tracemalloc)]
    command += ["--client", args.client]
    env = {**env, "PYTHONPATH": str(code)}
    answer = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    if answer.returncode:
        print(answer.stderr[-4000:])
        raise SystemExit(f"the {phase} sync of {layout} failed")
    return json.loads(answer.stdout.strip().splitlines()[-1])


def report(label: str, result: dict) -> None:
    rate = result["images"] / result["seconds"]
    samples = result["samples"]
    shape = ""
    if samples:  # the resident set at each tenth of the sync's time
        end = samples[-1][0]
        tenths = [max((mb for t, mb in samples if t <= end * k / 10), default=0) for k in (2, 5, 8)]
        shape = " (at 20/50/80%: " + "/".join(f"{mb:.0f}" for mb in tenths) + " MB)"
    print(
        f"{label:<44} {result['seconds']:8.1f} s {rate:8.0f} img/s  peak {result['peak_mb']:6.0f} MB"
        f"  start {result['start_mb']:4.0f} MB{shape}  fetched {result['fetched']}"
        f"  listings held at most {result.get('most_held', '-')} images"
        f" (waited {result.get('waited', '-')}x)",
        flush=True,
    )
    for line in result["top"]:
        print("    " + line)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default="1000x100", help="comma-separated REPOSxTAGS")
    parser.add_argument("--db", default="sqlite", help="comma-separated: sqlite, postgres")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/h2_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--before", help="also run the code of this commit, alternating")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--resync", action="store_true", help="also an unchanged re-sync")
    parser.add_argument("--sample", type=float, default=1.0, help="RSS sampling interval (s)")
    parser.add_argument(
        "--tracemalloc", type=int, default=0, help="frames to trace (0: off; slows Python)"
    )
    parser.add_argument(
        "--client",
        choices=["generated", "oci"],
        default="generated",
        help="generated: a fake client; oci: the real OciClient over an in-process registry",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layout", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    layouts = [layout.strip() for layout in args.layouts.split(",") if layout.strip()]
    for layout in layouts:
        parse_layout(layout)
    databases = [db.strip() for db in args.db.split(",") if db.strip()]
    if set(databases) - {"sqlite", "postgres"}:
        raise SystemExit("--db takes sqlite and/or postgres")
    VAR.mkdir(parents=True, exist_ok=True)
    codes = [("working tree", ROOT)]
    if args.before:
        codes.append((f"before ({args.before})", export_code(args.before)))
    print(f"cores={os.cpu_count()}; load {load()}", flush=True)
    for round_number in range(args.rounds):
        order = codes if round_number % 2 else codes[::-1]  # the older code first, then swap
        for layout in layouts:
            for db in databases:
                for name, code in order:
                    label = f"{db} {layout} {args.client} {name}"
                    env = fresh_database(db, args, f"sync-{os.getpid()}")
                    report(f"{label}: first", run_child(code, env, layout, "first", args))
                    if args.resync:
                        report(f"{label}: re-sync", run_child(code, env, layout, "resync", args))
        print(f"round {round_number + 1} done; load {load()}", flush=True)


if __name__ == "__main__":
    main()
