"""Scale-out benchmark: one project's first sync spread over 1, 2 and 4 worker processes.

A real Distribution registry (open, seeded on disk: `--repos` x `--tags` distinct images) sits
behind an asyncio proxy that adds `--latency-ms` to every request and to every response (a
registry far away, so that neither this machine's CPU nor the registry is the limit) and counts
the requests in flight. For each process count the script creates a fresh PostgreSQL database,
starts that many `manage.py qcluster` processes (one worker each, the Redis broker, the same
SYNC_WORKERS threads each), requests one sync of the project and times it from the task's
start to its end (the task row's own timestamps). The registry connection's `max_concurrency`
is raised (`--max-concurrency`, default 64) so that it does not cap the processes.

Then the cap: the same sync with 4 processes and `max_concurrency` 8 (`--cap`); the proxy must
never have seen more than 8 connections with requests outstanding at once. (Pipelined requests,
`pipeline_depth`, make more requests than that in flight; the registry answers a connection's
requests one at a time, so it still works on at most 8 at once.)

Usage (from the repository root; PostgreSQL and Redis on loopback):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/imagesync \\
    REDIS_URL=redis://127.0.0.1:6379/15 \\
    .venv/bin/python bench/bench_scaleout.py [--repos 1000] [--tags 5] [--latency-ms 100]
        [--processes 1,2,4] [--threads 2] [--job-size 20] [--max-concurrency 64] [--cap 8]

The databases are throw-away (`imagesync_cluster_*`, dropped at the end); the Redis broker
uses database 14 of REDIS_URL's server.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.cluster import Cluster  # noqa: E402
from tests.support.counting_proxy import CountingProxy  # noqa: E402
from tests.support.registry_fixtures import start_registry, stop_registry  # noqa: E402
from tests.support.registry_seed import seed  # noqa: E402


def one_sync(args, proxy: CountingProxy, reg, processes: int, max_concurrency: int) -> dict:
    """A fresh database, `processes` qcluster processes, one first sync; its figures."""
    import psycopg

    work = Path(tempfile.mkdtemp(prefix="imagesync-scaleout-"))
    cluster = Cluster(
        work,
        SYNC_WORKERS=str(args.threads),
        SYNC_JOB_SIZE=str(args.job_size),
        SYNC_HEARTBEAT_INTERVAL="5",
        SYNC_HEARTBEAT_TIMEOUT="60",
    )
    try:
        cluster.create_project(
            proxy.url,
            reg.username,
            reg.password,
            max_concurrency=max_concurrency,
            read_timeout=60,
        )
        for _ in range(processes):
            cluster.start_worker()
        time.sleep(3)  # the workers connect to the broker
        proxy.reset_counts()
        pk = cluster.request_sync()
        # Poll the task row directly: a Django process per poll would cost CPU the workers need.
        with psycopg.connect(cluster.env["DATABASE_URL"], autocommit=True) as conn:
            deadline = time.monotonic() + args.timeout
            while True:
                row = conn.execute(
                    "SELECT status, started_at, finished_at, repositories_done, images_added "
                    "FROM imagesync_synctask WHERE id = %s",
                    (pk,),
                ).fetchone()
                if row[0] not in ("queued", "running"):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the sync did not end within {args.timeout} s: {row}")
                time.sleep(1)
            workers = conn.execute(
                "SELECT COUNT(DISTINCT worker) FROM imagesync_syncjob WHERE task_id = %s", (pk,)
            ).fetchone()[0]
        status, started, finished, done, added = row
        seconds = (finished - started).total_seconds()
        return {
            "processes": processes,
            "status": status,
            "seconds": seconds,
            "repositories": done,
            "images": added,
            "rate": done / seconds,
            "max_in_flight": proxy.max_in_flight,
            "max_busy": proxy.max_busy_connections,
            "requests": proxy.requests,
            "workers": workers,
        }
    finally:
        cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--threads", type=int, default=2, help="SYNC_WORKERS per process")
    parser.add_argument("--job-size", type=int, default=10, help="SYNC_JOB_SIZE")
    parser.add_argument("--max-concurrency", type=int, default=64)
    parser.add_argument(
        "--cap", type=int, default=8, help="max_concurrency of the cap run (0: no cap run)"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get(
        "REDIS_URL"
    ):
        raise SystemExit("bench_scaleout needs DATABASE_URL=postgres://... and REDIS_URL")

    reg = start_registry(tempfile.mkdtemp(prefix="imagesync-scaleout-registry-"), auth="none")
    proxy = None
    try:
        started = time.monotonic()
        seeded = seed(reg, repos=args.repos, tags=args.tags, prefix="bench", via="storage")
        print(
            f"registry: {args.repos} repositories x {args.tags} tags = {seeded.tag_count:,} "
            f"distinct images, seeded in {time.monotonic() - started:.1f} s"
        )
        proxy = CountingProxy("127.0.0.1", urlsplit(reg.url).port, args.latency_ms / 1000).start()
        print(
            f"proxy adding {args.latency_ms:g} ms each way; {args.threads} sync threads per "
            f"process, jobs of {args.job_size} repositories, Redis broker, PostgreSQL\n"
        )
        runs = []
        for count in [int(n) for n in args.processes.split(",")]:
            result = one_sync(args, proxy, reg, count, args.max_concurrency)
            runs.append(result)
            print(line(result, runs[0]), flush=True)
        if not args.cap:
            return 0 if all(r["status"] == "succeeded" for r in runs) else 1
        cap = one_sync(args, proxy, reg, max(r["processes"] for r in runs), args.cap)
        print(
            f"\ncap: {cap['processes']} processes with max_concurrency {args.cap}: at most "
            f"{cap['max_busy']} connections with requests outstanding at once at the proxy, "
            f"{cap['max_in_flight']} requests (pipelined; the registry answers a connection's "
            f"one at a time) ({cap['requests']:,} requests, {cap['seconds']:.1f} s, "
            f"{cap['status']})"
        )
        ok = all(r["status"] == "succeeded" for r in [*runs, cap])
        ok = ok and cap["max_busy"] <= args.cap
        return 0 if ok else 1
    finally:
        if proxy is not None:
            proxy.stop()
        stop_registry(reg, remove=True)


def line(result: dict, first: dict) -> str:
    return (
        f"{result['processes']} process(es): {result['status']}, {result['repositories']:,} "
        f"repositories ({result['images']:,} images) in {result['seconds']:.1f} s = "
        f"{result['rate']:.1f} repositories/s, {result['rate'] / first['rate']:.2f}x of 1 "
        f"process; {result['workers']} worker(s) took jobs; at most {result['max_busy']} "
        f"connections busy and {result['max_in_flight']} requests at once"
    )


if __name__ == "__main__":
    sys.exit(main())
