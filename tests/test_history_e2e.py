"""End to end: the inventory history against a real Distribution registry.

Push, sync, sync again unchanged, then re-push a tag to a new digest, delete a tag, empty a
repository and add one, and sync again. After every step the history says exactly what
happened: the changes each task recorded, each tag's timeline, where a digest has been, the
inventory as of the moment right after each step (equal to the export taken then) and the
difference between the two syncs that changed something.
"""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError
from django.utils import timezone

from imagesync.history import Change, ImageInterval, inventory_diff
from imagesync.models import Image, Project, Registry, SyncTask
from imagesync.tasks import run_sync_task
from tests.support.history_steps import export
from tests.support.registry_seed import delete_manifest, delete_tag, push_image, seed

pytestmark = pytest.mark.registry


def sync_now(project) -> SyncTask:
    task = SyncTask.objects.request(project)
    run_sync_task(task.pk)
    task.refresh_from_db()
    assert task.status == SyncTask.Status.SUCCEEDED, task.failure_reason
    return task


def changes_of(task) -> set[tuple[str, str, str, str, str]]:
    return set(
        Change.objects.filter(task=task).values_list(
            "kind", "repository_path", "tag", "old_digest", "new_digest"
        )
    )


def timeline(project, path: str, tag: str) -> list[tuple]:
    """(digest, opened by, closed by, open?) of each interval of the tag, oldest first."""
    return list(
        ImageInterval.objects.filter(project=project, repository_path=path, tag=tag)
        .order_by("valid_from", "id")
        .values_list("digest", "opened_by", "closed_by", "valid_to")
    )


def tags_of(text: str) -> set[tuple[str, str, str]]:
    """(repository, tag, digest) of each row of an inventory CSV."""
    return {
        (row["repository"], row["tag"], row["digest"]) for row in csv.DictReader(io.StringIO(text))
    }


@pytest.fixture
def connected(transactional_db, fresh_registry):
    project = Project.objects.create(name="history-e2e")
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
    return project, fresh_registry


def test_the_history_is_exactly_what_happened_in_the_registry(connected):
    project, reg = connected
    api_10 = push_image(reg, "team/api", "1.0")
    api_11 = push_image(reg, "team/api", "1.1", arch="arm64")
    web = push_image(reg, "team/web", "stable")
    bulk = seed(reg, repos=1, tags=3, prefix="bulk").images["bulk/repo-0000"]
    before = timezone.now()

    # 1. first sync: every tag added, one open interval each
    first = sync_now(project)
    after_first, export_first = timezone.now(), export(project)
    expected = {("added", "team/api", "1.0", "", api_10), ("added", "team/api", "1.1", "", api_11)}
    expected |= {("added", "team/web", "stable", "", web)}
    expected |= {("added", "bulk/repo-0000", tag, "", digest) for tag, digest in bulk.items()}
    assert changes_of(first) == expected
    assert timeline(project, "team/api", "1.0") == [(api_10, first.pk, None, None)]

    # 2. nothing changed: no history row at all, but "last synced" moves on
    rows = (Change.objects.count(), ImageInterval.objects.count())
    unchanged = sync_now(project)
    after_unchanged, export_unchanged = timezone.now(), export(project)
    assert (Change.objects.count(), ImageInterval.objects.count()) == rows
    assert changes_of(unchanged) == set()
    assert export_unchanged != export_first  # the same tags, a later last_synced

    # 3. re-push a tag, delete a tag, empty a repository, add a repository
    api_10_new = push_image(reg, "team/api", "1.0", labels={"rebuilt": "yes"})
    assert api_10_new != api_10
    delete_tag(reg, "team/api", "1.1")
    for digest in set(bulk.values()):
        delete_manifest(reg, "bulk/repo-0000", digest)
    new_app = push_image(reg, "new/app", "v1")
    second = sync_now(project)
    after_second, export_second = timezone.now(), export(project)

    expected = {
        ("repushed", "team/api", "1.0", api_10, api_10_new),
        ("removed", "team/api", "1.1", api_11, ""),
        ("added", "new/app", "v1", "", new_app),
    }
    expected |= {("removed", "bulk/repo-0000", tag, digest, "") for tag, digest in bulk.items()}
    assert changes_of(second) == expected
    assert (second.images_added, second.images_updated, second.images_removed) == (1, 1, 4)

    # The tag timelines: which digest, seen by which task, closed by which.
    repushed = timeline(project, "team/api", "1.0")
    assert [row[:3] for row in repushed] == [
        (api_10, first.pk, second.pk),
        (api_10_new, second.pk, None),
    ]
    assert repushed[1][3] is None and repushed[0][3] is not None
    assert [row[:3] for row in timeline(project, "team/api", "1.1")] == [
        (api_11, first.pk, second.pk)
    ]
    assert timeline(project, "team/web", "stable") == [(web, first.pk, None, None)]

    # Where has the old digest of team/api:1.0 been? Exactly that tag, until the re-push.
    where = ImageInterval.objects.filter(project=project, digest=api_10).values_list(
        "repository_path", "tag", "closed_by"
    )
    assert list(where) == [("team/api", "1.0", second.pk)]
    assert Image.objects.get(repository__path="team/api", tag="1.0").digest == api_10_new

    # The inventory as of the moment right after each step is the export taken then.
    for moment, taken in (
        (after_first, export_first),
        (after_unchanged, export_unchanged),
        (after_second, export_second),
    ):
        assert export(project, "--as-of", moment.isoformat()) == taken
        json_then = export(project, "--as-of", moment.isoformat(), fmt="json")
        assert json_then.count('"tag"') == len(taken.splitlines()) - 1
    with pytest.raises(CommandError, match="history starts"):
        export(project, "--as-of", before.isoformat())

    # The difference between the two syncs that changed something: exactly step 3.
    diff = inventory_diff(project, after_unchanged, after_second)
    assert {(r.kind, r.repository_path, r.tag, r.old_digest, r.new_digest) for r in diff.rows} == (
        expected
    )
    assert diff.counts == {"added": 1, "repushed": 1, "removed": 4}
    # ... which is also the difference between the two as-of inventories.
    then = tags_of(export(project, "--as-of", after_unchanged.isoformat()))
    now = tags_of(export(project, "--as-of", after_second.isoformat()))
    assert then - now == {
        ("team/api", "1.0", api_10),
        ("team/api", "1.1", api_11),
        *{("bulk/repo-0000", tag, digest) for tag, digest in bulk.items()},
    }
    assert now - then == {("team/api", "1.0", api_10_new), ("new/app", "v1", new_app)}
