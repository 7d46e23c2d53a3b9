"""Benchmark: listing a Distribution registry with OciClient vs. a minimal requests baseline.

Starts its own local registry (Debian docker-registry), seeds it (default 500 repositories x
10 tags, every tag a distinct image), then lists everything

* with OciClient, as the sync engine does on a first sync: catalog, then per repository the tag
  list, and per tag (all new to the inventory) one manifest GET by tag, plus the small config
  blob of each new single-platform image (platforms, size, created time) — concurrent within a
  repository, bounded by max_concurrency;
* with OciClient again, given the digests learned and the tags seen by the first pass (an
  unchanged re-sync: one manifest HEAD per tag);
* with a minimal sequential baseline in plain requests: catalog, tag lists, one manifest HEAD
  per tag — digests only, no platforms, no sizes.

and prints tags/s for each and the ratio. Usage (from the repository root):

    .venv/bin/python bench/bench_connectors.py [--repos 500] [--tags 10] [--rounds 2]
                                               [--latency-ms 0] [--seed-via storage|api]
                                               [--auth none|basic]

`--latency-ms N` puts a small TCP proxy in front of the registry that delays every chunk sent
to it by N ms, like a registry across a network instead of on loopback.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from imagesync.registries.base import DigestDetails  # noqa: E402
from imagesync.registries.manifests import MANIFEST_ACCEPT  # noqa: E402
from imagesync.registries.oci import OciClient  # noqa: E402
from tests.support.registry_fixtures import (  # noqa: E402
    RunningRegistry,
    start_registry,
    stop_registry,
)
from tests.support.registry_seed import seed  # noqa: E402


class LatencyProxy:
    """Loopback TCP proxy adding `delay` seconds to everything sent towards the registry."""

    def __init__(self, upstream_port: int, delay: float):
        self.upstream_port = upstream_port
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, delayed: bool) -> None:
        try:
            while data := source.recv(65536):
                if delayed:
                    time.sleep(self.delay)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closing = True
        self.listener.close()


def baseline(reg: RunningRegistry) -> dict[str, dict[str, str]]:
    """Sequential plain-requests listing: catalog pages, tag lists, one HEAD per tag."""
    session = requests.Session()
    session.auth = (reg.username, reg.password)
    paths: list[str] = []
    url: str | None = f"{reg.url}/v2/_catalog?n=1000"
    while url:
        answer = session.get(url, timeout=30)
        answer.raise_for_status()
        paths += answer.json().get("repositories") or []
        link = answer.links.get("next", {}).get("url")
        url = urljoin(answer.url, link) if link else None
    found: dict[str, dict[str, str]] = {}
    for path in paths:
        answer = session.get(f"{reg.url}/v2/{path}/tags/list", timeout=30)
        answer.raise_for_status()
        tags = answer.json().get("tags") or []
        found[path] = {}
        for tag in tags:
            head = session.head(
                f"{reg.url}/v2/{path}/manifests/{tag}",
                headers={"Accept": MANIFEST_ACCEPT},
                timeout=30,
            )
            head.raise_for_status()
            found[path][tag] = head.headers["Docker-Content-Digest"]
    session.close()
    return found


def with_client(
    reg: RunningRegistry,
    concurrency: int,
    known: dict[str, DigestDetails] | None = None,
    repositories_at_once: int = 1,
    previous: dict[str, dict[str, str]] | None = None,
) -> tuple[dict[str, dict[str, str]], dict[str, DigestDetails], int]:
    """List everything with OciClient as the sync engine does: `known` digests and, per
    repository, the `previous` tag -> digest map of the inventory (empty on a first sync).
    Returns digests, details learned, images lacking a platform. `repositories_at_once` > 1
    lists several repositories in parallel through the same client (its transport still caps
    requests in flight at `concurrency`)."""
    found: dict[str, dict[str, str]] = {}
    details: dict[str, DigestDetails] = {}
    without_platform = 0
    previous = previous or {}
    with OciClient(reg.client_config(max_concurrency=concurrency)) as client:
        repositories = list(client.list_repositories())
        with ThreadPoolExecutor(max_workers=repositories_at_once) as pool:
            listings = pool.map(
                lambda r: client.list_images(r, known, previous=previous.get(r.path, {})),
                repositories,
            )
            for repository, images in zip(repositories, listings, strict=True):
                found[repository.path] = {i.tag: i.digest for i in images}
                for image in images:
                    details[image.digest] = image.details()
                    without_platform += not image.platforms
    return found, details, without_platform


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=int, default=500)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="best of N for each contender")
    parser.add_argument("--concurrency", type=int, default=8, help="OciClient max_concurrency")
    parser.add_argument("--seed-workers", type=int, default=8)
    parser.add_argument("--seed-via", choices=["storage", "api"], default="storage")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--auth",
        choices=["none", "basic"],
        default="none",
        help="registry auth: none (default) or htpasswd basic (bcrypt checked on every request)",
    )
    parser.add_argument(
        "--repositories-at-once",
        type=int,
        default=4,
        help="also time OciClient listing this many repositories in parallel (1: skip)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imagesync-bench-") as workdir:
        reg = start_registry(workdir, auth=args.auth)
        print(f"registry auth: {args.auth}")
        try:
            seconds, seeded = timed(
                lambda: seed(
                    reg,
                    repos=args.repos,
                    tags=args.tags,
                    workers=args.seed_workers,
                    via=args.seed_via,
                )
            )
            total = seeded.tag_count
            print(
                f"seeded {args.repos} repositories x {args.tags} tags = {total} tags "
                f"in {seconds:.1f} s ({total / seconds:.0f} tags/s)"
            )
            expected = seeded.images
            proxy = None
            served = reg
            if args.latency_ms > 0:
                proxy = LatencyProxy(int(reg.host.rsplit(":", 1)[1]), args.latency_ms / 1000)
                served = dataclasses.replace(
                    reg, url=f"http://127.0.0.1:{proxy.port}", host=f"127.0.0.1:{proxy.port}"
                )
                print(f"listing through a proxy adding {args.latency_ms:g} ms per request")

            base_times, client_times, resync_times, parallel_times = [], [], [], []
            for _round in range(args.rounds):
                seconds, found = timed(baseline, served)
                assert found == expected, "baseline listing differs from what was seeded"
                base_times.append(seconds)
                seconds, (found, details, missing) = timed(with_client, served, args.concurrency)
                assert found == expected, "OciClient listing differs from what was seeded"
                assert missing == 0, f"{missing} images without platforms"
                client_times.append(seconds)
                seconds, (found, _, _) = timed(
                    with_client, served, args.concurrency, details, 1, found
                )
                assert found == expected
                resync_times.append(seconds)
                if args.repositories_at_once > 1:
                    seconds, (found, _, missing) = timed(
                        with_client, served, args.concurrency, None, args.repositories_at_once
                    )
                    assert found == expected and missing == 0
                    parallel_times.append(seconds)

            base, full, resync = min(base_times), min(client_times), min(resync_times)
            print(
                f"baseline (sequential HEAD per tag, digests only): {total / base:8.0f} tags/s"
                f"  ({base:.2f} s)"
            )
            print(
                f"OciClient first sync (digests+platforms+sizes):   {total / full:8.0f} tags/s"
                f"  ({full:.2f} s)  ratio {base / full:.2f}x baseline"
            )
            print(
                f"OciClient re-sync (all digests known):            {total / resync:8.0f} tags/s"
                f"  ({resync:.2f} s)  ratio {base / resync:.2f}x baseline"
            )
            if parallel_times:
                best = min(parallel_times)
                print(
                    f"OciClient first sync, {args.repositories_at_once} repositories at once:"
                    f"  {total / best:8.0f} tags/s  ({best:.2f} s)  ratio {base / best:.2f}x baseline"
                )
            print(
                f"platforms collected for all {total} images by OciClient: yes "
                f"({len(details)} distinct digests)"
            )
            if proxy is not None:
                proxy.close()
        finally:
            stop_registry(reg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
