"""One sync spread over several real `qcluster` worker processes, against a real Distribution
registry behind a proxy that adds latency and counts the requests in flight.

- A worker killed with SIGKILL in the middle loses no repository: its job is re-queued and run
  by the others, and the task ends succeeded with exactly the registry's inventory.
- A registry whose connection allows N concurrent requests never sees more than N at once,
  whatever the number of worker processes.

On SQLite the workers share the ORM broker; on PostgreSQL (DATABASE_URL) the Redis broker.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from tests.support.cluster import Cluster
from tests.support.counting_proxy import CountingProxy
from tests.support.registry_seed import seed

pytestmark = pytest.mark.registry

REPOS, TAGS = 24, 2
CAP = 3


@pytest.fixture
def scaled(tmp_path, fresh_registry):
    seeded = seed(fresh_registry, repos=REPOS, tags=TAGS, prefix="svc", via="storage")
    truth = {f"{path}:{tag}": d for path, tags in seeded.images.items() for tag, d in tags.items()}
    port = urlsplit(fresh_registry.url).port
    proxy = CountingProxy("127.0.0.1", port, latency=0.1).start()
    cluster = Cluster(
        tmp_path,
        SYNC_WORKERS="2",
        SYNC_JOB_SIZE="2",
        SYNC_HEARTBEAT_INTERVAL="1",
        SYNC_HEARTBEAT_TIMEOUT="4",
    )
    try:
        cluster.create_project(
            proxy.url,
            fresh_registry.username,
            fresh_registry.password,
            max_concurrency=CAP,
            read_timeout=20,
        )
        yield cluster, proxy, truth
    finally:
        cluster.close()
        proxy.stop()


def finished(state: dict) -> bool:
    return state["status"] not in ("queued", "running")


def test_a_worker_killed_mid_sync_loses_no_repository(scaled):
    cluster, proxy, truth = scaled
    for _ in range(3):
        cluster.start_worker()
    pk = cluster.request_sync()
    # Wait until several workers hold batch jobs, then kill one that holds one.
    state = cluster.wait_for(
        pk,
        lambda t: (
            t["done"] >= 4
            and len({j[3] for j in t["jobs"] if j[0] == "batch" and j[1] == "running"}) >= 2
        ),
        timeout=120,
        what="several workers to sync repositories",
    )
    holder = next(j[3] for j in state["jobs"] if j[0] == "batch" and j[1] == "running")
    victim = cluster.owner_of(int(holder.rsplit(":", 1)[1]))
    assert victim is not None, f"no qcluster holds {holder}"
    cluster.kill(victim)

    final = cluster.wait_for(pk, finished, timeout=180, what="the task to end")
    assert final["status"] == "succeeded", final
    assert (final["total"], final["done"], final["failed"]) == (REPOS, REPOS, 0)
    assert final["added"] == REPOS * TAGS  # the killed job's repositories counted once
    assert set(final["results"].values()) == {"finished"}
    assert any(j[2] >= 2 for j in final["jobs"]), "no job was run again"
    assert cluster.inventory() == truth


def test_the_registry_never_sees_more_requests_at_once_than_it_allows(scaled):
    cluster, proxy, truth = scaled
    workers = 3
    for _ in range(workers):
        cluster.start_worker()
    pk = cluster.request_sync()
    final = cluster.wait_for(pk, finished, timeout=180, what="the task to end")
    assert final["status"] == "succeeded", final
    assert cluster.inventory() == truth
    # Three processes of two threads, each repository fetching its tags in parallel, would
    # keep far more than CAP connections busy at once without the shared limit; they kept to
    # it. A connection's requests (pipelined: several sent before the first is answered) are
    # answered one after another, so the registry never worked on more than CAP at once.
    assert proxy.requests >= REPOS * (1 + 2 * TAGS)
    assert proxy.max_busy_connections == CAP
    assert proxy.max_in_flight > CAP  # the tags' manifests went pipelined
    took_part = {j[3] for j in final["jobs"]}
    assert len(took_part) >= 2, f"the jobs were not spread over the workers: {took_part}"


def test_a_worker_process_alone_runs_the_whole_sync(scaled):
    """The embedded default: one qcluster with one worker process does every job itself."""
    cluster, proxy, truth = scaled
    cluster.start_worker()
    started = time.monotonic()
    pk = cluster.request_sync()
    final = cluster.wait_for(pk, finished, timeout=180, what="the task to end")
    assert final["status"] == "succeeded", final
    assert cluster.inventory() == truth
    assert len({j[3] for j in final["jobs"]}) == 1
    assert time.monotonic() - started < 120
