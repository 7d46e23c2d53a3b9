"""Image View on SQLite: a page under a filter on the image's own columns is found by a walk of
the sort's index (ImageFilter.page_ids), which must give exactly the ids of the usual plan --
for every filter, sort and page -- and give way to the usual plan past its budget."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.db.models import Count, Q
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from imagesync import usage
from imagesync.filters import ImageFilter
from imagesync.models import Image
from imagesync.paging import count_rows
from tests.support.api import bound_counts
from tests.support.factories import MIB, NOW, make_image, make_repository

FILTERS = [
    "multi_arch=on",
    "latest=on",
    "size_min_mib=20&size_max_mib=60",
    "updated_after=" + (NOW - dt.timedelta(days=20)).date().isoformat(),
    "not_pulled_days=30",
    "pulled=never",
    "pulled=unknown",
    "tagged=untagged",
    "tagged=all&multi_arch=on",
    "digest=0",
    "tag=v1",
    "type=harbor&not_pulled_days=90",
    "q=v2",
]
SORTS = ["", "sort=size", "sort=-created", "sort=last_pulled", "sort=-tag", "sort=digest"]


@pytest.fixture
def images(registry, project):
    """120 images whose columns repeat with different periods (many ties, nulls)."""
    repositories = [
        make_repository(registry, f"team/app{n}", ("harbor", "other", "jfrog")[n % 3])
        for n in range(4)
    ]
    for n in range(120):
        pulled = NOW - dt.timedelta(days=n % 50) if n % 4 else None
        make_image(
            repositories[n % 4],
            f"v{n % 3}.{n}" if n % 17 else "",
            tagged=bool(n % 17),
            digest=f"sha256:{n % 3}{n:063x}",
            size=(n % 9) * 10 * MIB,
            multi_arch=n % 5 == 0,
            is_latest=n % 7 == 0,
            registry_updated_at=NOW - dt.timedelta(days=n % 40),
            image_created_at=NOW - dt.timedelta(days=n % 11) if n % 6 else None,
            last_synced_at=NOW - dt.timedelta(days=(n % 4) * 2),  # its repository's
            last_pulled=pulled,
            pull_known=n % 3 != 0,
            pull_source="harbor" if n % 3 else "",
        )
    return Image.objects.filter(project=project)


def _filterset(project, query: str) -> ImageFilter:
    return ImageFilter(
        QueryDict(query),
        queryset=Image.objects.filter(project_id__in=[project.pk]),
        project=project,
        lenient=True,
    )


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("query", FILTERS)
def test_the_walk_gives_the_usual_plans_ids(images, project, query, sort):
    filterset = _filterset(project, "&".join(part for part in (query, sort) if part))
    assert not filterset.invalid
    usual = list(filterset.rows.values_list("pk", flat=True))
    for start, stop in ((0, 10), (10, 20), (0, 100), (len(usual) - 5, len(usual) + 5)):
        walked = filterset.page_ids(max(start, 0), stop)
        if connection.vendor != "sqlite" and query.startswith("tagged=all"):
            # PostgreSQL merges the two `tagged` ranges' first rows (the test below).
            assert walked == usual[max(start, 0) : stop]
            continue
        if connection.vendor != "sqlite" or query == "tagged=untagged":
            # PostgreSQL plans this from its statistics; `tagged` leads every sort's index.
            assert walked is None
            continue
        assert walked is not None
        assert walked == usual[max(start, 0) : stop]


def test_past_its_budget_the_walk_gives_way(images, project, monkeypatch):
    # On PostgreSQL there is no walk at all (page_ids is None whatever the budget), so the
    # same assertions hold there; CI runs every test on both databases and allows no skip.
    monkeypatch.setattr(ImageFilter, "WALK_STEP_OPS", 10)
    monkeypatch.setattr(ImageFilter, "WALK_BUDGET_STEPS", 5)
    filterset = _filterset(project, "not_pulled_days=30&sort=size")
    assert filterset.page_ids(0, 20) is None
    # The connection is usable afterwards (an interrupted SELECT rolls nothing back).
    assert Image.objects.filter(project=project).count() == 120


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize(
    "query",
    ["namespace=team", "type=harbor", "synced_after=3", "type=other&namespace=app", "repository=0"],
)
def test_filters_of_repositories_walk_when_they_hold_many_of_the_rows(images, project, query, sort):
    """Filters that select whole repositories are walked past (their repository subquery
    tested per row) when the repositories hold enough of the rows for the page to be found
    soon (their image counts tell): the same ids as the usual plan; otherwise the usual plan
    reads those repositories' images through the repository index."""
    if query == "repository=0":
        query = f"repository={images.order_by('repository_id')[0].repository_id}"
    if query == "synced_after=3":  # 3 days ago: team/app0 and app1
        query = "synced_after=" + (NOW - dt.timedelta(days=3)).isoformat()
    filterset = _filterset(project, "&".join(part for part in (query, sort) if part))
    usual = list(filterset.rows.values_list("pk", flat=True))
    share = len(usual) / Image.objects.filter(project=project, tagged=True).count()
    for start, stop in ((0, 10), (10, 20), (0, 100)):
        walked = filterset.page_ids(start, stop)
        if connection.vendor != "sqlite":
            assert walked is None
            continue
        if stop < len(usual) * share:  # about stop / share rows to read, fewer than the matches
            assert walked == usual[start:stop]
        else:
            assert walked is None


def test_no_walk_for_repository_sorts_or_deep_pages(images, project):
    assert _filterset(project, "sort=size").page_ids(0, 20) is None  # nothing to walk past
    assert _filterset(project, "multi_arch=on&sort=namespace").page_ids(0, 20) is None
    assert _filterset(project, "multi_arch=on").page_ids(5000, 5020) is None
    assert _filterset(project, "multi_arch=maybe").page_ids(0, 20) is None  # invalid


@pytest.mark.parametrize("query", ["multi_arch=on", "not_pulled_days=30&sort=-size&per_page=10"])
def test_the_page_shows_the_usual_rows(images, project, admin_user, login, query):
    client = login(admin_user)
    response = client.get(f"/images/?{query}&page=2")
    assert response.status_code == 200
    shown = [row.pk for row in response.context["page"].object_list]
    filterset = _filterset(project, query)
    per_page = response.context["page"].paginator.per_page
    assert shown == list(filterset.rows.values_list("pk", flat=True)[per_page : 2 * per_page])
    assert shown


@pytest.mark.parametrize("sort", [*SORTS, "sort=-multi_arch", "sort=pulled", "sort=name"])
@pytest.mark.parametrize("query", ["tagged=all", "tagged=all&type=harbor", "tagged=all&q=sha256:2"])
def test_tagged_and_untagged_pages_are_the_usual_plans_rows(images, project, query, sort):
    # PostgreSQL merges the first rows of the two `tagged` ranges (every sort's index leads
    # with it) instead of sorting all of them; the rows must be exactly the usual plan's.
    filterset = _filterset(project, "&".join(part for part in (query, sort) if part))
    assert not filterset.invalid
    usual = list(filterset.rows.values_list("pk", flat=True))
    assert any(not image.tagged for image in Image.objects.filter(pk__in=usual))
    for start, stop in ((0, 10), (10, 20), (0, 100), (len(usual) - 5, len(usual) + 5)):
        found = filterset.page_ids(max(start, 0), stop)
        if found is None:  # the usual plan (SQLite walks other cases; a repository sort)
            assert connection.vendor == "sqlite" or sort == "sort=name"
            continue
        assert found == usual[max(start, 0) : stop], (start, stop)


# --- the usage filter's deep page: its count and its walk ----------------------------------

CUTOFF = NOW - dt.timedelta(days=30)


@pytest.mark.parametrize(
    ("condition", "queries"),
    [
        (usage.not_pulled_since(CUTOFF), 2),  # never pulled, or last before the cutoff
        (Q(last_pulled__isnull=True) | Q(last_pulled__gte=CUTOFF), 2),
        (Q(multi_arch=True) & (Q(last_pulled__isnull=True) | Q(last_pulled__lt=CUTOFF)), 2),
        # Not two disjoint ranges: counted as they are.
        (Q(last_pulled__isnull=True) | Q(image_created_at__lt=CUTOFF), 1),  # two columns
        (Q(last_pulled__isnull=False) | Q(last_pulled__lt=CUTOFF), 1),
        (~(Q(last_pulled__isnull=True) | Q(last_pulled__lt=CUTOFF)), 1),
        (Q(last_pulled__isnull=True) | Q(last_pulled__lt=CUTOFF) | Q(size=0), 1),
    ],
)
def test_an_exact_count_reads_never_or_before_as_two_ranges(images, condition, queries):
    rows = images.filter(condition)
    expected = len(list(rows.values_list("pk", flat=True)))
    assert expected  # each condition matches some rows, and fewer than all of them
    assert expected < images.count()
    with CaptureQueriesContext(connection) as captured:
        assert count_rows(rows) == expected
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"]]
    assert len(counts) == queries
    if queries == 2:
        assert not any(" OR " in sql for sql in counts)


def test_a_sliced_distinct_or_grouped_count_is_not_split(images):
    rows = images.filter(usage.not_pulled_since(CUTOFF))
    total = len(list(rows.values_list("pk", flat=True)))
    assert total > 5
    assert count_rows(rows[:5]) == 5
    # Every row is pull_known: one value, which both halves hold.
    assert count_rows(rows.values("pull_known").distinct()) == 1
    assert count_rows(rows.values("pull_known").annotate(n=Count("pk"))) == 1
    assert count_rows(rows) == total


def test_a_usage_page_past_the_end_shows_the_exact_total(images, admin_user, login, settings):
    # Past the count's bound, a page past the end counts every match (BoundedPaginator): the
    # two halves' counts must add up to what the page says.
    bound_counts(settings, 8)
    expected = (
        Image.objects.filter(tagged=True, pull_known=True)
        .filter(Q(last_pulled__isnull=True) | Q(last_pulled__lt=NOW - dt.timedelta(days=30)))
        .count()
    )
    response = login(admin_user).get("/images/?not_pulled_days=30&per_page=10&page=99")
    assert response.status_code == 200
    paginator = response.context["page"].paginator
    assert paginator.count == expected and not paginator.count_is_lower_bound
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
    assert f"{expected} images" in text and "More than" not in text


def test_on_sqlite_the_default_sorts_index_answers_a_usage_deep_page_alone(images, project):
    """Migration 0032: on SQLite the default sort's index holds the id and the usage columns,
    so a deep page under a usage filter reads no image row until the page's own; PostgreSQL
    keeps its own, without the usage columns."""
    filterset = _filterset(project, "not_pulled_days=90")
    sql, params = filterset.rows.values_list("pk", flat=True)[40:50].query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "COVERING INDEX image_proj_updated_idx" in plan
            assert "TEMP B-TREE" not in plan  # the index gives the sort's order
        else:
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'image_proj_updated_idx'"
            )
            (definition,) = cursor.fetchone()
            assert "registry_updated_at" in definition and "pulled" not in definition
