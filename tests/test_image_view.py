"""Image View: the project's images, every filter, sort, page size, counts per type and CSV
export, per persona."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from imagesync.models import Project, ProjectMembership, Registry, Repository
from tests.support.factories import MIB, NOW, make_image, make_repository

URL = "/images/"


@pytest.fixture
def inventory(registry, project):
    """Three repositories of three types in two registries, five images with varied facts."""
    harbor = Registry.objects.create(
        project=project, kind="harbor", name="harbor-main", endpoint="https://harbor.example.com"
    )
    api = make_repository(registry, "team/api", "other")
    web = make_repository(harbor, "frontend/web", "harbor")
    nginx = make_repository(harbor, "library/nginx", "harbor")
    images = {
        "api:1.0": make_image(api, "1.0", size=5 * MIB, digest="sha256:" + "a1" * 32),
        "api:2.0": make_image(
            api,
            "2.0",
            size=50 * MIB,
            is_latest=True,
            digest="sha256:" + "b2" * 32,
            registry_updated_at=NOW - dt.timedelta(days=40),
        ),
        "web:main": make_image(
            web,
            "main",
            size=120 * MIB,
            multi_arch=True,
            platforms=["linux/amd64", "linux/arm64"],
            is_latest=True,
            digest="sha256:" + "c3" * 32,
        ),
        # library/nginx was last listed 10 days ago (its syncs failed since): both its images
        # show that time.
        "nginx:1.25": make_image(
            nginx,
            "1.25",
            size=None,
            digest="sha256:" + "d4" * 32,
            last_synced_at=NOW - dt.timedelta(days=10),
        ),
        "nginx:stable": make_image(nginx, "stable", size=70 * MIB, digest="sha256:" + "e5" * 32),
    }
    return images


@pytest.fixture
def foreign_image(other_project):
    """An image of another project with a name that would match every search."""
    foreign = Registry.objects.create(
        project=other_project, kind="other", name="foreign", endpoint="https://foreign.example.com"
    )
    repository = make_repository(foreign, "team/api", "other")
    return make_image(repository, "1.0", digest="sha256:" + "f6" * 32)


def shown_tags(response) -> list[str]:
    """The `repository:tag` of every row the page shows, in order."""
    page = response.context["page"]
    return [f"{image.repository.name}:{image.tag}" for image in page.object_list]


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/images/", "/images/export.csv", "/images/synchronize/", "/tasks/", "/registries/"]
)
def test_anonymous_users_are_sent_to_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("persona", ["admin_user", "operator", "viewer"])
def test_every_member_sees_the_projects_images(login, request, inventory, foreign_image, persona):
    response = login(request.getfixturevalue(persona)).get(URL)
    assert response.status_code == 200
    assert sorted(shown_tags(response)) == sorted(
        ["api:1.0", "api:2.0", "web:main", "nginx:1.25", "nginx:stable"]
    )
    assert "f6f6f6f6f6f6" not in response.content.decode()


def test_an_outsider_sees_none_of_the_projects_images(login, outsider, inventory):
    response = login(outsider).get(URL)
    assert response.status_code == 200
    assert shown_tags(response) == []
    body = response.content.decode()
    assert "team/api" not in body and "harbor-main" not in body


def test_an_outsider_cannot_filter_by_another_projects_registry(
    login, outsider, inventory, registry
):
    response = login(outsider).get(URL, {"registry": registry.pk})
    assert response.status_code == 200
    assert shown_tags(response) == []
    assert "Select a valid choice" in response.content.decode()


def test_a_user_without_a_project_is_told_to_ask_an_administrator(client, django_user_model):
    user = django_user_model.objects.create_user(username="newcomer", password="x")
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 200
    assert "Ask an administrator to add you to a project" in response.content.decode()


def test_operators_see_the_synchronize_button_and_viewers_do_not(
    login, operator, viewer, inventory
):
    assert "Synchronize Images" in login(operator).get(URL).content.decode()
    body = login(viewer).get(URL).content.decode()
    assert "Synchronize Images" not in body
    assert "Manage Task" in body


def test_the_project_selector_lists_only_the_users_projects(login, viewer, other_project):
    body = login(viewer).get(URL).content.decode()
    assert "cn-north-4 / prod" in body
    assert "elsewhere" not in body


# --- empty states ---------------------------------------------------------------------------


def test_without_a_registry_the_empty_state_says_to_connect_one(login, admin_user):
    body = login(admin_user).get(URL).content.decode()
    assert "No registry connected yet" in body
    assert reverse("imagesync:registry-create") in body


def test_a_viewer_without_registries_is_told_to_ask_an_admin(login, viewer):
    body = login(viewer).get(URL).content.decode()
    assert "Ask a project admin to connect a registry" in body
    assert reverse("imagesync:registry-create") not in body


def test_with_a_registry_but_no_images_the_empty_state_says_to_synchronize(
    login, operator, registry
):
    body = login(operator).get(URL).content.decode()
    assert "No images synchronized yet" in body
    assert "Synchronize Images" in body


def test_a_filter_that_matches_nothing_offers_to_clear_filters(login, viewer, inventory):
    body = login(viewer).get(URL, {"tag": "no-such-tag"}).content.decode()
    assert "No images match these filters" in body
    assert "Clear filters" in body


# --- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "harbor"}, ["web:main", "nginx:1.25", "nginx:stable"]),
        (
            {"type": ["harbor", "other"]},
            ["api:1.0", "api:2.0", "web:main", "nginx:1.25", "nginx:stable"],
        ),
        ({"type": "swr_private"}, []),
        ({"namespace": "libr"}, ["nginx:1.25", "nginx:stable"]),
        ({"name": "WEB"}, ["web:main"]),
        ({"tag": "stab"}, ["nginx:stable"]),
        ({"digest": "c3c3c3c3"}, ["web:main"]),
        ({"digest": "sha256:" + "d4" * 32}, ["nginx:1.25"]),
        ({"multi_arch": "on"}, ["web:main"]),
        ({"latest": "on"}, ["api:2.0", "web:main"]),
        ({"size_min_mib": "60"}, ["web:main", "nginx:stable"]),
        ({"size_max_mib": "50"}, ["api:1.0", "api:2.0"]),
        ({"size_min_mib": "10", "size_max_mib": "100"}, ["api:2.0", "nginx:stable"]),
        # size_min / size_max are bytes, as in the API
        ({"size_min": str(60 * MIB)}, ["web:main", "nginx:stable"]),
        ({"size_max": str(50 * MIB)}, ["api:1.0", "api:2.0"]),
        ({"multi_arch": "false"}, ["api:1.0", "api:2.0", "nginx:1.25", "nginx:stable"]),
        ({"q": "frontend"}, ["web:main"]),
        ({"q": "1.2"}, ["nginx:1.25"]),
        ({"q": "e5e5e5"}, ["nginx:stable"]),
    ],
)
def test_each_filter_narrows_the_list(login, viewer, inventory, foreign_image, params, expected):
    response = login(viewer).get(URL, params)
    assert response.status_code == 200
    assert sorted(shown_tags(response)) == sorted(expected)


def test_the_registry_filter_shows_only_that_registrys_images(login, viewer, inventory, registry):
    response = login(viewer).get(URL, {"registry": registry.pk})
    assert sorted(shown_tags(response)) == ["api:1.0", "api:2.0"]


def test_update_time_range_includes_whole_days(login, viewer, inventory):
    day = timezone.localtime(NOW - dt.timedelta(days=40)).date().isoformat()
    response = login(viewer).get(URL, {"updated_from": day, "updated_to": day})
    assert shown_tags(response) == ["api:2.0"]
    recent = timezone.localtime(NOW - dt.timedelta(days=5)).date().isoformat()
    response = login(viewer).get(URL, {"updated_from": recent})
    assert "api:2.0" not in shown_tags(response)
    assert len(shown_tags(response)) == 4


def test_sync_time_range_finds_images_not_synced_recently(login, viewer, inventory):
    before = timezone.localtime(NOW - dt.timedelta(days=5)).date().isoformat()
    response = login(viewer).get(URL, {"synced_to": before})
    assert sorted(shown_tags(response)) == ["nginx:1.25", "nginx:stable"]
    response = login(viewer).get(URL, {"synced_from": before})
    assert sorted(shown_tags(response)) == ["api:1.0", "api:2.0", "web:main"]


@pytest.mark.parametrize(
    "params",
    [
        {"updated_from": "yesterday"},
        {"synced_to": "2024-13-45"},
        {"size_min": "-5"},
        {"size_max": "lots"},
        {"registry": "abc"},
        {"registry": "999999"},
        {"type": "docker-hub"},
    ],
)
def test_an_invalid_filter_value_shows_an_error_and_no_rows(login, viewer, inventory, params):
    response = login(viewer).get(URL, params)
    assert response.status_code == 200
    assert shown_tags(response) == []
    assert "Some filters are not valid" in response.content.decode()


@pytest.mark.parametrize(
    "params",
    [
        {"page": "banana"},
        {"page": "99999"},
        {"page": "-1"},
        {"sort": "password"},
        {"sort": "-repository__registry__secret_encrypted"},
        {"per_page": "1000000"},
        {"per_page": "x"},
    ],
)
def test_invalid_page_sort_and_page_size_fall_back_without_error(login, viewer, inventory, params):
    response = login(viewer).get(URL, params)
    assert response.status_code == 200
    assert len(shown_tags(response)) == 5


def test_filters_are_kept_in_the_url_of_sort_and_page_links(login, viewer, inventory):
    body = login(viewer).get(URL, {"type": "harbor", "per_page": "10"}).content.decode()
    assert "?type=harbor&amp;per_page=10&amp;sort=name" in body


# --- sorting, paging, counts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "expected_first"),
    [
        ("name", "api:1.0"),
        ("-name", "web:main"),
        ("tag", "api:1.0"),
        ("-tag", "nginx:stable"),
        ("namespace", "web:main"),
        ("-namespace", "api:2.0"),
        ("digest", "api:1.0"),
        ("-digest", "nginx:stable"),
        ("updated", "api:2.0"),
        ("synced", "nginx:1.25"),
        ("platforms", "api:1.0"),
        ("-platforms", "web:main"),
    ],
)
def test_sorting_by_a_column_orders_the_rows(login, viewer, inventory, sort, expected_first):
    response = login(viewer).get(URL, {"sort": sort})
    assert shown_tags(response)[0] == expected_first
    # "synced" is the older name of the last_synced column; the page answers with the key
    assert response.context["sort"] == {"synced": "last_synced"}.get(sort, sort)


@pytest.mark.parametrize(("sort", "descending"), [("size", False), ("-size", True)])
def test_sorting_by_size_orders_known_sizes(login, viewer, inventory, sort, descending):
    rows = login(viewer).get(URL, {"sort": sort}).context["page"].object_list
    sizes = [image.size for image in rows if image.size is not None]
    assert sizes == sorted(sizes, reverse=descending)
    assert len(rows) == 5  # the image of unknown size is listed too


@pytest.mark.parametrize("key", ["type", "registry", "created", "-created", "-synced", "-size"])
def test_every_column_can_be_sorted(login, viewer, inventory, key):
    response = login(viewer).get(URL, {"sort": key})
    assert response.status_code == 200
    assert len(shown_tags(response)) == 5


@pytest.mark.parametrize("size", [10, 20, 50, 100])
def test_page_sizes_show_that_many_rows(login, viewer, registry, size):
    repository = make_repository(registry, "bulk/many")
    for n in range(120):
        make_image(repository, f"v{n:03d}")
    response = login(viewer).get(URL, {"per_page": size})
    assert len(shown_tags(response)) == size
    assert f"Page 1 of {-(-120 // size)}" in response.content.decode()


def test_the_last_page_shows_the_remaining_rows(login, viewer, registry):
    repository = make_repository(registry, "bulk/many")
    for n in range(25):
        make_image(repository, f"v{n:03d}")
    response = login(viewer).get(URL, {"per_page": 10, "page": 3, "sort": "tag"})
    assert shown_tags(response) == [f"many:v{n:03d}" for n in range(20, 25)]


def test_counts_per_type_ignore_the_type_filter_but_honour_the_others(login, viewer, inventory):
    response = login(viewer).get(URL, {"type": "other", "latest": "on"})
    counts = {item["value"]: item["count"] for item in response.context["type_counts"]}
    assert counts["other"] == 1 and counts["harbor"] == 1 and counts["swr_private"] == 0
    assert "Harbor repository image" in response.content.decode()


def test_the_table_shows_human_sizes_short_digests_and_badges(login, viewer, inventory):
    body = login(viewer).get(URL).content.decode()
    assert "120 MiB" in body and "5.0 MiB" in body
    assert ">c3c3c3c3c3c3<" in body
    assert 'data-copy="sha256:' + "c3" * 32 + '"' in body
    assert "multi-arch</span>" in body and ">latest</span>" in body
    assert "linux/amd64, linux/arm64" in body


def test_an_htmx_request_gets_only_the_table_fragment(login, viewer, inventory):
    response = login(viewer).get(URL, {"type": "harbor"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="image-table"' in body
    assert sorted(shown_tags(response)) == ["nginx:1.25", "nginx:stable", "web:main"]


def test_a_history_restore_gets_the_full_page(login, viewer, inventory):
    response = login(viewer).get(
        URL, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert "<html" in response.content.decode()


def test_pages_pass_the_content_security_policy(login, viewer, inventory):
    response = login(viewer).get(URL)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    body = response.content.decode()
    assert "<script>" not in body and "style=" not in body and "onclick" not in body
    assert '"includeIndicatorStyles": false' in body


# --- CSV export -----------------------------------------------------------------------------


def csv_rows(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_export_contains_exactly_the_filtered_rows(login, viewer, inventory, foreign_image):
    response = login(viewer).get("/images/export.csv", {"type": "harbor", "sort": "-tag"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = csv_rows(response)
    assert [(r["name"], r["tag"]) for r in rows] == [
        ("nginx", "stable"),
        ("web", "main"),
        ("nginx", "1.25"),
    ]
    web = rows[1]
    assert web["digest"] == "sha256:" + "c3" * 32
    assert web["multi_arch"] == "true" and web["platforms"] == "linux/amd64,linux/arm64"
    assert web["registry"] == "harbor-main" and web["size"] == str(120 * MIB)
    assert web["repository"] == "frontend/web" and web["latest"] == "true"


def test_csv_export_covers_every_page_not_just_the_current_one(login, viewer, registry):
    repository = make_repository(registry, "bulk/many")
    for n in range(45):
        make_image(repository, f"v{n:03d}")
    rows = csv_rows(login(viewer).get("/images/export.csv", {"per_page": 10, "page": 2}))
    assert len(rows) == 45


def test_csv_export_of_an_outsider_has_no_rows_of_the_project(login, outsider, inventory):
    rows = csv_rows(login(outsider).get("/images/export.csv"))
    assert rows == []


def test_csv_export_with_an_invalid_filter_has_no_rows(login, viewer, inventory):
    rows = csv_rows(login(viewer).get("/images/export.csv", {"size_min": "many"}))
    assert rows == []


def test_switching_project_shows_the_other_projects_images(
    login, viewer, inventory, other_project, foreign_image
):
    ProjectMembership.objects.create(user=viewer, project=other_project, role="viewer")
    client = login(viewer)
    client.post(reverse("imagesync:project-select"), {"project": other_project.pk, "next": URL})
    response = client.get(URL)
    assert shown_tags(response) == ["api:1.0"]
    assert response.context["current_project"] == Project.objects.get(name="elsewhere")


def test_unfiltered_counts_per_type_come_from_the_repositories_image_counts(
    login, viewer, inventory
):
    # The sync engine keeps Repository.image_count in step with the images it writes.
    for repository in Repository.objects.all():
        repository.image_count = repository.images.count()
        repository.save(update_fields=["image_count"])
    response = login(viewer).get(URL)
    counts = {item["value"]: item["count"] for item in response.context["type_counts"]}
    assert counts == {
        "swr_private": 0,
        "swr_shared": 0,
        "swr_enterprise": 0,
        "harbor": 3,
        "jfrog": 0,
        "other": 2,
    }
    assert response.context["page"].paginator.count == 5


def test_a_deep_page_shows_the_right_rows_in_order(login, viewer, registry):
    repository = make_repository(registry, "bulk/many")
    for n in range(35):
        make_image(repository, f"v{n:03d}", size=n)
    response = login(viewer).get(URL, {"per_page": 10, "page": 4, "sort": "-size"})
    assert shown_tags(response) == [f"many:v{n:03d}" for n in range(4, -1, -1)]


@pytest.mark.parametrize("sort", ["-size", "size", "tag", "-name", "synced"])
def test_every_page_read_from_either_end_lists_each_image_once_in_order(
    login, viewer, registry, sort
):
    repository = make_repository(registry, "bulk/many")
    for n in range(47):
        make_image(repository, f"v{n:03d}", size=(n * 7) % 13 or None)
    client = login(viewer)
    everything = shown_tags(client.get(URL, {"per_page": 100, "sort": sort}))
    paged = []
    for number in range(1, 6):
        paged += shown_tags(client.get(URL, {"per_page": 10, "page": number, "sort": sort}))
    assert paged == everything and len(set(paged)) == 47


def test_an_htmx_table_update_also_updates_the_forms_hidden_sort_and_page_size(
    login, viewer, inventory
):
    body = login(viewer).get(URL, {"sort": "-size", "per_page": 50}, HTTP_HX_REQUEST="true")
    text = body.content.decode()
    assert 'id="image-filter-state" hx-swap-oob="true"' in text
    assert '<input type="hidden" name="sort" value="-size">' in text
    assert '<input type="hidden" name="per_page" value="50">' in text
    full = login(viewer).get(URL, {"sort": "-size"}).content.decode()
    assert 'hx-swap-oob="true"' not in full
    assert '<input type="hidden" name="sort" value="-size">' in full
