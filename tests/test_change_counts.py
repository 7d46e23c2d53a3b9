"""The Changes tab and the API's changes list count their matches only up to IMAGE_COUNT_LIMIT,
as Image View does (tests/test_image_counts.py): past it the page says "More than N changes"
and "Page X", the API's `count` is a lower bound (`count_is_lower_bound`), while every row is
still shown exactly, paging reaches the last one, the last page knows its total, and the CSV
export stays exact. The history is built by real reconciles (tests/support/changes.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from imagesync.history import Change
from imagesync.models import SyncTask
from tests.support.api import api_as, assert_error, bound_counts, follow_pages
from tests.support.changes import build_history
from tests.support.fakes import image
from tests.support.web import body_of

LIMIT = 12
URL = "/changes/"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _small_bound(db, settings):
    bound_counts(settings, LIMIT)


@pytest.fixture
def history(project):
    """build_history's 6 changes, then a third sync adding x00..x24 to the harbor repository
    `web`: 31 changes, 26 of them to `web`, 29 additions."""
    history = build_history(project)
    task = SyncTask.objects.create(project=project, status=SyncTask.Status.SUCCEEDED)
    with transaction.atomic():
        history.web.reconcile([image("w1"), *(image(f"x{n:02}") for n in range(25))], task=task)
    return history


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body_of(response)))


def _page(client, **query):
    response = client.get(URL, query)
    assert response.status_code == 200
    return response


def _ids(response) -> list[int]:
    return [change.pk for change in response.context["page"].object_list]


def _all_ids(project, **filters) -> list[int]:
    rows = Change.objects.filter(project=project, **filters).order_by("-time", "-id")
    return list(rows.values_list("pk", flat=True))


# --- the page -------------------------------------------------------------------------------


def test_past_the_bound_the_page_says_more_than_and_pages_to_the_last_row(
    login, viewer, history, project
):
    client = login(viewer)
    first = _page(client, per_page=10)
    text = _text(first)
    assert "More than 12 changes" in text and "Page 1" in text and "Page 1 of" not in text
    assert 'rel="next"' in body_of(first)
    second = _page(client, per_page=10, page=2)
    # Rows up to the second page's end and one after it are known to exist.
    assert "More than 20 changes" in _text(second) and "Page 2 of" not in _text(second)
    third = _page(client, per_page=10, page=3)
    if connection.vendor == "sqlite":
        # A page past the bound: SQLite counts every row (cheaper than its walk; paging.py).
        assert "31 changes" in _text(third) and "Page 3 of 4" in _text(third)
    else:
        assert "More than 30 changes" in _text(third) and "Page 3 of" not in _text(third)
    last = _page(client, per_page=10, page=4)
    assert "31 changes" in _text(last) and "More than" not in _text(last)
    assert "Page 4 of 4" in _text(last) and 'rel="next"' not in body_of(last)
    shown = [pk for page in (first, second, third, last) for pk in _ids(page)]
    assert shown == _all_ids(project) and len(shown) == 31


def test_a_deep_page_of_a_sort_by_tag_is_counted_and_read_from_the_nearer_end(
    login, viewer, history, project
):
    # Sorted by anything but time, a page past the bound counts every change on either
    # database (walking to it would sort every change before it), so it knows its total.
    client = login(viewer)
    third = _page(client, per_page=10, page=3, sort="tag")
    assert "31 changes" in _text(third) and "Page 3 of 4" in _text(third)
    expected = list(
        Change.objects.filter(project=project)
        .order_by("tag", "time", "id")
        .values_list("pk", flat=True)
    )
    assert _ids(third) == expected[20:30]
    body = api_as(viewer).get(_api_url(project), {"ordering": "tag", "page": 3, "page_size": 10})
    body = body.json()
    assert body["count"] == 31 and body["count_is_lower_bound"] is False
    assert [row["id"] for row in body["results"]] == expected[20:30]


def test_a_page_past_the_end_is_the_last_page_counted_exactly(login, viewer, history):
    client = login(viewer)
    for number in ("9", "0", "-1"):
        response = _page(client, per_page=10, page=number)
        assert response.context["page"].number == 4 and len(_ids(response)) == 1
        assert "Page 4 of 4" in _text(response) and "31 changes" in _text(response)
    assert _page(client, per_page=10, page="abc").context["page"].number == 1


def test_under_the_bound_the_count_is_exact(login, viewer, history):
    response = _page(login(viewer), tag="x1")  # x10..x19
    assert " 10 changes" in _text(response) and "More than" not in _text(response)
    assert response.context["page"].paginator.count == 10


def test_filters_combined_past_and_under_the_bound(login, viewer, history, project):
    client = login(viewer)
    added_to_web = _page(client, kind="added", type="harbor", per_page=20)  # w1, x00..x24
    assert "More than 20 changes" in _text(added_to_web) and 'rel="next"' in body_of(added_to_web)
    rest = _page(client, kind="added", type="harbor", per_page=20, page=2)
    assert "26 changes" in _text(rest) and "Page 2 of 2" in _text(rest)
    expected = _all_ids(project, kind="added", repository_type="harbor")
    assert _ids(added_to_web) + _ids(rest) == expected
    one_task = _page(client, kind="added", task=history.first.pk, tag="v")  # v1, v2
    assert " 2 changes" in _text(one_task) and "More than" not in _text(one_task)
    none = _page(client, kind="removed", type="harbor")
    assert "No changes match these filters" in _text(none)
    assert "No changes recorded yet" not in _text(none)


def test_the_bound_is_on_one_page_that_holds_every_match(login, viewer, history):
    # 26 changes to `web` on one page of 50: the last page, so its total is exact again.
    response = _page(login(viewer), type="harbor", per_page=50)
    assert "26 changes" in _text(response) and "More than" not in _text(response)
    assert len(_ids(response)) == 26 and 'rel="next"' not in body_of(response)


def test_the_page_never_counts_every_change(login, viewer, history):
    """A million changes: counting them all costs more than the page; the count is bounded,
    and whether the project has changes at all is not a count."""
    client = login(viewer)
    with CaptureQueriesContext(connection) as queries:
        _page(client, per_page=10)
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "the page counts its matches up to the bound"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_the_empty_project_still_says_no_change_is_recorded(login, viewer, project):
    response = _page(login(viewer))
    assert "No changes recorded yet" in _text(response) and "More than" not in _text(response)


def test_the_bounded_page_in_chinese(login, viewer, history):
    client = login(viewer)
    response = client.get(URL, {"per_page": 10}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    text = _text(response)
    assert "超过 12 条变更" in text and "第 1 页" in text and "第 1 页，共" not in text
    last = client.get(URL, {"per_page": 10, "page": 4}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "31 条变更" in _text(last) and "第 4 页，共 4 页" in _text(last)


def test_the_csv_export_has_every_row_past_the_bound(login, viewer, history):
    response = login(viewer).get("/changes/export.csv", {"type": "harbor"})
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 1 + 26  # the header and every change to `web`


# --- the API --------------------------------------------------------------------------------


def _api_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/changes/"


def test_the_api_count_is_a_lower_bound_past_the_bound_and_next_reaches_the_end(
    viewer, project, history
):
    client = api_as(viewer)
    body = client.get(_api_url(project), {"page_size": 10}).json()
    assert body["count"] == LIMIT + 1 and body["count_is_lower_bound"] is True
    ids, pages, body = follow_pages(client, body)
    assert pages == 4 and body["count"] == 31 and body["count_is_lower_bound"] is False
    assert ids == _all_ids(project)
    assert_error(client.get(_api_url(project), {"page": 5, "page_size": 10}), 404, "not_found")
    last = client.get(_api_url(project), {"page": "last", "page_size": 10}).json()
    assert [row["id"] for row in last["results"]] == ids[30:]
    assert last["count"] == 31 and last["count_is_lower_bound"] is False


def test_the_api_count_is_exact_under_the_bound_and_with_filters(viewer, project, history):
    client = api_as(viewer)
    body = client.get(_api_url(project), {"tag": "x1", "page_size": 2}).json()
    assert body["count"] == 10 and body["count_is_lower_bound"] is False
    body = client.get(_api_url(project), {"kind": "added", "type": "harbor", "page_size": 50})
    body = body.json()
    assert body["count"] == 26 and body["count_is_lower_bound"] is False  # one page holds all
    body = client.get(_api_url(project), {"kind": "added", "type": "harbor", "page_size": 5})
    assert body.json()["count_is_lower_bound"] is True and body.json()["count"] == LIMIT + 1
    body = client.get(_api_url(project), {"kind": "removed", "type": "harbor"}).json()
    assert body["count"] == 0 and body["count_is_lower_bound"] is False and body["results"] == []


def test_the_schema_documents_the_lower_bound_of_changes(db):
    from django.test import Client

    schema = Client().get("/api/v1/schema/", {"format": "json"}).json()
    paged = schema["components"]["schemas"]["PaginatedChangeList"]
    assert "count_is_lower_bound" in paged["required"]
    assert paged["properties"]["count"]["description"].startswith("Changes that match")
    images = schema["components"]["schemas"]["PaginatedImageList"]
    assert images["properties"]["count"]["description"].startswith("Images that match")


# --- the setting ----------------------------------------------------------------------------


def _manage(*args, **env):
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_bound_is_read_from_the_environment():
    code = "from django.conf import settings; print(settings.IMAGE_COUNT_LIMIT)"
    for value, limit in (("250", "250"), ("", "10000")):
        result = _manage("shell", "-c", code, IMAGE_COUNT_LIMIT=value)
        assert result.stdout.strip().splitlines()[-1] == limit
    for bad in ("0", "lots"):
        result = _manage("check", IMAGE_COUNT_LIMIT=bad)
        assert result.returncode != 0 and "IMAGE_COUNT_LIMIT" in result.stderr
        assert "Traceback" not in result.stderr
