"""Image View as of a moment: the page, its CSV, `export_images --as-of` and the API's
`as_of`, with the same filters, sorts and counts as the live view; bad moments are clear
messages (400 in the API), and every persona sees exactly what it sees live."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.urls import reverse
from django.utils import timezone

from imagesync.models import Registry
from tests.support.api import api_as, api_url
from tests.support.factories import make_repository
from tests.support.fakes import digest, image
from tests.support.history_steps import export, fail_at, sync_at

pytestmark = pytest.mark.django_db

START = timezone.now().replace(microsecond=0) - timedelta(days=10)
FIRST = START  # api: 1.0, 2.0; web: a, b
SECOND = START + timedelta(hours=1)  # api: 1.0 re-pushed, 2.0 removed, 3.0 added
THIRD = START + timedelta(hours=2)  # web emptied
BETWEEN = START + timedelta(minutes=30)


@pytest.fixture
def history(registry):
    """Two repositories synchronized three times: the moments above."""
    api = make_repository(registry, "team/api")
    web = make_repository(registry, "front/web", "harbor")
    sync_at(api, [image("1.0", minutes=1), image("2.0", minutes=2)], FIRST)
    sync_at(web, [image("a", "web-a", minutes=3), image("b", "web-b", minutes=4)], FIRST)
    sync_at(api, [image("1.0", "1.0-again", minutes=5), image("3.0", minutes=6)], SECOND)
    sync_at(web, [], THIRD)
    return api, web


def page(client, **params):
    return client.get(reverse("imagesync:image-list"), params)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def exported_csv(client, **params) -> str:
    response = client.get(reverse("imagesync:image-export"), params)
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


# --- the page -------------------------------------------------------------------------------


def test_the_page_shows_the_tags_and_digests_of_that_moment(history, login, viewer):
    client = login(viewer)
    body = page(client, as_of=BETWEEN.isoformat()).content.decode()
    assert "Historical view" in body
    assert digest("1.0")[7:19] in body  # the digest 1.0 had before its re-push
    assert digest("1.0-again")[7:19] not in body
    assert "<code>2.0</code>" in body and "<code>3.0</code>" not in body
    assert "<code>a</code>" in body  # web was emptied later
    now_body = page(client).content.decode()
    assert "Historical view" not in now_body and "<code>3.0</code>" in now_body


def test_the_banner_links_back_to_the_current_inventory(history, login, viewer):
    body = page(login(viewer), as_of=BETWEEN.isoformat(), tag="1").content.decode()
    assert 'href="/images/?tag=1"' in body or "Back to the current inventory" in body
    assert "Back to the current inventory" in body


def test_a_day_means_the_end_of_that_day(history, login, viewer):
    day_before = (timezone.localtime(FIRST) - timedelta(days=1)).date()
    response = page(login(viewer), as_of=day_before.isoformat())
    assert "The inventory history starts at" in response.content.decode()
    day = timezone.localtime(THIRD).date().isoformat()
    rows = csv_rows(exported_csv(login(viewer), as_of=day, ordering="tag"))
    assert [row["tag"] for row in rows] == ["1.0", "3.0"]


def test_counts_filters_and_sorts_apply_to_that_moment(history, login, viewer):
    client = login(viewer)
    moment = BETWEEN.isoformat()
    body = page(client, as_of=moment).content.decode()
    assert "<strong>4</strong> images" in body
    harbor = page(client, as_of=moment, type="harbor").content.decode()
    assert "<strong>2</strong> images" in harbor and "<code>1.0</code>" not in harbor

    def tags(**params) -> list[str]:
        return [row["tag"] for row in csv_rows(exported_csv(client, as_of=moment, **params))]

    assert tags(ordering="tag") == ["1.0", "2.0", "a", "b"]
    assert tags(ordering="-tag") == ["b", "a", "2.0", "1.0"]
    assert tags(q="front/", ordering="tag") == ["a", "b"]
    assert tags(namespace="team", ordering="tag") == ["1.0", "2.0"]
    assert tags(digest=digest("2.0")[7:19]) == ["2.0"]
    assert tags(registry=str(history[0].registry_id), tag="b") == ["b"]
    assert tags(ordering="-name,tag") == ["a", "b", "1.0", "2.0"]  # "web" > "api"
    assert tags(size_min=str(1000 + len("web-a"))) == ["b", "a"]


def test_the_type_counts_are_those_of_that_moment(history, login, viewer):
    api = api_as(viewer)
    url = api_url("image-type-counts", project_id=history[0].registry.project_id)
    counts = {row["type"]: row["count"] for row in api.get(url, {"as_of": THIRD}).json()}
    assert counts["other"] == 2 and counts["harbor"] == 0
    counts = {row["type"]: row["count"] for row in api.get(url, {"as_of": BETWEEN}).json()}
    assert counts["other"] == 2 and counts["harbor"] == 2


def test_last_synced_is_the_repositorys_last_sync_at_that_moment(history, login, viewer):
    api, _web = history
    fail_at(api, BETWEEN - timedelta(minutes=1))  # a failed listing is no sync
    client = login(viewer)
    rows = csv_rows(exported_csv(client, as_of=BETWEEN.isoformat(), ordering="tag"))
    assert {row["last_synced"] for row in rows} == {FIRST.isoformat()}
    rows = csv_rows(exported_csv(client, as_of=SECOND.isoformat(), ordering="tag"))
    assert [(row["tag"], row["last_synced"]) for row in rows] == [
        ("1.0", SECOND.isoformat()),
        ("3.0", SECOND.isoformat()),
        ("a", FIRST.isoformat()),
        ("b", FIRST.isoformat()),
    ]


def test_last_synced_sorts_and_filters_as_of_that_moment(history, login, viewer):
    client = login(viewer)
    moment = SECOND.isoformat()

    def tags(**params) -> list[str]:
        return [row["tag"] for row in csv_rows(exported_csv(client, as_of=moment, **params))]

    assert tags(ordering="last_synced,tag") == ["a", "b", "1.0", "3.0"]
    assert tags(ordering="-last_synced,tag") == ["1.0", "3.0", "a", "b"]
    assert tags(synced_after=(FIRST + timedelta(minutes=1)).isoformat()) in (
        ["1.0", "3.0"],
        ["3.0", "1.0"],
    )
    assert sorted(tags(synced_before=(FIRST + timedelta(minutes=1)).isoformat())) == ["a", "b"]
    body = page(client, as_of=moment, sort="-last_synced").content.decode()
    assert 'aria-sort="descending"' in body


def test_the_csv_is_what_export_images_as_of_writes(history, login, viewer):
    project = history[0].registry.project
    for moment in (FIRST, BETWEEN, SECOND, THIRD, timezone.now()):
        page_csv = exported_csv(
            login(viewer), as_of=moment.isoformat(), ordering="registry,repository,tag"
        )
        assert page_csv == export(project, "--as-of", moment.isoformat())


def test_as_of_now_is_the_live_inventory(history, login, viewer):
    project = history[0].registry.project
    assert export(project, "--as-of", timezone.now().isoformat()) == export(project)
    assert export(project, "--as-of", timezone.now().isoformat(), fmt="json") == export(
        project, fmt="json"
    )


def test_a_removed_connection_stays_in_the_inventory_of_before(history, login, admin_user):
    api, _web = history
    registry = api.registry
    registry.remove(admin_user)
    client = login(admin_user)
    assert "<code>2.0</code>" not in page(client).content.decode()
    body = page(client, as_of=BETWEEN.isoformat(), q="team/api").content.decode()
    assert "<code>2.0</code>" in body
    # The row shows the registry and repository the history kept (the connection is gone).
    assert '<td class="nowrap">local</td>' in body and 'title="team/api">api</td>' in body
    assert f'<code title="{digest("2.0")}">{digest("2.0")[7:19]}</code>' in body
    rows = csv_rows(exported_csv(client, as_of=BETWEEN.isoformat(), ordering="tag", type="other"))
    assert [(row["tag"], row["registry"], row["last_synced"]) for row in rows] == [
        ("1.0", "local", FIRST.isoformat()),
        ("2.0", "local", FIRST.isoformat()),
    ]
    later = csv_rows(exported_csv(client, as_of=SECOND.isoformat(), ordering="-last_synced"))
    assert [row["tag"] for row in later][:2] in (["1.0", "3.0"], ["3.0", "1.0"])


# --- bad input ------------------------------------------------------------------------------


BAD_MOMENTS = [
    ("yesterday-ish", "Give a day (YYYY-MM-DD) or an ISO 8601 time."),
    ("2026-02-30", "Give a day (YYYY-MM-DD) or an ISO 8601 time."),
    ("99999-01-01", "Give a day (YYYY-MM-DD) or an ISO 8601 time."),
    ("0999-01-01", "Give a time between the years 1000 and 9000."),
    ("future", "is in the future"),
    ("future-day", "That day is in the future"),
    ("before", "The inventory history starts at"),
]


def _bad(value: str) -> str:
    if value == "future":
        return (timezone.now() + timedelta(hours=1)).isoformat()
    if value == "future-day":
        return (timezone.localtime() + timedelta(days=2)).date().isoformat()
    if value == "before":
        return (FIRST - timedelta(seconds=1)).isoformat()
    return value


@pytest.mark.parametrize(("value", "message"), BAD_MOMENTS)
def test_a_bad_moment_is_a_clear_message_on_the_page(history, login, viewer, value, message):
    response = page(login(viewer), as_of=_bad(value))
    body = response.content.decode()
    assert response.status_code == 200
    assert message in body and "As of:" in body
    assert "<code>1.0</code>" not in body  # no rows while a filter is not valid


@pytest.mark.parametrize(("value", "message"), BAD_MOMENTS)
def test_a_bad_moment_is_a_400_in_the_api(history, viewer, value, message):
    url = api_url("image-list", project_id=history[0].registry.project_id)
    response = api_as(viewer).get(url, {"as_of": _bad(value)})
    assert response.status_code == 400
    assert message in str(response.json())


@pytest.mark.parametrize(("value", "message"), BAD_MOMENTS)
def test_a_bad_moment_is_a_command_error(history, value, message):
    with pytest.raises(CommandError, match=message.split(" (")[0][:20]):
        export(history[0].registry.project, "--as-of", _bad(value))


def test_a_project_without_history_says_so(project, registry, login, viewer):
    body = page(login(viewer), as_of=BETWEEN.isoformat()).content.decode()
    assert "no inventory history yet" in body


# --- the API --------------------------------------------------------------------------------


def test_the_api_lists_the_images_of_that_moment_with_filters_and_ordering(history, viewer):
    url = api_url("image-list", project_id=history[0].registry.project_id)
    data = api_as(viewer).get(url, {"as_of": BETWEEN, "ordering": "tag", "type": "other"}).json()
    assert data["count"] == 2
    first = data["results"][0]
    assert (first["tag"], first["digest"], first["repository_path"]) == (
        "1.0",
        digest("1.0"),
        "team/api",
    )
    assert first["last_synced_at"].startswith(FIRST.strftime("%Y-%m-%dT%H:%M:%S"))
    assert first["registry_name"] == "local" and first["type"] == "other"
    assert first["short_digest"] == digest("1.0")[7:19]
    paged = api_as(viewer).get(url, {"as_of": BETWEEN, "ordering": "-tag", "page_size": 1})
    assert paged.json()["count"] == 4 and paged.json()["results"][0]["tag"] == "b"


def test_the_api_as_of_is_404_for_another_projects_member(history, outsider):
    url = api_url("image-list", project_id=history[0].registry.project_id)
    assert api_as(outsider).get(url, {"as_of": BETWEEN}).status_code == 404


def test_an_outsider_never_sees_this_projects_history(history, login, outsider):
    other = Registry.objects.filter(project__name="elsewhere").exists()
    assert not other
    body = page(login(outsider), as_of=BETWEEN.isoformat()).content.decode()
    assert "<code>2.0</code>" not in body and "team/api" not in body
    rows = csv_rows(exported_csv(login(outsider), as_of=timezone.now().isoformat()))
    assert rows == []


@pytest.mark.parametrize("persona", ["viewer", "operator", "admin_user"])
def test_every_member_sees_the_same_historical_inventory(history, login, persona, request):
    client = login(request.getfixturevalue(persona))
    rows = csv_rows(exported_csv(client, as_of=BETWEEN.isoformat(), ordering="tag"))
    assert [row["tag"] for row in rows] == ["1.0", "2.0", "a", "b"]
