"""The Changes tab: every change of the project (added, re-pushed, removed), newest first,
filtered, sorted, paged and exported like Image View -- and Manage Task's links into it.

The history is built by real reconciles (tests/support/changes.py), so what the page shows is
what the sync engine records."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.db import transaction
from django.urls import reverse

from imagesync.history import Change
from imagesync.models import Registry, Repository, SyncTask
from tests.support.changes import build_history
from tests.support.factories import make_repository
from tests.support.fakes import image
from tests.support.web import body_of, fragment_headers

URL = "/changes/"


@pytest.fixture
def history(db, project):
    return build_history(project)


def rows_of(response) -> list[str]:
    """The kind and tag of each table row, in order ("repushed v1")."""
    return [
        f"{kind} {tag}"
        for kind, tag in re.findall(
            r'<tr data-kind="(\w+)">(?:(?!</tr>).)*?<code>([^<]+)</code>', body_of(response), re.S
        )
    ]


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body_of(response))))


def test_the_changes_tab_lists_every_change_newest_first(login, viewer, history):
    response = login(viewer).get(URL)
    assert response.status_code == 200
    assert rows_of(response) == [
        "removed v2",
        "added v3",
        "repushed v1",
        "added w1",
        "added v2",
        "added v1",
    ]
    body = body_of(response)
    assert "<strong>6</strong> changes" in body
    assert 'aria-current="page"><span class="nav-icon" aria-hidden="true">◷</span> Changes' in body


def test_a_repushed_tag_shows_its_old_and_its_new_digest(login, viewer, history):
    body = body_of(login(viewer).get(URL, {"kind": "repushed"}))
    old_hex, new_hex = history.v1_old[7:19], history.v1_new[7:19]
    assert re.search(
        rf'title="{history.v1_old}">{old_hex}</code>.*?→.*?title="{history.v1_new}">{new_hex}',
        body,
        re.S,
    )
    assert "Pushed (registry&#x27;s time)" in body  # the registry's own time, labelled as such


@pytest.mark.parametrize(
    "query,expected",
    [
        ({"kind": "repushed"}, ["repushed v1"]),
        ({"kind": "removed"}, ["removed v2"]),
        ({"since": "2026-11-02"}, ["removed v2", "added v3", "repushed v1"]),
        ({"until": "2026-11-01"}, ["added w1", "added v2", "added v1"]),
        ({"since": "2026-11-01T09:00:00Z", "until": "2026-11-02T08:00:00Z"}, None),
        ({"type": "harbor"}, ["added w1"]),
        ({"path": "WEB"}, ["added w1"]),
        ({"tag": "v2"}, ["removed v2", "added v2"]),
    ],
)
def test_each_filter_narrows_the_list(login, viewer, history, query, expected):
    expected = expected or ["removed v2", "added v3", "repushed v1"]
    assert rows_of(login(viewer).get(URL, query)) == expected


@pytest.mark.parametrize("budget", [5000, 4, 3])  # 4 distinct tags: listed, or too many
def test_the_tag_filter_matches_any_part_in_any_case(login, viewer, history, budget, monkeypatch):
    monkeypatch.setattr("imagesync.filters.DISTINCT_TAGS_BUDGET", budget)
    client = login(viewer)
    assert rows_of(client.get(URL, {"tag": "V"})) == [
        "removed v2",
        "added v3",
        "repushed v1",
        "added v2",
        "added v1",
    ]
    assert rows_of(client.get(URL, {"tag": "1"})) == ["repushed v1", "added w1", "added v1"]
    assert rows_of(client.get(URL, {"tag": "w1"})) == ["added w1"]
    assert rows_of(client.get(URL, {"tag": "%"})) == []
    assert rows_of(client.get(URL, {"tag": "x"})) == []
    assert "<strong>3</strong> changes" in body_of(client.get(URL, {"tag": "1"}))


def test_a_digest_matches_the_old_or_the_new_digest_by_prefix(login, viewer, history):
    client = login(viewer)
    # v1's first digest: its addition, and the re-push that replaced it
    assert rows_of(client.get(URL, {"digest": history.v1_old[7:19].upper()})) == [
        "repushed v1",
        "added v1",
    ]
    assert rows_of(client.get(URL, {"digest": history.v1_new})) == ["repushed v1"]
    assert rows_of(client.get(URL, {"digest": history.v2})) == ["removed v2", "added v2"]


def test_registry_task_and_repository_filters(login, viewer, history, project):
    client = login(viewer)
    other = Registry.objects.create(project=project, kind="other", name="empty", endpoint="x")
    assert len(rows_of(client.get(URL, {"registry": history.registry.pk}))) == 6
    assert rows_of(client.get(URL, {"registry": other.pk})) == []
    assert rows_of(client.get(URL, {"task": history.first.pk})) == [
        "added w1",
        "added v2",
        "added v1",
    ]
    scoped = client.get(URL, {"task": history.second.pk, "repository": history.api.pk})
    assert rows_of(scoped) == ["removed v2", "added v3", "repushed v1"]
    assert f'seen by <a href="/tasks/{history.second.pk}/"' in body_of(scoped)
    assert "to repository team-hist/api" in body_of(scoped)


def test_sorting_by_a_column_and_back(login, viewer, history):
    client = login(viewer)
    ascending = client.get(URL, {"sort": "tag"})
    assert [row.split()[1] for row in rows_of(ascending)] == ["v1", "v1", "v2", "v2", "v3", "w1"]
    assert '<th scope="col" aria-sort="ascending"><a href="/changes/?sort=-tag">Tag' in body_of(
        ascending
    )
    oldest = client.get(URL, {"sort": "time"})
    assert rows_of(oldest)[:3] == ["added v1", "added v2", "added w1"]


def test_pages_of_10_20_50_or_100_rows(login, viewer, history):
    task = SyncTask.objects.create(project=history.registry.project)
    with transaction.atomic():
        history.web.reconcile([image("w1"), *(image(f"x{n:02}") for n in range(25))], task=task)
    client = login(viewer)
    first = client.get(URL, {"per_page": 20})
    assert len(rows_of(first)) == 20
    assert "Page 1 of 2" in body_of(first)
    assert len(rows_of(client.get(URL, {"per_page": 20, "page": 2}))) == 11
    assert len(rows_of(client.get(URL, {"per_page": 10}))) == 10
    assert len(rows_of(client.get(URL, {"per_page": 50}))) == 31


def test_the_csv_holds_exactly_what_the_filters_show(login, viewer, history):
    client = login(viewer)
    rows = csv_rows(client.get("/changes/export.csv", {"since": "2026-11-02", "sort": "tag"}))
    assert list(rows[0]) == [
        "time",
        "kind",
        "registry",
        "type",
        "namespace",
        "repository",
        "tag",
        "old_digest",
        "new_digest",
        "task",
    ]
    assert [(row["kind"], row["tag"]) for row in rows] == [
        ("repushed", "v1"),
        ("removed", "v2"),
        ("added", "v3"),
    ]
    assert rows[0]["old_digest"] == history.v1_old and rows[0]["new_digest"] == history.v1_new
    assert rows[1]["new_digest"] == "" and rows[2]["old_digest"] == ""
    assert {row["task"] for row in rows} == {str(history.second.pk)}
    assert rows[0]["time"] == "2026-11-02T08:00:00+00:00"


def test_csv_cells_never_start_a_formula(login, viewer, history):
    Registry.objects.filter(pk=history.registry.pk).update(name='=HYPERLINK("http://evil","x")')
    with transaction.atomic():
        Repository.objects.get(pk=history.api.pk).reconcile(
            [image("v1", "v1-rebuilt"), image("v3"), image("@sum")]
        )
    rows = csv_rows(login(viewer).get("/changes/export.csv", {"tag": "sum"}))
    assert rows[0]["tag"] == "'@sum"
    assert rows[0]["registry"] == '\'=HYPERLINK("http://evil","x")'


def test_rows_link_to_the_tags_timeline_and_the_task(login, viewer, history):
    body = body_of(login(viewer).get(URL, {"kind": "repushed"}))
    timeline = reverse("imagesync:tag-history", args=[history.api.pk, "v1"])
    assert f'<a href="{timeline}"' in body
    assert f'<a href="/tasks/{history.second.pk}/"' in body


def test_a_removed_connection_keeps_its_changes_listed(login, admin_user, history):
    history.registry.remove(admin_user)
    response = login(admin_user).get(URL)
    body = body_of(response)
    assert Change.objects.filter(source=Change.Source.CONNECTION_REMOVED).count() == 3
    assert len(rows_of(response)) == 9
    assert 'reg-hist <span class="muted">(connection removed)</span>' in body
    assert "Connection removed" in body
    assert "/tags/" not in body  # no timeline link: the repository is gone
    rows = csv_rows(login(admin_user).get("/changes/export.csv", {"kind": "removed"}))
    assert {row["registry"] for row in rows} == {"reg-hist"}
    assert {row["tag"] for row in rows} == {"v1", "v2", "v3", "w1"}


def test_an_htmx_request_gets_the_table_fragment(login, viewer, history):
    response = login(viewer).get(URL, {"kind": "added"}, headers=fragment_headers())
    body = body_of(response)
    assert "<html" not in body
    assert len(rows_of(response)) == 4
    assert 'id="change-filter-state" hx-swap-oob="true"' in body


@pytest.mark.parametrize(
    "query,message",
    [
        ({"since": "2026-13-45"}, "Give a day (YYYY-MM-DD) or an ISO 8601 time."),
        ({"until": "yesterday"}, "Give a day (YYYY-MM-DD) or an ISO 8601 time."),
        ({"digest": "xyz"}, "A digest is made of hex characters (0-9, a-f)"),
        ({"digest": "sha256:12g4"}, "A digest is made of hex characters (0-9, a-f)"),
        ({"digest": "md5:abcd"}, "A digest starts with sha256: or sha512:"),
        ({"task": "9" * 40}, "Task"),
        ({"kind": "renamed"}, "Select a valid choice"),
    ],
)
def test_bad_input_is_a_clear_message_and_no_rows(login, viewer, history, query, message):
    response = login(viewer).get(URL, query)
    assert response.status_code == 200
    body = body_of(response)
    assert "Some filters are not valid, so no changes are shown" in body
    assert message in body
    assert rows_of(response) == []
    assert login(viewer).get("/changes/export.csv", query).status_code == 200
    assert csv_rows(login(viewer).get("/changes/export.csv", query)) == []


def test_an_empty_project_says_no_change_is_recorded_yet(login, viewer, project):
    body = body_of(login(viewer).get(URL))
    assert "No changes recorded yet" in body


def test_the_task_page_totals_its_changes_and_links_to_them(login, viewer, history):
    from tests.support.factories import make_result

    make_result(history.second, history.api, "finished", images_added=1, images_removed=1)
    body = body_of(login(viewer).get(f"/tasks/{history.second.pk}/"))
    task = history.second.pk
    for kind, label in (
        ("added", "1 added"),
        ("repushed", "1 re-pushed"),
        ("removed", "1 removed"),
    ):
        assert f'<a href="/changes/?task={task}&amp;kind={kind}">{label}</a>' in body
    link = f'href="/changes/?task={task}&amp;repository={history.api.pk}"'
    assert link in body
    # and the link shows exactly that task's changes of that repository
    client = login(viewer)
    scoped = client.get(URL, {"task": task, "repository": history.api.pk})
    assert rows_of(scoped) == ["removed v2", "added v3", "repushed v1"]


def test_another_projects_changes_are_never_shown(login, outsider, viewer, history, other_project):
    theirs = make_repository(
        Registry.objects.create(
            project=other_project, kind="other", name="reg-their", endpoint="x"
        ),
        "their/app",
    )
    with transaction.atomic():
        theirs.reconcile([image("only-theirs")])
    client = login(outsider)
    for query in (
        {},
        {"task": history.second.pk},
        {"repository": history.api.pk},
        {"registry": history.registry.pk},
        {"digest": history.v1_old},
    ):
        for url in (URL, "/changes/export.csv"):
            body = body_of(client.get(url, query))
            assert "team-hist" not in body and "reg-hist" not in body, (url, query)
    assert rows_of(client.get(URL)) == ["added only-theirs"]
    assert "only-theirs" not in body_of(login(viewer).get(URL))
