"""A project's inventory history built through real reconciles, for the Changes tab, its API
and `export_changes`: what happened is known exactly, so each test can assert it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction

from imagesync.models import Registry, Repository, SyncTask
from tests.support.factories import make_repository
from tests.support.fakes import T0, digest, image

DAY1 = T0  # 2026-11-01 08:00 UTC: the first sync
DAY2 = T0 + timedelta(days=1)  # 2026-11-02 08:00 UTC: the second sync


@dataclass
class History:
    """What `build_history` did, and the digests a test expects to see."""

    registry: Registry
    api: Repository
    web: Repository
    first: SyncTask
    second: SyncTask
    v1_old: str = digest("v1")
    v1_new: str = digest("v1-rebuilt")
    v2: str = digest("v2")
    v3: str = digest("v3")
    w1: str = digest("w1")


def _sync(task: SyncTask, at, listings: dict[Repository, list]) -> None:
    with transaction.atomic():
        for repository, listing in listings.items():
            repository.reconcile(listing, at, task=task)


def build_history(project, marker: str = "hist") -> History:
    """Day 1: api gets v1 and v2, web gets w1 (3 added). Day 2: api's v1 is re-pushed, v2
    removed, v3 added; web is unchanged (3 more changes, none for web)."""
    registry = Registry.objects.create(
        project=project, kind="other", name=f"reg-{marker}", endpoint="https://r.example.com"
    )
    api = make_repository(registry, f"team-{marker}/api")
    web = make_repository(registry, f"team-{marker}/web", type_="harbor")
    first = SyncTask.objects.create(project=project, status=SyncTask.Status.SUCCEEDED)
    second = SyncTask.objects.create(project=project, status=SyncTask.Status.SUCCEEDED)
    _sync(first, DAY1, {api: [image("v1"), image("v2")], web: [image("w1")]})
    _sync(
        second,
        DAY2,
        {api: [image("v1", "v1-rebuilt", minutes=60 * 24), image("v3")], web: [image("w1")]},
    )
    return History(registry, api, web, first, second)
