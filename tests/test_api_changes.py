"""The changes list in the JSON API: the Changes tab's rows, filters, ordering and paging,
read by any member of the project and by no one else."""

from __future__ import annotations

import re

import pytest

from tests.support.api import FAST_HASHERS, api_as, assert_error, reset_rate_limits
from tests.support.changes import build_history
from tests.support.web import body_of


@pytest.fixture(autouse=True)
def _fresh(db, settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    reset_rate_limits()


@pytest.fixture
def history(db, project):
    return build_history(project)


def url(project) -> str:
    return f"/api/v1/projects/{project.pk}/changes/"


def kinds_and_tags(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    return [f"{row['kind']} {row['tag']}" for row in response.json()["results"]]


def test_a_viewer_reads_every_change_newest_first(viewer, project, history):
    response = api_as(viewer).get(url(project))
    body = response.json()
    assert body["count"] == 6
    assert kinds_and_tags(response) == [
        "removed v2",
        "added v3",
        "repushed v1",
        "added w1",
        "added v2",
        "added v1",
    ]
    repushed = body["results"][2]
    assert repushed["old_digest"] == history.v1_old
    assert repushed["new_digest"] == history.v1_new
    assert repushed["task_id"] == history.second.pk
    assert repushed["repository_id"] == history.api.pk
    assert repushed["registry_name"] == "reg-hist" and repushed["registry_removed"] is False
    assert repushed["time"].startswith("2026-11-02T08:00:00")
    assert repushed["registry_pushed_at"].startswith("2026-11-02T08:00:00")


@pytest.mark.parametrize(
    "query,expected",
    [
        ("kind=repushed", ["repushed v1"]),
        ("kind=added&kind=removed&since=2026-11-02", ["removed v2", "added v3"]),
        ("until=2026-11-01T08:00:00Z&type=harbor", ["added w1"]),
        ("digest={v1_old_hex}", ["repushed v1", "added v1"]),
        ("task={second}&repository={api}&ordering=tag", ["repushed v1", "removed v2", "added v3"]),
        ("path=web", ["added w1"]),
        ("tag=v2&ordering=time", ["added v2", "removed v2"]),
        ("registry={registry}&kind=removed", ["removed v2"]),
    ],
)
def test_the_api_filters_and_sorts_as_the_changes_tab(
    viewer, project, history, query, expected, login
):
    query = query.format(
        v1_old_hex=history.v1_old[7:20],
        second=history.second.pk,
        api=history.api.pk,
        registry=history.registry.pk,
    )
    assert kinds_and_tags(api_as(viewer).get(f"{url(project)}?{query}")) == expected
    # the page shows the same rows for the same parameters
    page = body_of(login(viewer).get(f"/changes/?{query}"))
    tags = re.findall(r'<tr data-kind="(\w+)">(?:(?!</tr>).)*?<code>([^<]+)</code>', page, re.S)
    assert [f"{kind} {tag}" for kind, tag in tags] == expected


def test_pages_of_the_asked_size(viewer, project, history):
    client = api_as(viewer)
    first = client.get(url(project), {"page_size": 4}).json()
    assert len(first["results"]) == 4 and first["next"]
    second = client.get(url(project), {"per_page": 4, "page": 2}).json()
    assert len(second["results"]) == 2 and second["next"] is None


@pytest.mark.parametrize(
    "query,field",
    [
        ({"since": "not-a-date"}, "since"),
        ({"until": "2026-02-30"}, "until"),
        ({"digest": "sha256:xyz"}, "digest"),
        ({"digest": "abc def"}, "digest"),
        ({"ordering": "secret"}, "ordering"),
        ({"kind": "moved"}, "kind"),
        ({"repository": "0"}, "repository"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(viewer, project, history, query, field):
    error = assert_error(api_as(viewer).get(url(project), query), 400, "validation_error")
    assert field in str(error)


def test_a_removed_connection_keeps_its_changes_readable(admin_user, project, history):
    history.registry.remove(admin_user)
    rows = api_as(admin_user).get(url(project), {"kind": "removed"}).json()["results"]
    assert {row["tag"] for row in rows} == {"v1", "v2", "v3", "w1"}
    assert all(row["registry_name"] == "reg-hist" for row in rows)
    assert all(row["registry_removed"] and row["registry_id"] is None for row in rows)
    assert {row["source"] for row in rows} == {"sync", "connection_removed"}


def test_outsiders_get_404_and_anonymous_401(outsider, project, history, other_project):
    assert_error(api_as(outsider).get(url(project)), 404, "not_found")
    assert_error(api_as(None).get(url(project)), 401, "not_authenticated")
    own = api_as(outsider).get(url(other_project), {"task": history.second.pk}).json()
    assert own["count"] == 0


def test_the_schema_documents_the_endpoint_and_its_filters(db):
    from django.test import Client

    schema = Client().get("/api/v1/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/projects/{project_id}/changes/"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"since", "until", "kind", "type", "registry", "path", "repository", "tag"} <= names
    assert {"digest", "task", "ordering", "page", "page_size"} <= names
