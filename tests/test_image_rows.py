"""Image View's rows: the `image_rows` tag renders exactly what `_image_row.html` (the readable
form of a row) renders, in every language and time zone, and a page's queries do not grow with
its rows."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from imagesync.models import Image, Registry, UserPreference
from imagesync.templatetags.image_rows import image_rows
from tests.support.factories import MIB, NOW, make_image, make_repository


@pytest.fixture
def rows(registry, project):
    """Rows with every shape a cell has: untagged, latest, odd tags (quoted in the link),
    markup in names, no namespace, no size, no times, each pull source, multi-arch."""
    harbor = Registry.objects.create(
        project=project, kind="harbor", name='h <"&">', endpoint="https://h.example.com"
    )
    plain = make_repository(registry, "plain", "jfrog")
    odd = make_repository(harbor, 'we<ird>/"q"&x', "harbor")
    swr = make_repository(registry, "team/api", "swr_private")
    pulled = NOW - dt.timedelta(days=3, hours=5)
    made = [
        make_image(plain, "1.0", pull_source="jfrog", pull_known=True, last_pulled=pulled,
                   pull_count=12),
        make_image(plain, "a+b%20c<x>", is_latest=True, size=None, pull_source="harbor",
                   pull_known=True, pull_count=0, image_created_at=None),
        make_image(odd, "", tagged=False, digest="sha256:" + "ab" * 32, platforms=[],
                   registry_updated_at=None),
        make_image(odd, "main", multi_arch=True, platforms=["linux/amd64", "linux/<arm>"],
                   size=5 * 1024**4, pull_source="events", pull_known=True, last_pulled=NOW),
        make_image(swr, "v2_x-y.z", is_latest=True, size=1023, pull_source="swr_repository",
                   pull_known=True, pull_count=7),
        make_image(swr, "v3", size=70 * MIB, pull_source="swr", pull_known=True,
                   pull_count=None),
    ]  # fmt: skip
    return list(
        Image.objects.filter(pk__in=[image.pk for image in made])
        .select_related("repository__registry")
        .order_by("pk")
    )


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/St_Johns"])
@pytest.mark.parametrize("as_of", [None, NOW])
def test_rows_are_the_row_template(rows, language, zone, as_of):
    with translation.override(language), timezone.override(zoneinfo.ZoneInfo(zone)):
        expected = "".join(
            render_to_string("imagesync/_image_row.html", {"row": row, "as_of": as_of})
            for row in rows
        )
        assert str(image_rows(rows, as_of)) == expected


def test_a_page_of_100_rows_makes_the_queries_of_a_page_of_10(registry, project, admin_user, login):
    repository = make_repository(registry, "team/api")
    for n in range(100):
        make_image(repository, f"v{n}", pull_source="harbor", pull_known=True, pull_count=n)
    client = login(admin_user)
    UserPreference.remember(admin_user, language="zh-hans", time_zone="Asia/Shanghai")
    client.get("/images/")  # the session's first request reads more (the preference, ...)
    counts = []
    for per_page in (10, 100, 10):
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/images/", {"per_page": per_page})
        assert response.status_code == 200
        assert response.content.count(b"<tr>") == per_page + 1  # the header's row too
        counts.append(len(queries))
    assert counts[0] == counts[1] == counts[2]


def test_a_csv_of_100_rows_makes_the_queries_of_a_csv_of_10(registry, project, admin_user, login):
    """Rows read without what they do not show (`ImageFilter.UNSHOWN`) read nothing more one by
    one: the CSV, which has every column, costs the same queries for 10 rows as for 100."""
    repositories = [make_repository(registry, f"team/app{n}") for n in range(5)]
    client = login(admin_user)
    client.get("/images/")  # the session's first request reads more (the preference, ...)
    counts = []
    for total in (10, 100, 10):
        Image.objects.all().delete()
        for n in range(total):
            make_image(repositories[n % 5], f"v{n}", pull_source="harbor", pull_known=True)
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/images/export.csv")
            lines = b"".join(response.streaming_content).decode().splitlines()
        assert len(lines) == total + 1
        assert lines[1].startswith(f"{registry.name},other,team,team/app")
        counts.append(len(queries))
    assert counts[0] == counts[1] == counts[2]
