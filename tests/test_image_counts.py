"""Image View and the API's image list count their matches only up to IMAGE_COUNT_LIMIT: past
it the page says "more than N" and the API's `count` is a lower bound, while every row is
still shown exactly and paging reaches the last one. Also: the text search finds substrings of
tags and digests (on PostgreSQL through the trigram indexes of migration 0024), and the sort
by registry reads one registry at a time."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.http import QueryDict

from imagesync import filters
from imagesync.filters import ImageFilter
from imagesync.models import Image, Registry, Repository
from tests.support.api import api_as, api_url, assert_error, bound_counts, follow_pages
from tests.support.factories import NOW, make_image, make_repository

LIMIT = 8


@pytest.fixture(autouse=True)
def _small_bound(db, settings):
    bound_counts(settings, LIMIT)


@pytest.fixture
def images(registry, project):
    """25 tagged images in three registries (names not in id order), two types; tags v0..v24,
    of which v1, v10-v19 contain "v1"."""
    zeta = Registry.objects.create(
        project=project, kind="harbor", name="zeta", endpoint="https://zeta.example.com"
    )
    alpha = Registry.objects.create(
        project=project, kind="harbor", name="alpha", endpoint="https://alpha.example.com"
    )
    repositories = [
        make_repository(registry, "team/api", "other"),
        make_repository(zeta, "team/web", "harbor"),
        make_repository(alpha, "base/os", "harbor"),
        make_repository(zeta, "base/tools", "harbor"),
    ]
    return [
        make_image(
            repositories[n % 4],
            f"v{n}",
            digest=f"sha256:{n:02d}" + "ab" * 31,
            registry_updated_at=NOW - dt.timedelta(hours=n % 7),
        )
        for n in range(25)
    ]


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def _page(client, query: str):
    response = client.get(f"/images/?{query}")
    assert response.status_code == 200
    return response


def _expected(project, query: str) -> list[int]:
    filterset = ImageFilter(
        QueryDict(query),
        queryset=Image.objects.filter(project_id__in=[project.pk]),
        project=project,
        lenient=True,
    )
    return list(filterset.rows.values_list("pk", flat=True))


def _chips(project, client, params: QueryDict) -> tuple[QueryDict, dict, object, dict]:
    """The filters but the type, the rows they match per type (what each chip should say),
    the page of `params` (50 rows) and its chips' counts."""
    others = params.copy()
    others.pop("type", None)
    matching = Image.objects.filter(pk__in=_expected(project, others.urlencode()))
    per_type = {
        type_: matching.filter(repository__type=type_).count() for type_ in ("harbor", "other")
    }
    response = _page(client, params.urlencode() + "&per_page=50")
    chips = {chip["value"]: chip["count"] for chip in response.context["type_counts"]}
    return others, per_type, response, chips


# --- the page -------------------------------------------------------------------------------


def test_past_the_bound_the_page_says_more_than_and_pages_to_the_last_row(
    images, project, admin_user, login
):
    client = login(admin_user)
    first = _page(client, "per_page=10")
    text = _text(first)
    assert "More than 10 images" in text and "Page 1" in text and "Page 1 of" not in text
    assert 'rel="next"' in first.content.decode()
    second = _page(client, "per_page=10&page=2")
    if connection.vendor == "sqlite":
        # A page past the bound: SQLite counts every row (cheaper than its walk; paging.py).
        assert "25 images" in _text(second) and "Page 2 of 3" in _text(second)
    else:
        # Rows up to the second page's end and one after it are known to exist.
        assert "More than 20 images" in _text(second) and "Page 2 of" not in _text(second)
    last = _page(client, "per_page=10&page=3")
    assert "25 images" in _text(last) and "More than" not in _text(last)
    assert "Page 3 of 3" in _text(last) and 'rel="next"' not in last.content.decode()
    shown = [row.pk for page in (first, second, last) for row in page.context["page"].object_list]
    assert shown == _expected(project, "") and len(shown) == 25


def test_a_page_past_the_end_is_the_last_page_counted_exactly(images, admin_user, login):
    client = login(admin_user)
    for number in ("9", "0", "-1"):
        response = _page(client, f"per_page=10&page={number}")
        assert response.context["page"].number == 3
        assert "Page 3 of 3" in _text(response) and "25 images" in _text(response)
    assert _page(client, "per_page=10&page=abc").context["page"].number == 1


def test_under_the_bound_counts_and_chips_are_exact(images, admin_user, login):
    response = _page(login(admin_user), "tag=v2")  # v2, v20-v24
    assert "More than" not in _text(response)
    assert response.context["page"].paginator.count == 6
    chips = {chip["value"]: chip["count"] for chip in response.context["type_counts"]}
    assert chips["harbor"] + chips["other"] == 6 and chips["jfrog"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "namespace=base",  # 12 images, past the bound
        "name=o",  # base/os, base/tools: 12
        "synced_after=3",  # the repositories synced in the last 3 days: team/api, team/web
        "synced_before=3&namespace=team",  # none
        "synced_to=9&registry=zeta&tagged=tagged",
        "repository=web",
        "type=harbor&synced_after=3",
    ],
)
def test_filters_of_whole_repositories_count_every_match_from_the_repositories(
    images, project, admin_user, login, query
):
    """A filter that selects whole repositories (registry, repository, namespace, name, last
    synced) is counted from the repositories' image counts: every chip and the total are
    exact past the bound, and they are the rows' own numbers."""
    repositories = {
        repo.name: repo for repo in Repository.objects.filter(registry__project=project)
    }
    for days, name in enumerate(["api", "web", "os", "tools"]):
        repositories[name].last_synced_at = NOW - dt.timedelta(days=2 * days)
        repositories[name].save(update_fields=["last_synced_at"])
    params = QueryDict(query, mutable=True)
    for bound in ("synced_after", "synced_before", "synced_to"):
        if bound in params:
            params[bound] = (NOW - dt.timedelta(days=float(params[bound]))).isoformat()
    if "registry" in params:
        params["registry"] = str(Registry.objects.get(project=project, name=params["registry"]).pk)
    if "repository" in params:
        params["repository"] = str(repositories[params["repository"]].pk)
    others, per_type, response, chips = _chips(project, login(admin_user), params)
    assert chips == {**dict.fromkeys(chips, 0), **per_type}
    shown = [row.pk for row in response.context["page"].object_list]
    assert shown == _expected(project, params.urlencode())
    total = response.context["page"].paginator.count
    assert total == len(shown)
    if total > LIMIT:
        assert f"{total} images" in _text(response)
        assert "more than" not in _text(response).lower()


def test_past_the_bound_the_type_chips_say_they_were_not_counted(images, admin_user, login):
    response = _page(login(admin_user), "tag=v1&per_page=20")  # v1, v10-v19: 11 images
    chips = {chip["value"]: chip["count"] for chip in response.context["type_counts"]}
    assert set(chips.values()) == {None}
    assert "Not counted: more than 8 images match these filters." in response.content.decode()
    # One page holds all eleven: it is the last, so its total is exact again.
    assert response.context["page"].paginator.count == 11
    assert len(response.context["page"].object_list) == 11


@pytest.mark.parametrize(
    "query",
    [
        "registry=alpha",  # 6 images: counted
        "registry=zeta",  # 12: past the bound, counted by its repositories' image counts
        "updated_after=1.5",  # 8: exactly the bound
        "updated_after=2.5",  # 12
        "multi_arch=on",  # none
        "tagged=untagged",  # none
        "type=harbor&registry=zeta",
        "type=other&updated_after=1.5",
    ],
)
def test_chips_under_a_filter_on_other_columns_count_exactly_or_say_they_did_not(
    images, project, admin_user, login, query
):
    """Under a filter that is not text (a registry, a time range, a flag), the page counts
    the matches up to the bound first: within it each chip is exact, past it no chip has a
    count -- unless every filter selects whole repositories (a registry): their image counts
    count the rows exactly whatever their number. Either way the rows and the total the page
    shows are the filter's."""
    names = {"alpha": "", "zeta": ""}
    for registry in Registry.objects.filter(project=project, name__in=names):
        names[registry.name] = str(registry.pk)
    params = QueryDict(query, mutable=True)
    if "registry" in params:
        params["registry"] = names[params["registry"]]
    if "updated_after" in params:
        hours = float(params["updated_after"])
        params["updated_after"] = (NOW - dt.timedelta(hours=hours)).isoformat()
    others, per_type, response, chips = _chips(project, login(admin_user), params)
    if sum(per_type.values()) <= LIMIT or set(others) == {"registry"}:
        assert chips == {**dict.fromkeys(chips, 0), **per_type}
    else:
        assert set(chips.values()) == {None}
        assert "Not counted: more than 8 images match these filters." in response.content.decode()
    shown = [row.pk for row in response.context["page"].object_list]
    assert shown == _expected(project, params.urlencode())
    assert response.context["page"].paginator.count == len(shown)


def test_the_bounded_page_in_chinese(images, admin_user, login):
    client = login(admin_user)
    response = client.get("/images/?per_page=10&tag=v", HTTP_ACCEPT_LANGUAGE="zh-hans")
    text = _text(response)
    assert "超过 10 个镜像" in text and "第 1 页" in text
    response = client.get("/images/?tag=v1", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "未计数" in response.content.decode()


# --- the API --------------------------------------------------------------------------------


def test_the_api_count_is_a_lower_bound_past_the_bound_and_next_reaches_the_end(
    images, project, viewer
):
    client = api_as(viewer)
    url = api_url("image-list", project_id=project.pk)
    body = client.get(url, {"page_size": 10}).json()
    assert body["count"] == 11 and body["count_is_lower_bound"] is True
    ids, pages, body = follow_pages(client, body)
    assert pages == 3 and body["count"] == 25 and body["count_is_lower_bound"] is False
    assert ids == _expected(project, "")
    assert_error(client.get(url, {"page": 4, "page_size": 10}), 404, "not_found")
    last = client.get(url, {"page": "last", "page_size": 10}).json()
    assert [row["id"] for row in last["results"]] == ids[20:] and last["count"] == 25


def test_the_api_count_is_exact_under_the_bound(images, project, viewer):
    url = api_url("image-list", project_id=project.pk)
    body = api_as(viewer).get(url, {"tag": "v2", "page_size": 2}).json()
    assert body["count"] == 6 and body["count_is_lower_bound"] is False


def test_the_api_type_counts_say_when_they_are_lower_bounds(images, project, viewer):
    url = api_url("image-type-counts", project_id=project.pk)
    exact = api_as(viewer).get(url, {"tag": "v2"}).json()
    assert {row["count_is_lower_bound"] for row in exact} == {False}
    assert sum(row["count"] for row in exact) == 6
    bounded = api_as(viewer).get(url, {"tag": "v1"}).json()
    assert {row["count_is_lower_bound"] for row in bounded} == {True}
    # The first matches found, by type: together one more than the bound.
    assert sum(row["count"] for row in bounded) == LIMIT + 1


def test_the_schema_documents_the_lower_bound(db):
    from django.test import Client

    schema = Client().get("/api/v1/schema/", {"format": "json"}).json()
    paged = schema["components"]["schemas"]["PaginatedImageList"]
    assert "count_is_lower_bound" in paged["properties"]
    assert "count_is_lower_bound" in paged["required"]


# --- search ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "tags"),
    [
        ("ABAB", [f"v{n}" for n in range(25)]),  # inside every digest, any case
        ("sha256:07ab", ["v7"]),
        ("7abab", ["v7", "v17"]),  # the middle of two digests
        ("23", ["v23"]),  # a tag's tail
        ("V1", ["v1"] + [f"v{n}" for n in range(10, 20)]),
        ("tools", ["v3", "v7", "v11", "v15", "v19", "v23"]),  # a repository path
        ("nothing-matches", []),
    ],
)
def test_search_finds_substrings_of_tags_digests_and_paths(
    images, project, admin_user, login, q, tags
):
    response = _page(login(admin_user), f"q={q}&sort=tag&per_page=50")
    shown = sorted(row.tag for row in response.context["page"].object_list)
    assert shown == sorted(tags)


@pytest.mark.parametrize("q", ["vendor-x", "VENDOR-X:1"])
def test_a_text_no_standard_digest_can_hold_tests_digests_only_once_one_is_odd(
    images, project, admin_user, login, q
):
    """A text with letters past "f" (or a colon elsewhere than after "sha256") is in no
    `sha256:` + 64 lowercase hex digest: while every image has such a digest, the search
    tests no digest (its SQL names none); an image with a digest of another form is found by
    it as soon as it is stored."""

    def searched() -> tuple[list[str], str]:
        filterset = ImageFilter(
            QueryDict(f"q={q}&tagged=all"), queryset=Image.objects.all(), project=project
        )
        return (
            sorted(filterset.rows.values_list("tag", flat=True)),
            str(filterset.rows.values("pk").query),
        )

    tags, sql = searched()
    assert tags == []
    assert '"digest"' not in sql
    make_image(images[0].repository, "vendored", digest="vendor-x:1234")
    tags, sql = searched()
    assert tags == ["vendored"]
    assert '"digest"' in sql
    response = _page(login(admin_user), f"q={q}")
    assert [row.tag for row in response.context["page"].object_list] == ["vendored"]


def test_search_with_many_matching_repositories_reads_them_in_a_subquery(
    images, project, admin_user, login, monkeypatch
):
    monkeypatch.setattr(ImageFilter, "SEARCH_REPOSITORY_IDS", 1)
    monkeypatch.setattr(ImageFilter, "SEARCH_REPOSITORY_IDS_SQLITE", 1)
    response = _page(login(admin_user), "q=team/&per_page=50")  # team/api and team/web
    assert sorted(row.repository.path for row in response.context["page"].object_list) == sorted(
        ["team/api"] * 7 + ["team/web"] * 6
    )


def test_the_search_uses_the_trigram_indexes_on_postgresql(images, project):
    # Without the conditions on project and tagged, and with scans of the whole table or of
    # an index in its order ruled out (a few rows: the planner would read them all), only the
    # trigram indexes can answer the search's conditions.
    filterset = ImageFilter(
        QueryDict("q=abab&tagged=all"), queryset=Image.objects.all(), project=project
    )
    sql, params = filterset.rows.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "image_tag_trgm_idx" in plan and "image_digest_trgm_idx" in plan
        else:  # the migration does nothing on SQLite
            cursor.execute("SELECT name FROM sqlite_master WHERE name LIKE '%trgm%'")
            assert cursor.fetchall() == []


# --- the sort by registry -------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["registry", "-registry", "registry,-tag"])
@pytest.mark.parametrize("query", ["", "tag=v1", "type=harbor"])
def test_the_registry_sort_reads_registries_in_turn_with_the_usual_rows(
    images, project, sort, query
):
    query = "&".join(part for part in (query, f"sort={sort}") if part)
    filterset = ImageFilter(
        QueryDict(query),
        queryset=Image.objects.filter(project_id__in=[project.pk]),
        project=project,
    )
    usual = list(filterset.rows.values_list("pk", flat=True))
    for start, stop in ((0, 4), (3, 9), (5, 12), (8, 30), (20, 25), (30, 40)):
        assert filterset._registry_order_ids(start, stop) == usual[start:stop]


@pytest.mark.parametrize("walked", [("tagged", "tag"), ("repository_id",), None])
@pytest.mark.parametrize(
    "query",
    [
        pytest.param("tag=v1", id="tag"),
        pytest.param(
            urlencode({"updated_after": (NOW - dt.timedelta(hours=5)).isoformat()}),
            id="updated",  # (the time in the test's name would differ between workers)
        ),
    ],
)
def test_bounded_type_counts_are_lower_bounds_whichever_order_the_sample_is_read_in(
    images, project, query, walked, monkeypatch
):
    """The sample of a bounded count is read in the order of the tag index (under a tag
    filter) or of the repository index, or (on SQLite, when its plan would sort every match
    for that order: a time range's own index) as found: either way each type's count is at
    most its exact count and they add up to the bound plus one."""
    monkeypatch.setattr(filters, "_walks_in_order", lambda rows, order: order == walked)
    filterset = ImageFilter(
        QueryDict(query),
        queryset=Image.objects.filter(project_id__in=[project.pk]),
        project=project,
    )
    exact, is_exact = filterset.counted_types(None)
    assert is_exact and sum(exact.values()) > LIMIT + 1
    bounded, is_exact = filterset.counted_types(LIMIT)
    assert not is_exact and sum(bounded.values()) == LIMIT + 1
    assert all(n <= exact[type_] for type_, n in bounded.items())


def test_a_bounded_count_scans_from_the_first_block_and_leaves_the_setting_as_it_was(images):
    """On PostgreSQL a count up to the bound reads the first matches of a scan that starts at
    the table's first block (not where the last scan stopped: the same count then cost 7 or
    300 ms by turns), and the connection's setting is as before afterwards, inside a
    transaction too. SQLite has no such setting: the count is the same."""
    from imagesync.paging import count_up_to, first_matches

    def setting() -> str | None:
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronize_seqscans")
            return cursor.fetchone()[0]

    before = setting()
    with first_matches():
        assert setting() in (None, "off")
    assert setting() == before
    count = count_up_to(Image.objects.all(), 10)
    assert (count.value, count.exact) == (11, False)
    assert count_up_to(Image.objects.filter(tag="v3"), 10).value == 1
    assert setting() == before
