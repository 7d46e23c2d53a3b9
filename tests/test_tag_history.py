"""A tag's timeline: from an Image View row, every digest the tag has pointed to, from when to
when, which task saw each change, and the changes themselves -- on the page, in the JSON API
and in a real browser (the previous digest of a re-pushed tag in three clicks)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from imagesync.models import ProjectMembership
from tests.support.api import api_as, assert_error, reset_rate_limits
from tests.support.factories import PASSWORD
from tests.support.fakes import digest
from tests.support.history_seed import T1, T2, T3, connect, image, repository_of, sync
from tests.support.web import body_of

OLD, NEW = digest("stable-1"), digest("stable-2")


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db):
    reset_rate_limits()


def seed(project) -> dict:
    """stable: added at T1, re-pushed at T2, removed at T3; 1.0 added at T1 and kept."""
    repository = repository_of(connect(project, "hub"), "team/api")
    added = sync(repository, [image("stable", "stable-1"), image("1.0")], T1)
    repushed = sync(repository, [image("stable", "stable-2", minutes=90), image("1.0")], T2)
    removed = sync(repository, [image("1.0")], T3)
    return {"repository": repository, "tasks": (added, repushed, removed)}


@pytest.fixture
def world(project):
    return seed(project)


def timeline_url(world, tag: str = "stable") -> str:
    return reverse("imagesync:tag-history", args=[world["repository"].pk, tag])


def rows(body: str, table_id: str) -> list[str]:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', body, re.S)
    assert table, f"no table {table_id}"
    return re.findall(r"<tr>(.*?)</tr>", table.group(0).split("<tbody>", 1)[1], re.S)


def test_the_timeline_shows_every_state_newest_first_with_the_task_that_saw_it(
    client, viewer, world
):
    client.force_login(viewer)
    response = client.get(timeline_url(world))
    assert response.status_code == 200
    body = body_of(response)
    states = rows(body, "tag-states")
    assert [NEW in row for row in states] == [True, False]
    assert OLD in states[1]
    added, repushed, removed = world["tasks"]
    assert f"/tasks/{repushed.pk}/" in states[0] and ">now<" not in states[0]
    assert f"/tasks/{added.pk}/" in states[1]
    assert "Pushed (registry&#x27;s time)" in body or "Pushed (registry's time)" in body
    assert "Removed (no longer in the registry)" in body


def test_the_changes_read_added_repushed_old_to_new_and_removed(client, viewer, world):
    client.force_login(viewer)
    changes = rows(body_of(client.get(timeline_url(world))), "tag-changes")
    assert len(changes) == 3
    assert "Removed" in changes[0] and "Re-pushed" in changes[1] and "Added" in changes[2]
    assert re.search(rf"{OLD}</code> → <code[^>]*>{NEW}", changes[1])
    added, repushed, removed = world["tasks"]
    for task, row in zip((removed, repushed, added), changes, strict=True):
        assert f"/tasks/{task.pk}/" in row


def test_a_current_tag_says_since_when_it_has_its_digest(client, viewer, world):
    client.force_login(viewer)
    body = body_of(client.get(timeline_url(world, "1.0")))
    assert f"{digest('1.0')}</code> since 2026-11-01 09:00:00" in body
    assert ">now<" in rows(body, "tag-states")[0]


def test_every_image_view_row_links_to_its_tags_history(client, viewer, world):
    client.force_login(viewer)
    body = body_of(client.get(reverse("imagesync:image-list")))
    assert f'href="{timeline_url(world, "1.0")}"' in body


def test_tags_with_dots_dashes_and_underscores_have_a_timeline(client, viewer, project):
    repository = repository_of(connect(project, "hub"), "team/odd")
    sync(repository, [image("v1.2.3-rc_1")], T1)
    client.force_login(viewer)
    url = reverse("imagesync:tag-history", args=[repository.pk, "v1.2.3-rc_1"])
    assert url.endswith("/v1.2.3-rc_1/history/")
    assert digest("v1.2.3-rc_1") in body_of(client.get(url))


def test_a_tag_never_seen_says_so(client, viewer, world):
    client.force_login(viewer)
    response = client.get(timeline_url(world, "never"))
    assert response.status_code == 200
    assert "No history recorded for this tag" in body_of(response)


def test_another_projects_repository_is_not_found(client, outsider, world):
    client.force_login(outsider)
    response = client.get(timeline_url(world))
    assert response.status_code == 404
    assert OLD not in body_of(response)


# --- API ---------------------------------------------------------------------------------------


def api_timeline(project, world, tag: str = "stable") -> str:
    return reverse(
        "api:tag-history",
        kwargs={"project_id": project.pk, "repository_id": world["repository"].pk, "tag": tag},
    )


def test_the_api_timeline_has_states_and_changes_newest_first(project, viewer, world):
    response = api_as(viewer).get(api_timeline(project, world))
    assert response.status_code == 200
    body = response.json()
    assert body["tag"] == "stable" and body["truncated"] is False
    assert body["repository"]["path"] == "team/api"
    assert body["repository"]["registry_name"] == "hub"
    assert [s["digest"] for s in body["states"]] == [NEW, OLD]
    assert [s["current"] for s in body["states"]] == [False, False]
    assert body["states"][1]["valid_to"] == body["states"][0]["valid_from"]
    assert body["states"][0]["registry_pushed_at"].startswith("2026-11-01T09:30")
    added, repushed, removed = world["tasks"]
    assert body["states"][0]["opened_by_task_id"] == repushed.pk
    assert body["states"][0]["closed_by_task_id"] == removed.pk
    assert [(c["kind"], c["old_digest"], c["new_digest"]) for c in body["changes"]] == [
        ("removed", NEW, ""),
        ("repushed", OLD, NEW),
        ("added", "", OLD),
    ]
    assert [c["task_id"] for c in body["changes"]] == [removed.pk, repushed.pk, added.pk]


def test_the_api_says_not_found_for_an_unknown_tag_or_another_projects_repository(
    project, other_project, outsider, viewer, world
):
    assert_error(api_as(viewer).get(api_timeline(project, world, "never")), 404, "not_found")
    assert_error(api_as(outsider).get(api_timeline(project, world)), 404, "not_found")
    crossed = reverse(
        "api:tag-history",
        kwargs={
            "project_id": other_project.pk,
            "repository_id": world["repository"].pk,
            "tag": "stable",
        },
    )
    error = assert_error(api_as(outsider).get(crossed), 404, "not_found")
    assert OLD not in str(error)


# --- browser -----------------------------------------------------------------------------------


@pytest.fixture
def browser_user(transactional_db, django_user_model, project):
    user = django_user_model.objects.create_user(username="vera-browser", password=PASSWORD)
    ProjectMembership.objects.create(user=user, project=project, role="viewer")
    return user


@pytest.mark.browser
def test_a_user_finds_the_previous_digest_of_a_repushed_tag_in_three_clicks(
    ui, browser_user, project
):
    from playwright.sync_api import expect

    repository = repository_of(connect(project, "hub"), "team/api")
    sync(repository, [image("stable", "stable-1")], T1)
    sync(repository, [image("stable", "stable-2", minutes=90)], T2)
    ui.sign_in(browser_user.username, PASSWORD)
    page = ui.page
    page.get_by_role("link", name="Registry connections").first.click()  # somewhere else
    page.get_by_role("link", name="Image View").first.click()  # click 1
    page.get_by_role("link", name="History of team/api:stable").click()  # click 2
    page.wait_for_url(re.compile(r"/tags/stable/history/$"))
    previous = page.locator("#tag-states tbody tr").nth(1)
    expect(previous).to_contain_text(OLD)  # shown without a third click
    expect(page.locator("#tag-changes tbody tr").first).to_contain_text(f"{OLD} → {NEW}")
