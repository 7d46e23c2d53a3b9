"""The diff between two moments or two tasks: the tags added, re-pushed and removed between the
inventory at `from` and at `to` -- exactly what `ImageInterval.objects.at()` says of the two
moments -- on the page, as CSV and in the API; bad moments get a clear message."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.history import ImageInterval, inventory_diff
from imagesync.models import Registry
from tests.support.api import api_as, assert_error, reset_rate_limits
from tests.support.fakes import digest
from tests.support.history_seed import (
    T1,
    T2,
    T3,
    connect,
    finished_task,
    image,
    repository_of,
    sync,
)
from tests.support.web import body_of


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db):
    reset_rate_limits()


@pytest.fixture
def world(project):
    """T1: a, b, c, flip. T2: a re-pushed, b removed, d added, c unchanged, flip re-pushed and
    back at T3 (so no net change between T1 and T3), e added at T2 and removed at T3."""
    repository = repository_of(connect(project, "hub"), "team/api")
    first = sync(repository, [image("a"), image("b"), image("c"), image("flip")], T1)
    second = sync(
        repository,
        [image("a", "a2"), image("c"), image("d"), image("flip", "flip2"), image("e")],
        T2,
    )
    third = sync(repository, [image("a", "a2"), image("c"), image("d"), image("flip")], T3)
    return {"repository": repository, "tasks": (first, second, third)}


def as_tuples(diff) -> set[tuple[str, str, str, str]]:
    return {(row.kind, row.tag, row.old_digest, row.new_digest) for row in diff.rows}


def test_the_diff_between_two_tasks_lists_what_the_second_changed(project, world):
    first, second, _third = world["tasks"]
    diff = inventory_diff(project, first.finished_at, second.finished_at)
    assert as_tuples(diff) == {
        ("repushed", "a", digest("a"), digest("a2")),
        ("removed", "b", digest("b"), ""),
        ("added", "d", "", digest("d")),
        ("repushed", "flip", digest("flip"), digest("flip2")),
        ("added", "e", "", digest("e")),
    }
    assert diff.counts == {"added": 2, "repushed": 2, "removed": 1}


def test_a_tag_that_came_back_or_came_and_went_in_between_is_no_difference(project, world):
    first, _second, third = world["tasks"]
    tags = {row.tag for row in inventory_diff(project, first.finished_at, third.finished_at).rows}
    assert tags == {"a", "b", "d"}


@pytest.mark.parametrize(("start", "end"), [(T1, T2), (T1, T3), (T2, T3), (T1, T1)])
def test_the_diff_is_exactly_the_difference_of_the_inventories_at_the_two_moments(
    project, world, start, end
):
    def inventory(moment):
        rows = ImageInterval.objects.filter(project=project).at(moment)
        return dict(rows.values_list("tag", "digest"))

    before, after = inventory(start), inventory(end)
    expected = {
        ("added" if tag not in before else "removed" if tag not in after else "repushed", tag)
        for tag in before.keys() | after.keys()
        if before.get(tag) != after.get(tag)
    }
    diff = inventory_diff(project, start, end)
    assert {(row.kind, row.tag) for row in diff.rows} == expected


def test_a_removed_connection_shows_as_removed_tags_with_its_registry_name(project, world):
    gone = connect(project, "retired")
    old = repository_of(gone, "team/old")
    sync(old, [image("legacy")], T2)
    before = T2 + timedelta(minutes=5)
    Registry.objects.get(pk=gone.pk).remove()
    diff = inventory_diff(project, before, before + timedelta(days=400))
    [row] = [row for row in diff.rows if row.registry_name == "retired"]
    assert (row.kind, row.repository_path, row.tag, row.repository_id) == (
        "removed",
        "team/old",
        "legacy",
        None,
    )


# --- the page ----------------------------------------------------------------------------------


def diff_page(client, **params):
    return client.get(reverse("imagesync:history-diff"), params)


def test_the_page_shows_counts_and_rows_between_two_tasks(client, viewer, world):
    first, second, _third = world["tasks"]
    client.force_login(viewer)
    response = diff_page(client, from_task=first.pk, to_task=second.pk)
    assert response.status_code == 200
    body = body_of(response)
    assert "2 added" in body and "2 re-pushed" in body and "1 removed" in body
    assert f"{digest('a')}</code>" in body and f"{digest('a2')}</code>" in body
    assert body.count('data-kind="') == 5


def test_the_page_takes_iso_instants_and_days(client, viewer, world):
    client.force_login(viewer)
    body = body_of(diff_page(client, **{"from": "2026-11-01T09:30:00Z", "to": "2026-11-01T10:30Z"}))
    assert "2 added" in body and "1 removed" in body
    # Whole days: from the start of the history's first day to the end of the day.
    body = body_of(diff_page(client, **{"from": "2026-11-01", "to": "2026-11-01"}))
    assert "From 2026-11-01 09:00:00 to 2026-11-01 23:59:59" in body


def test_the_csv_has_the_same_rows(client, viewer, world):
    first, second, _third = world["tasks"]
    client.force_login(viewer)
    response = diff_page(client, from_task=first.pk, to_task=second.pk, format="csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body_of(response))))
    assert {(r["kind"], r["tag"]) for r in rows} == {
        ("repushed", "a"),
        ("removed", "b"),
        ("added", "d"),
        ("repushed", "flip"),
        ("added", "e"),
    }
    assert set(rows[0]) >= {"registry", "type", "repository", "old_digest", "new_digest"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "last tuesday"}, "Give a day (YYYY-MM-DD) or an ISO 8601 time."),
        ({"from": "2026-11-01T10:30Z", "to": "2026-11-01T09:30Z"}, "is after"),
        ({"from": "2026-11-01T09:30Z", "to": "2999-01-01T00:00Z"}, "in the future"),
        ({"from": "2999-01-01"}, "in the future"),
        ({"from": "2026-10-01T00:00Z"}, "history of this project starts at"),
        ({"from": "2026-10-01", "to": "2026-10-02"}, "history of this project starts at"),
        ({"to": "2026-11-01T10:30Z"}, "Give a start"),
        ({"from_task": "999999"}, "There is no task #999999"),
        ({"from_task": "abc"}, "Enter a whole number"),
        ({"from": "2026-11-01", "from_task": "1"}, "not both"),
    ],
)
def test_bad_moments_get_a_clear_message_on_the_page_and_in_the_api(
    client, viewer, project, world, params, message
):
    client.force_login(viewer)
    response = diff_page(client, **params)
    assert response.status_code == 200
    body = body_of(response)
    assert message in body.replace("&#x27;", "'").replace("&quot;", '"'), body[-3000:]
    assert 'id="diff-table"' not in body
    error = assert_error(api_as(viewer).get(api_diff_url(project), params), 400, "validation_error")
    assert message in str(error["details"])


def test_an_unfinished_task_is_no_moment(client, viewer, project, world):
    running = finished_task(project, T3)
    running.finished_at = None
    running.save()
    client.force_login(viewer)
    body = body_of(diff_page(client, from_task=world["tasks"][0].pk, to_task=running.pk))
    assert f"Task #{running.pk} has not finished yet." in body


def test_another_projects_task_is_no_moment(client, outsider, other_project, world):
    client.force_login(outsider)
    first, second, _third = world["tasks"]
    body = body_of(diff_page(client, from_task=first.pk, to_task=second.pk))
    assert "digest" not in body.split('id="history-diff-form"', 1)[1].split("</form>", 1)[1]
    assert digest("a2") not in body


# --- API ---------------------------------------------------------------------------------------


def api_diff_url(project) -> str:
    return reverse("api:history-diff", kwargs={"project_id": project.pk})


def test_the_api_diff_has_the_moments_counts_and_paged_rows(project, viewer, world):
    first, second, _third = world["tasks"]
    response = api_as(viewer).get(
        api_diff_url(project), {"from_task": first.pk, "to_task": second.pk, "page_size": 2}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["from"] == first.finished_at.isoformat().replace("+00:00", "Z")
    assert body["to"] == second.finished_at.isoformat().replace("+00:00", "Z")
    assert body["counts"] == {"added": 2, "repushed": 2, "removed": 1}
    assert body["count"] == 5 and len(body["results"]) == 2 and body["next"]
    row = body["results"][0]
    assert set(row) == {
        "kind",
        "registry_name",
        "repository_id",
        "type",
        "repository_path",
        "namespace",
        "name",
        "tag",
        "old_digest",
        "new_digest",
    }


def test_the_api_hides_another_projects_history(project, outsider, world):
    first, second, _third = world["tasks"]
    response = api_as(outsider).get(
        api_diff_url(project), {"from_task": first.pk, "to_task": second.pk}
    )
    assert_error(response, 404, "not_found")


# --- whatever is typed -------------------------------------------------------------------------

anything = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "2024-13-45", "0000-00-00", "9999-12-31", "-1", "9" * 40]),
    st.sampled_from(["2026-11-01T10:00Z", "2026-11-01", "1", "sha256:", "beef", "csv"]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    params=st.dictionaries(
        st.sampled_from(["from", "to", "from_task", "to_task", "digest", "page", "format"]),
        anything,
        max_size=5,
    )
)
def test_any_parameters_get_a_page_or_a_clear_refusal_never_a_server_error(
    client, viewer, project, world, params
):
    client.force_login(viewer)
    pages = [reverse("imagesync:history-diff"), reverse("imagesync:digest-history")]
    apis = [api_diff_url(project), reverse("api:digest-history", args=[project.pk])]
    for url in pages:
        response = client.get(url, params)
        assert response.status_code == 200, (url, params)
    for url in apis:
        response = api_as(viewer).get(url, params)
        assert response.status_code in (200, 400, 404), (url, params, response.content[:300])
