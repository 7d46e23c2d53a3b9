"""Benchmark: the full sync (HTTP + database writes) against the minimal baseline client.

Starts its own local Distribution registry (Debian docker-registry), seeds it (default 1,000
repositories x 10 tags, every tag a distinct image), then in the same run:

1. the minimal baseline of bench/bench_connectors.py: sequential plain requests, catalog, tag
   lists, one manifest HEAD per tag (digests only);
2. the full sync of the whole registry with `run_sync_task` in this process, on a fresh
   database: repositories discovered, every tag resolved and its details fetched, every image
   written;
3. a second sync with nothing changed;

and prints rates (tags/s), ratios against the baseline and peak memory. Targets: first sync
>= 0.8x the baseline's rate, unchanged re-sync >= 1.0x.

Then, in a child process, a 100,000-image sync with an in-process fake client (no HTTP) to
measure peak memory (target < 300 MB): peak RSS (getrusage) and the Python heap peak
(tracemalloc).

The database is a fresh SQLite file in a temporary directory unless DATABASE_URL is set (then
a uniquely named project is used and deleted at the end). Usage, from the repository root:

    .venv/bin/python bench/bench_sync.py [--repos 1000] [--tags 10] [--memory-images 100000]
                                         [--auth none|basic] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def setup_django(workdir: Path) -> None:
    """Point the settings at a fresh SQLite file (unless DATABASE_URL is set) and migrate."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("IMAGESYNC_VAR_DIR", str(workdir / "var"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def make_project(kind: str = "other", **registry_fields):
    from imagesync.models import Project, Registry

    project = Project.objects.create(name=f"bench-{uuid.uuid4().hex[:8]}")
    secret = registry_fields.pop("secret", "")
    registry = Registry(project=project, kind=kind, name="bench", **registry_fields)
    if secret:
        registry.set_secret(secret)
    registry.save()
    return project, registry


def timed_sync(project):
    from imagesync.models import SyncTask
    from imagesync.tasks import run_sync_task

    task = SyncTask.objects.request(project)
    started = time.perf_counter()
    run_sync_task(task.pk)
    elapsed = time.perf_counter() - started
    task.refresh_from_db()
    return task, elapsed


def client_only(reg, concurrency: int, workers: int) -> tuple[float, int]:
    """List everything with OciClient the way the engine does (repositories in parallel), but
    without the database: what the connector alone costs."""
    from concurrent.futures import ThreadPoolExecutor

    from imagesync.registries.oci import OciClient

    started = time.perf_counter()
    with OciClient(reg.client_config(max_concurrency=concurrency)) as client:
        repos = list(client.list_repositories(["other"]))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            listings = pool.map(lambda r: client.list_images(r, {}, previous={}), repos)
            count = sum(len(images) for images in listings)
    return time.perf_counter() - started, count


def seeded_registry(args):
    """Start the registry; seed it unless --keep points at storage seeded with these counts."""
    from tests.support.registry_fixtures import start_registry
    from tests.support.registry_seed import seed

    base = Path(args.keep) if args.keep else Path(args.workdir) / "registry"
    marker = base / "seeded.json"
    wanted = {"repos": args.repos, "tags": args.tags}
    reg = start_registry(base, auth=args.auth)
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"reusing the registry seeded in {base}")
        return reg, args.repos * args.tags
    started = time.perf_counter()
    seeded = seed(reg, repos=args.repos, tags=args.tags, prefix="bench", via=args.seed_via)
    print(
        f"seeded {args.repos} repositories x {args.tags} tags = {seeded.tag_count} tags "
        f"in {time.perf_counter() - started:.1f} s"
    )
    marker.write_text(json.dumps(wanted))
    return reg, seeded.tag_count


def http_benchmark(args) -> dict:
    from bench_connectors import LatencyProxy, baseline
    from django.conf import settings

    from imagesync.models import Image
    from tests.support.registry_fixtures import stop_registry

    results: dict = {}
    reg, tags = seeded_registry(args)
    proxy = None
    try:
        if args.latency_ms > 0:
            proxy = LatencyProxy(int(reg.host.rsplit(":", 1)[1]), args.latency_ms / 1000)
            reg = dataclasses.replace(
                reg, url=f"http://127.0.0.1:{proxy.port}", host=f"127.0.0.1:{proxy.port}"
            )
            print(f"through a proxy adding {args.latency_ms:g} ms to every chunk sent")
        started = time.perf_counter()
        found = baseline(reg)
        base_time = time.perf_counter() - started
        assert sum(len(t) for t in found.values()) == tags
        results["baseline"] = (base_time, tags / base_time)

        seconds, count = client_only(reg, args.concurrency, settings.SYNC_WORKERS)
        assert count == tags
        results["client"] = (seconds, tags / seconds)

        project, _registry = make_project(
            endpoint=reg.url,
            username=reg.username,
            secret=reg.password,
            allow_insecure_http=True,
            options={"max_concurrency": args.concurrency},
        )
        task, first_time = timed_sync(project)
        assert task.status == "succeeded", task.failure_reason
        stored = Image.objects.filter(project=project).count()
        assert stored == tags, (stored, tags)
        results["first"] = (first_time, tags / first_time)

        task, second_time = timed_sync(project)
        assert task.status == "succeeded", task.failure_reason
        assert task.images_unchanged == tags and task.images_added == 0
        results["unchanged"] = (second_time, tags / second_time)
        if os.environ["DATABASE_URL"].startswith("postgres"):
            project.delete()
    finally:
        if proxy is not None:
            proxy.close()
        stop_registry(reg)
    return results


def memory_benchmark(images: int, trace: bool = False) -> dict:
    """Run in a child process: one sync of `images` generated images, peak memory."""
    from bench_memory import GeneratedClient

    from imagesync.models import Image, Registry

    tags = 100
    repos = max(1, images // tags)
    client = GeneratedClient(repos, tags)
    Registry.build_client = lambda self: client  # the fake replaces HTTP for this process
    project, _registry = make_project(endpoint="https://generated.invalid")
    rss_before = peak_rss_mb()
    if trace:  # tracemalloc slows Python down a lot: only when asked
        tracemalloc.start()
    task, elapsed = timed_sync(project)
    heap_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    assert task.status == "succeeded", task.failure_reason
    stored = Image.objects.filter(project=project).count()
    assert stored == repos * tags
    out = {
        "images": stored,
        "seconds": elapsed,
        "heap_peak_mb": heap_peak / 2**20,
        "rss_peak_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
    }
    if os.environ["DATABASE_URL"].startswith("postgres"):
        project.delete()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8, help="registry max_concurrency")
    parser.add_argument("--memory-images", type=int, default=100_000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--seed-via",
        choices=["storage", "api"],
        default="storage",
        help="write the registry's storage directly (seconds) or push through the API (minutes)",
    )
    parser.add_argument(
        "--auth",
        choices=["none", "basic"],
        default="none",
        help="registry auth: none (default) or htpasswd basic (bcrypt checked on every request)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay every chunk sent to the registry"
    )
    parser.add_argument(
        "--keep", help="registry directory to keep and reuse between runs (seeded once)"
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also report the Python heap peak (slow)"
    )
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_child:
        setup_django(Path(args.workdir))
        print(json.dumps(memory_benchmark(args.memory_images, args.tracemalloc)))
        return

    with tempfile.TemporaryDirectory(prefix="imagesync-bench-") as workdir:
        args.workdir = workdir
        child_env = dict(os.environ)
        memory_dir = Path(workdir) / "memory"
        memory_dir.mkdir()
        setup_django(Path(workdir))
        from django.conf import settings

        db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        print(
            f"database: {db}; SYNC_WORKERS={settings.SYNC_WORKERS}; "
            f"registry max_concurrency={args.concurrency}; registry auth: {args.auth}; "
            f"cores={os.cpu_count()}"
        )
        if not args.skip_http:
            r = http_benchmark(args)
            base_time, base_rate = r["baseline"]
            print()
            print(f"{'run':<34}{'seconds':>9}{'tags/s':>10}{'vs baseline':>13}")
            print(
                f"{'baseline (HEAD per tag, 1 conn)':<34}{base_time:>9.2f}{base_rate:>10.0f}"
                f"{1.0:>12.2f}x"
            )
            for label, key, target in (
                ("OciClient alone, no DB (first)", "client", None),
                ("first sync (HTTP + DB writes)", "first", 0.8),
                ("unchanged re-sync", "unchanged", 1.0),
            ):
                seconds, rate = r[key]
                ratio = rate / base_rate
                verdict = "" if target is None else "ok" if ratio >= target else f"BELOW {target}x"
                print(f"{label:<34}{seconds:>9.2f}{rate:>10.0f}{ratio:>12.2f}x  {verdict}")
            print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")

        if args.memory_images:
            command = [
                sys.executable,
                __file__,
                "--memory-child",
                "--memory-images",
                str(args.memory_images),
                "--workdir",
                str(memory_dir),
            ]
            env = dict(child_env)
            if not env.get("DATABASE_URL") or env["DATABASE_URL"].startswith("sqlite"):
                env["DATABASE_URL"] = f"sqlite:///{memory_dir / 'memory.sqlite3'}"
            env["IMAGESYNC_VAR_DIR"] = str(memory_dir / "var")
            answer = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if answer.returncode:
                print(answer.stderr[-3000:])
                raise SystemExit("memory benchmark failed")
            m = json.loads(answer.stdout.strip().splitlines()[-1])
            verdict = "ok" if m["rss_peak_mb"] < 300 else "ABOVE target 300 MB"
            print()
            print(
                f"{m['images']} generated images (fake client, no HTTP): "
                f"{m['seconds']:.1f} s ({m['images'] / m['seconds']:.0f} images/s); "
                f"peak RSS {m['rss_peak_mb']:.0f} MB (before the sync {m['rss_before_mb']:.0f} MB)"
                + (f", Python heap peak {m['heap_peak_mb']:.0f} MB" if args.tracemalloc else "")
                + f"  {verdict}"
            )


if __name__ == "__main__":
    main()
