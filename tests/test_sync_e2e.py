"""End to end: the sync engine with the real OCI client against a real Distribution registry.

Seed, sync, compare the inventory to what was pushed; change the registry (delete tags,
re-push a tag with new content, empty a repository, add one, drop one from the listing),
re-sync and compare again -- exactly equal each time.
"""

from __future__ import annotations

import pytest

from imagesync.models import Image, Project, Registry, Repository, SyncTask
from imagesync.sync import budget as budget_module
from imagesync.tasks import run_sync_task
from tests.support.registry_seed import (
    copy_image,
    delete_manifest,
    delete_tag,
    push_image,
    push_image_details,
    push_index_details,
    seed,
    tag_manifest,
)

pytestmark = pytest.mark.registry


def inventory(project) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for path, tag, digest in Image.objects.filter(project=project).values_list(
        "repository__path", "tag", "digest"
    ):
        found.setdefault(path, {})[tag] = digest
    return found


def expected_of(pushed: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {path: dict(tags) for path, tags in pushed.items() if tags}


def sync_now(project, **kw) -> SyncTask:
    task = SyncTask.objects.request(project, **kw)
    run_sync_task(task.pk)
    task.refresh_from_db()
    return task


@pytest.fixture
def connected(transactional_db, fresh_registry):
    """A project with one 'other' registry connection to a fresh Distribution registry."""
    project = Project.objects.create(name="e2e")
    registry = Registry(
        project=project,
        kind="other",
        name="distribution",
        endpoint=fresh_registry.url,
        username=fresh_registry.username,
        allow_insecure_http=True,
        options={"max_concurrency": 4},
    )
    registry.set_secret(fresh_registry.password)
    registry.save()
    return project, registry, fresh_registry


def test_the_inventory_matches_the_registry_after_every_change(connected):
    project, registry, reg = connected
    pushed: dict[str, dict[str, str]] = {}

    api_10 = push_image_details(reg, "team/api", "1.0", layer_sizes=(2048, 512))
    api_11 = push_image_details(reg, "team/api", "1.1", oci=True, arch="arm64", variant="v8")
    pushed["team/api"] = {"1.0": api_10.digest, "1.1": api_11.digest}
    pushed["team/api"]["latest"] = tag_manifest(reg, "team/api", "1.0", "latest")
    multi = push_index_details(
        reg, "team/multi", "2024", ["linux/amd64", "linux/arm64/v8"], with_attestation=True
    )
    pushed["team/multi"] = {"2024": multi.digest}
    pushed["mirror/api"] = {"1.0": copy_image(reg, "team/api", "1.0", "mirror/api", "1.0")}
    bulk = seed(reg, repos=4, tags=3, prefix="bulk")
    pushed.update(bulk.images)
    pushed["nginx"] = {"stable": push_image(reg, "nginx", "stable")}

    # 1. first sync: everything added
    task = sync_now(project)
    assert task.status == SyncTask.Status.SUCCEEDED, task.failure_reason
    assert inventory(project) == expected_of(pushed)
    total = sum(len(tags) for tags in pushed.values())
    assert (task.images_added, task.repositories_total) == (total, len(pushed))
    a10 = Image.objects.get(repository__path="team/api", tag="1.0")
    assert (a10.size, a10.media_type, a10.platforms, a10.multi_arch) == (
        api_10.size,
        api_10.media_type,
        ["linux/amd64"],
        False,
    )
    a11 = Image.objects.get(repository__path="team/api", tag="1.1")
    assert a11.platforms == ["linux/arm64/v8"] and a11.image_created_at is not None
    m = Image.objects.get(repository__path="team/multi")
    assert (m.multi_arch, m.platforms, m.media_type) == (
        True,
        ["linux/amd64", "linux/arm64/v8"],
        multi.media_type,
    )
    api = Repository.objects.get(path="team/api")
    assert (api.type, api.namespace, api.name, api.image_count) == ("other", "team", "api", 3)
    layers = bulk.layer_digests | api_10.all_layer_digests | multi.all_layer_digests
    assert reg.blob_requests(layers) == []  # layers are never downloaded

    # 2. nothing changed: nothing added, updated or removed
    task = sync_now(project)
    assert task.status == SyncTask.Status.SUCCEEDED
    assert (task.images_added, task.images_updated, task.images_removed) == (0, 0, 0)
    assert task.images_unchanged == total
    assert inventory(project) == expected_of(pushed)

    # 3. delete a tag, re-push a tag with new content, empty a repository, add one
    delete_tag(reg, "team/api", "1.1")
    del pushed["team/api"]["1.1"]
    pushed["team/api"]["1.0"] = push_image(reg, "team/api", "1.0", labels={"rebuilt": "yes"})
    assert pushed["team/api"]["1.0"] != api_10.digest
    for digest in set(pushed["bulk/repo-0001"].values()):
        delete_manifest(reg, "bulk/repo-0001", digest)
    pushed["bulk/repo-0001"] = {}
    pushed["new/app"] = {"v1": push_image(reg, "new/app", "v1")}

    task = sync_now(project)
    assert task.status == SyncTask.Status.SUCCEEDED, task.failure_reason
    assert inventory(project) == expected_of(pushed)
    assert (task.images_added, task.images_updated) == (1, 1)
    assert task.images_removed == 1 + 3  # the deleted tag and the emptied repository's three
    rebuilt = Image.objects.get(repository__path="team/api", tag="1.0")
    assert rebuilt.first_seen_at == a10.first_seen_at and rebuilt.digest != a10.digest
    assert Repository.objects.get(path="bulk/repo-0001").image_count == 0
    latest = Image.objects.get(repository__path="team/api", tag="latest")
    assert latest.digest == api_10.digest  # "latest" still points at the old 1.0 image

    # 4. a repository that vanishes from a complete listing is removed with its images
    listed = sorted(path for path in pushed if path != "mirror/api")
    registry.options = {"max_concurrency": 4, "repositories": listed}
    registry.save()
    del pushed["mirror/api"]
    task = sync_now(project)
    assert task.status == SyncTask.Status.SUCCEEDED, task.failure_reason
    assert inventory(project) == expected_of(pushed)
    assert Repository.objects.get(path="mirror/api").removed_at is not None

    # 5. a repository the registry does not know fails alone and the rest is kept
    registry.options = {"max_concurrency": 4, "repositories": [*listed, "ghost/app"]}
    registry.save()
    task = sync_now(project)
    assert task.status == SyncTask.Status.PARTIALLY_SUCCEEDED
    failed = task.results.get(status="failed")
    assert (failed.repository_path, failed.reason_code) == ("ghost/app", "not_found")
    assert inventory(project) == expected_of(pushed)


def test_a_registry_that_refuses_the_credentials_keeps_the_inventory(connected):
    project, registry, reg = connected
    pushed = {"team/api": {"1.0": push_image(reg, "team/api", "1.0")}}
    assert sync_now(project).status == SyncTask.Status.SUCCEEDED

    registry.set_secret("wrong-password")
    registry.save()
    task = sync_now(project)
    assert task.status == SyncTask.Status.FAILED
    assert task.failure_code == "auth_failed"
    assert "wrong-password" not in task.failure_reason
    assert inventory(project) == pushed
    assert Repository.objects.get(path="team/api").removed_at is None


def test_sync_of_chosen_repositories_touches_only_those(connected):
    project, registry, reg = connected
    push_image(reg, "a/one", "1")
    push_image(reg, "b/two", "1")
    sync_now(project)
    push_image(reg, "a/one", "2")
    push_image(reg, "b/two", "2")
    task = sync_now(
        project,
        scope="repositories",
        repositories=[Repository.objects.get(path="a/one")],
    )
    assert task.status == SyncTask.Status.SUCCEEDED and task.repositories_total == 1
    assert set(inventory(project)["a/one"]) == {"1", "2"}
    assert set(inventory(project)["b/two"]) == {"1"}


def test_a_listing_budget_lists_fewer_repositories_at_once_and_misses_nothing(
    connected, settings, monkeypatch
):
    """SYNC_LISTING_BUDGET bounds the images the listings of a process hold at once (a few
    huge repositories would otherwise be held whole together): with room for 25 images, 6
    repositories of 10 tags are listed at most two at a time, first sync and re-sync (where
    the stored counts are the estimates), and the inventory is exact both times."""
    project, registry, reg = connected
    settings.SYNC_LISTING_BUDGET = 25
    monkeypatch.setattr(budget_module, "_budget", None)  # a fresh budget: its figures are ours
    pushed = seed(reg, repos=6, tags=10, prefix="big", via="storage").images

    task = sync_now(project)
    budget = budget_module.listing_budget()
    assert task.status == SyncTask.Status.SUCCEEDED, task.failure_reason
    assert inventory(project) == pushed and task.images_added == 60
    assert budget.most_held == 20  # two listings of 10; a third waited (4 threads)
    assert budget.waited > 0 and budget.held == 0

    budget.most_held = 0
    task = sync_now(project)
    assert task.status == SyncTask.Status.SUCCEEDED, task.failure_reason
    assert task.images_unchanged == 60 and inventory(project) == pushed
    assert budget.most_held == 20 and budget.held == 0
