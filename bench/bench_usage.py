"""Benchmark: what reading usage (pull times, pull counts, untagged artifacts) adds to a Harbor
and an SWR Enterprise Edition sync.

Both registries send pull times in the artifact listing the sync reads anyway, so usage costs
no request; what it may cost is parsing and storing. For each kind the script serves (through
`responses`, no network) R repositories of A artifacts with one tag each, and times list +
reconcile of every repository, in its own SQLite database:

* baseline: the same answers without any pull_time (a registry that reports no usage);
* usage: the answers as the registries send them, with pull times, one untagged artifact per
  repository, and between the two syncs a fifth of the pull times moved (a re-sync then
  writes those usage fields, as it would after a day of pulls).

Each case runs a first sync (every image new) and a re-sync, several rounds; it prints the
medians and the ratio usage / baseline (target: at most 1.10). Usage, from the repository
root:

    .venv/bin/python bench/bench_usage.py [--repos 100] [--artifacts 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(path: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def harbor_answers(repos: int, artifacts: int, usage: bool, moved: bool) -> dict[str, list]:
    from tests.support import harbor_payloads as hp

    answers = {}
    for r in range(repos):
        items = []
        for a in range(artifacts):
            n = r * 1000 + a + 1
            pulled = f"2024-06-{1 + (a % 5 == 0 and moved):02d}T10:00:00.000Z"
            item = hp.single_artifact(n, [hp.tag(n, n, f"v{a}", "2024-05-01T08:00:00.000Z")])
            item["pull_time"] = item["tags"][0]["pull_time"] = pulled
            items.append(item)
        if usage:
            items.append(hp.single_artifact(r * 1000 + 999, []))
        else:
            for item in items:
                item.pop("pull_time", None)
                for tag in item.get("tags", []):
                    tag.pop("pull_time", None)
        answers[f"repo{r:04d}"] = items
    return answers


def swr_answers(repos: int, artifacts: int, usage: bool, moved: bool) -> dict[str, list]:
    from tests.support.swr_payloads import fixture

    template = fixture("artifact.json")
    answers = {}
    for r in range(repos):
        items = []
        for a in range(artifacts):
            item = copy.deepcopy(template)
            item["digest"] = "sha256:" + f"{r * 1000 + a + 1:064x}"
            item["tags"][0]["name"] = f"v{a}"
            pulled = f"2024-06-{1 + (a % 5 == 0 and moved):02d}T10:00:00Z"
            item["pull_time"] = item["tags"][0]["pull_time"] = pulled
            items.append(item)
        if usage:
            lone = copy.deepcopy(template)
            lone["digest"], lone["tags"] = "sha256:" + f"{r * 1000 + 999:064x}", []
            items.append(lone)
        else:
            for item in items:
                item.pop("pull_time", None)
                for tag in item["tags"]:
                    tag.pop("pull_time", None)
        answers[f"repo{r:04d}"] = items
    return answers


def one_sync(kind: str, answers: dict[str, list], project_name: str) -> float:
    """List and reconcile every repository; seconds."""
    import responses
    from django.db import transaction

    from imagesync.models import Project, Registry, Repository
    from imagesync.registries import build_client
    from imagesync.registries.base import ClientConfig, RepositoryInfo

    project, _ = Project.objects.get_or_create(name=project_name)
    registry, _ = Registry.objects.get_or_create(
        project=project, name=kind, defaults={"kind": kind, "endpoint": "https://x.example.com"}
    )
    swr = kind == "swr"
    base = "https://swr-api.cn-north-4.myhuaweicloud.com" if swr else "https://harbor.example.com"
    options = {"project_id": "p" * 32, "page_size": 100} if swr else {}
    client = build_client(
        kind, ClientConfig(url=base, username="u", secret="s" * 40, options=options)
    )
    client.transport._sleep = lambda seconds: None
    started = time.perf_counter()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        for name, items in answers.items():
            if swr:
                url = (
                    f"{base}/v2/{'p' * 32}/instances/i1/namespaces/ns/repositories/{name}/artifacts"
                )
                mocked.get(url, json={"artifacts": items, "total": len(items)})
            else:
                url = f"{base}/api/v2.0/projects/lib/repositories/{name}/artifacts"
                mocked.get(url, json=items, headers={"X-Total-Count": str(len(items))})
        for name in answers:
            if swr:
                info = RepositoryInfo.from_path(
                    "swr_enterprise",
                    f"ns/{name}",
                    instance_id="i1",
                    namespace_name="ns",
                    repository_name=name,
                    pull_count=7,
                )
            else:
                info = RepositoryInfo.from_path(
                    "harbor", f"lib/{name}", project="lib", pull_count=7
                )
            images = client.list_images(info)
            repo, _ = Repository.objects.get_or_create(
                registry=registry,
                type=info.type,
                path=info.path,
                defaults={"namespace": info.namespace, "name": info.name},
            )
            with transaction.atomic():
                repo.reconcile(images)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--artifacts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(Path(tmp) / "usage.sqlite3")
        from imagesync.models import Project

        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"usage cost, {args.repos} repositories x {args.artifacts} artifacts, SQLite, "
            f"{args.rounds} rounds, load average {load}"
        )
        print(f"{'kind':8} {'sync':9} {'baseline s':>11} {'usage s':>9} {'ratio':>7}")
        for kind, build in (("harbor", harbor_answers), ("swr", swr_answers)):
            results: dict[tuple[str, bool], list[float]] = {}
            for round_ in range(args.rounds):
                for usage in (False, True):
                    name = f"{kind}-{usage}-{round_}"
                    first = one_sync(kind, build(args.repos, args.artifacts, usage, False), name)
                    again = one_sync(kind, build(args.repos, args.artifacts, usage, usage), name)
                    results.setdefault(("first", usage), []).append(first)
                    results.setdefault(("re-sync", usage), []).append(again)
                    Project.objects.filter(name=name).delete()
            for which in ("first", "re-sync"):
                base = statistics.median(results[(which, False)])
                used = statistics.median(results[(which, True)])
                print(f"{kind:8} {which:9} {base:11.2f} {used:9.2f} {used / base:7.2f}")


if __name__ == "__main__":
    main()
