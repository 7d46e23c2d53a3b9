"""Usage in the inventory: last pulled, pull counts and untagged images through the sync,
Image View (column, filters, sort, summary), the API and the exports; a sync that cannot read
pull data; usage never written to the history."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from imagesync.history import Change
from imagesync.models import Image, Registry, Repository, SyncTask, SyncTaskRepository
from imagesync.registries.base import Listing
from imagesync.tasks import run_sync_task
from tests.support.factories import make_image, make_repository
from tests.support.fakes import FakeClient, image

NOW = timezone.now().replace(microsecond=0)
URL = reverse("imagesync:image-list")
API = "/api/v1/projects/{}/images/"


class UsageFake(FakeClient):
    """A fake client that hands out its Listing objects as they are (untagged images and the
    usage note included)."""

    def list_images(self, repository, known=None, previous=None):
        listing = self.repos[repository.path]
        return listing if isinstance(listing, Listing) else super().list_images(repository)


def pulled(tag: str, when=None, count=None, source="harbor", known=True, **kw):
    info = image(tag, **kw)
    info.last_pulled, info.pull_count, info.pull_source, info.pull_known = (
        when,
        count,
        source,
        known,
    )
    return info


def untagged(content: str, **kw):
    info = pulled("", content=content, **kw)
    info.tagged = False
    return info


def listing(*tagged, untagged=(), missing=None) -> Listing:
    result = Listing(tagged)
    result.untagged = list(untagged)
    result.usage_missing = missing
    return result


@pytest.fixture
def proj(transactional_db, project):
    return project


def sync(project) -> SyncTask:
    task = SyncTask.objects.request(project)
    run_sync_task(task.pk)
    task.refresh_from_db()
    return task


def connect(project, fake, kind="harbor") -> Registry:
    registry = Registry.objects.create(
        project=project, kind=kind, name="hub", endpoint="https://hub.example.com"
    )
    return registry


# --- the sync ---------------------------------------------------------------------------------


def test_a_pull_is_no_change_and_writes_no_history(proj, fakes):
    fake = fakes["hub"] = UsageFake({"lib/api": listing(pulled("1.0", None, 3))}, type="harbor")
    connect(proj, fake)
    first = sync(proj)
    assert first.images_added == 1
    changes = Change.objects.count()

    fake.repos["lib/api"] = listing(pulled("1.0", NOW - timedelta(hours=1), 4))
    second = sync(proj)

    row = Image.objects.get(tag="1.0")
    assert row.last_pulled == NOW - timedelta(hours=1) and row.pull_count == 4
    assert (second.images_added, second.images_updated, second.images_unchanged) == (0, 0, 1)
    assert Change.objects.count() == changes  # a pull changes usage, not the inventory


def test_untagged_images_are_kept_by_digest_outside_the_history_and_the_counts(proj, fakes):
    lone = untagged("orphan", when=None)
    fake = fakes["hub"] = UsageFake(
        {"lib/api": listing(pulled("1.0"), untagged=[lone])}, type="harbor"
    )
    connect(proj, fake)
    task = sync(proj)
    assert task.images_added == 1
    rows = Image.objects.filter(tagged=False)
    assert [(row.tag, row.digest) for row in rows] == [("", lone.digest)]
    assert not Change.objects.filter(tag="").exists()

    fake.repos["lib/api"] = listing(pulled("1.0"))  # deleted from the registry
    sync(proj)
    assert not Image.objects.filter(tagged=False).exists()
    assert not Change.objects.filter(tag="").exists()
    assert Change.objects.filter(kind=Change.Kind.REMOVED).count() == 0


def test_a_repository_that_vanished_takes_its_untagged_images_without_history(proj, fakes):
    fake = fakes["hub"] = UsageFake(
        {"lib/api": listing(pulled("1.0"), untagged=[untagged("x")])}, type="harbor"
    )
    connect(proj, fake)
    sync(proj)
    del fake.repos["lib/api"]
    sync(proj)
    assert not Image.objects.exists()
    removed = Change.objects.filter(kind=Change.Kind.REMOVED)
    assert list(removed.values_list("tag", flat=True)) == ["1.0"]


def test_a_listing_without_pull_data_keeps_what_pull_events_recorded(proj, fakes):
    fake = fakes["hub"] = UsageFake({"team/api": listing(image("1.0"))}, type="other")
    connect(proj, fake, kind="other")
    sync(proj)
    Image.objects.update(last_pulled=NOW, pull_source="events", pull_known=True)
    fake.repos["team/api"] = listing(image("1.0", content="repushed"))
    sync(proj)
    row = Image.objects.get()
    assert row.digest.endswith(image("x", content="repushed").digest[-8:])
    assert (row.last_pulled, row.pull_source) == (NOW, "events")


def test_a_sync_that_cannot_read_pull_data_syncs_and_says_why(proj, fakes, client, admin_user):
    why = ("permission_denied", "Artifactory refused the download statistics: 403")
    fake = fakes["hub"] = UsageFake({"docker/app": listing(image("1.0"), missing=why)})
    registry = connect(proj, fake, kind="jfrog")
    fake.type = "jfrog"
    task = sync(proj)

    assert task.status == SyncTask.Status.SUCCEEDED
    assert Image.objects.filter(tag="1.0").exists()
    result = SyncTaskRepository.objects.get(task=task)
    assert result.status == SyncTaskRepository.Status.FINISHED
    assert result.reason_code == "usage_unavailable" and "403" in result.reason_message
    registry.refresh_from_db()
    assert registry.usage_missing_code == "permission_denied"
    client.force_login(admin_user)
    page = client.get(reverse("imagesync:task-detail", args=[task.pk])).content.decode()
    assert "usage_unavailable" in page and "download statistics" in page
    page = client.get(reverse("imagesync:registry-edit", args=[registry.pk])).content.decode()
    assert "Pull data missing" in page and "permission_denied" in page

    fake.repos["docker/app"] = listing(pulled("1.0", None, 0, source="jfrog"))
    sync(proj)
    registry.refresh_from_db()
    assert registry.usage_missing_code == ""


# --- Image View -----------------------------------------------------------------------------------


@pytest.fixture
def rows(db, registry):
    """Rows of every usage kind in one 'other' repository and one Harbor repository."""
    harbor = make_repository(registry, "lib/web", "harbor")
    other = make_repository(registry, "team/api")
    make_image(
        harbor,
        "recent",
        last_pulled=NOW - timedelta(days=2),
        pull_source="harbor",
        pull_known=True,
        pull_count=7,
    )
    make_image(
        harbor,
        "stale",
        last_pulled=NOW - timedelta(days=100),
        pull_source="harbor",
        pull_known=True,
        pull_count=7,
    )
    make_image(harbor, "never", pull_source="harbor", pull_known=True, pull_count=7)
    make_image(other, "unknown")
    make_image(
        harbor, "", tagged=False, digest_seed="orphan", pull_source="harbor", pull_known=True
    )
    return registry


def tags_on(client, **params) -> list[str]:
    response = client.get(URL, {"ordering": "tag", **params})
    assert response.status_code == 200
    return [row.tag for row in response.context["page"].object_list]


def test_image_view_defaults_to_tagged_and_filters_by_usage(rows, login, viewer):
    client = login(viewer)
    assert tags_on(client) == ["never", "recent", "stale", "unknown"]
    assert tags_on(client, tagged="untagged") == [""]
    assert sorted(tags_on(client, tagged="all")) == ["", "never", "recent", "stale", "unknown"]
    assert tags_on(client, not_pulled_days=30) == ["never", "stale"]
    assert tags_on(client, not_pulled_days=365) == ["never"]
    assert tags_on(client, pulled="never") == ["never"]
    assert tags_on(client, pulled="unknown") == ["unknown"]


def test_rows_without_pull_data_say_unknown_not_never(rows, login, viewer):
    body = login(viewer).get(URL, {"ordering": "tag"}).content.decode()
    unknown_row = body[body.index("<code>unknown</code>") :].split("</tr>")[0]
    assert ">unknown<" in unknown_row and "never" not in unknown_row
    never_row = body[body.index("<code>never</code>") :].split("</tr>")[0]
    assert "never" in never_row.split("usage")[1] and "Harbor" in never_row
    assert "(repository)" in never_row  # Harbor counts pulls per repository


def test_sort_by_last_pulled(rows, login, viewer):
    client = login(viewer)
    ordered = tags_on(client, ordering="-last_pulled", pulled="", not_pulled_days="")
    known = [tag for tag in ordered if tag in ("recent", "stale")]
    assert known == ["recent", "stale"]
    assert [t for t in tags_on(client, ordering="last_pulled") if t in ("recent", "stale")] == [
        "stale",
        "recent",
    ]


def test_bad_usage_filters_are_inline_errors_and_400s(rows, login, viewer, project):
    client = login(viewer)
    for params in (
        {"not_pulled_days": "-3"},
        {"not_pulled_days": "99999999999"},
        {"pulled": "sometimes"},
        {"tagged": "maybe"},
    ):
        page = client.get(URL, params)
        assert page.status_code == 200 and page.context["filters_invalid"]
        assert client.get(API.format(project.pk), params).status_code == 400


SUMMARY = reverse("imagesync:image-usage")


def test_the_usage_summary_counts_per_type_and_links_to_the_rows(rows, login, viewer):
    client = login(viewer)
    assert 'id="usage-summary"' in client.get(URL).content.decode()  # loaded when opened
    summary = client.get(SUMMARY).context["usage_summary"]
    harbor = next(row for row in summary if row["type"] == "harbor")
    counts = {cell["key"]: cell["count"] for cell in harbor["cells"]}
    assert counts == {
        "not_30": 2,
        "not_90": 2,
        "not_365": 1,
        "never": 1,
        "unknown": 0,
        "untagged": 1,
    }
    other = next(row for row in summary if row["type"] == "other")
    assert {cell["key"]: cell["count"] for cell in other["cells"]}["unknown"] == 1
    for cell in harbor["cells"]:
        listed = client.get(cell["url"]).context["page"].paginator.count
        assert listed == cell["count"], cell


def test_the_summary_is_one_grouped_query(rows, project, django_assert_max_num_queries):
    from imagesync import usage

    images = Image.objects.filter(project=project)
    with django_assert_max_num_queries(2):  # the GROUP BY, and the project's repository types
        totals = usage.usage_counts(project, images)
    assert set(totals) == {"harbor", "other"}


def test_the_summary_is_counted_again_after_a_sync(rows, login, viewer, project):
    client = login(viewer)

    def never() -> int:
        summary = client.get(SUMMARY).context["usage_summary"]
        harbor = next(row for row in summary if row["type"] == "harbor")
        return next(cell["count"] for cell in harbor["cells"] if cell["key"] == "never")

    assert never() == 1
    Image.objects.filter(tag="recent").update(last_pulled=None)
    assert never() == 1  # reused for a minute...
    Repository.objects.filter(path="lib/web").update(last_synced_at=timezone.now())
    assert never() == 2  # ...or until the next sync


def test_an_outsider_sees_no_usage_of_another_project(rows, login, outsider):
    response = login(outsider).get(SUMMARY)
    assert response.status_code == 200 and response.context["usage_summary"] == []


def test_the_api_lists_usage_with_the_same_filters(rows, login, viewer, project):
    client = login(viewer)
    body = client.get(API.format(project.pk), {"pulled": "never"}).json()
    (row,) = body["results"]
    assert row["tag"] == "never" and row["pull_source"] == "harbor"
    assert row["pull_known"] is True and row["last_pulled"] is None and row["tagged"] is True
    body = client.get(API.format(project.pk), {"tagged": "untagged"}).json()
    assert [(r["tag"], r["tagged"]) for r in body["results"]] == [("", False)]
    unknown = client.get(API.format(project.pk), {"pulled": "unknown"}).json()["results"]
    assert unknown[0]["pull_source"] == "none"


def test_both_exports_carry_usage_in_the_same_columns(rows, login, viewer, project):
    response = login(viewer).get(reverse("imagesync:image-export"), {"tagged": "all"})
    page_rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    out = io.StringIO()
    call_command(
        "export_images", "--project", project.name, "--format", "csv", "--tagged", "all", stdout=out
    )
    command_rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(page_rows[0])[-4:] == ["last_pulled", "pull_count", "pull_source", "tagged"]
    assert list(page_rows[0]) == list(command_rows[0])
    by_tag = {row["tag"]: row for row in command_rows}
    assert by_tag[""]["tagged"] == "false"
    assert by_tag["never"]["last_pulled"] == "" and by_tag["never"]["pull_source"] == "harbor"
    assert by_tag["unknown"]["pull_source"] == "none" and by_tag["unknown"]["pull_count"] == ""
    assert by_tag["recent"]["pull_count"] == "7"
    out = io.StringIO()
    call_command("export_images", "--project", project.name, "--format", "csv", stdout=out)
    assert "" not in {row["tag"] for row in csv.DictReader(io.StringIO(out.getvalue()))}


def test_the_inventory_as_of_a_moment_ignores_usage_filters(rows, login, viewer):
    client = login(viewer)
    moment = (timezone.now() + timedelta(seconds=-1)).strftime("%Y-%m-%dT%H:%M:%S")
    response = client.get(URL, {"as_of": moment, "pulled": "never", "tagged": "untagged"})
    assert response.status_code == 200


# --- pull notifications at the receiver ------------------------------------------------------


def pull_body(*events: dict) -> bytes:
    import json

    return json.dumps({"events": list(events)}).encode()


def pull_event(repository: str, digest: str, **changes) -> dict:
    from tests.support.registry_events import distribution_event

    event = distribution_event("pull", repository, None, digest=digest)
    event.update(changes)
    return event


def test_pull_notifications_set_last_pulled_of_inventory_images_only(registry, client):
    from imagesync.events import EventReceiver
    from tests.support.registry_events import DOCKER_LAYER, hook_post

    receiver = EventReceiver.of(registry)
    secret = receiver.enable()
    repository = make_repository(registry, "team/api")
    row = make_image(repository, "1.0")
    console = {"useragent": "imagesync-console/0.1", "method": "HEAD"}
    bodies = [
        pull_event("team/api", row.digest, request=console),  # the console's own request
        pull_event(
            "team/api",
            row.digest,
            target={"repository": "team/api", "digest": row.digest, "mediaType": DOCKER_LAYER},
        ),  # a blob
        pull_event("team/api", "sha256:" + "0" * 64),  # not in the inventory
        pull_event("other/repo", row.digest),  # another repository
    ]
    for event in bodies:
        assert hook_post(client, receiver, pull_body(event), secret).status_code == 202
    row.refresh_from_db()
    assert row.last_pulled is None and row.pull_source == ""

    later = pull_event("team/api", row.digest, timestamp="2026-11-30T10:00:00.5Z")
    earlier = pull_event("team/api", row.digest, timestamp="2026-11-01T10:00:00Z")
    assert hook_post(client, receiver, pull_body(later), secret).status_code == 202
    assert hook_post(client, receiver, pull_body(earlier), secret).status_code == 202
    row.refresh_from_db()
    assert row.last_pulled.isoformat() == "2026-11-30T10:00:00.500000+00:00"  # never back
    assert (row.pull_source, row.pull_known) == ("events", True)
    assert not Change.objects.exists()

    future = pull_event("team/api", row.digest, timestamp="2999-01-01T00:00:00Z")
    assert hook_post(client, receiver, pull_body(future), secret).status_code == 202
    row.refresh_from_db()
    assert row.last_pulled <= timezone.now()  # a clock in the future is not believed
