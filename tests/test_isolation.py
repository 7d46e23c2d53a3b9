"""No one sees or acts on a project they do not belong to.

The test walks every console URL (resolved from imagesync/urls.py, so a new page is walked
without anyone remembering to add it), every htmx fragment, the CSV export, the repository
picker of the Synchronize Images panel, the admin site and the JSON API, as each persona:

* admin, operator, viewer of `project` see its data (viewers get 403 on every action);
* the outsider (admin of `other_project`) gets 404 for every object of `project`, and never
  sees a name or id of `project` -- not through filters (?registry=<id>), not in the export,
  not in the picker;
* a superuser sees both projects, one at a time.

`console_urls(...)` and `seed_project(...)` (tests/support/) are shared with the other security
tests.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from imagesync.models import (
    Registry,
    SyncTask,
)
from tests.support.factories import Seeded, seed_project
from tests.support.web import POST_ONLY, body_of, console_urls, fragment_headers


@pytest.fixture
def two_projects(db, project, other_project):
    return seed_project(project, "mine7q"), seed_project(other_project, "theirs3z")


PERSONA_PAGES = {  # persona -> whether project's data is visible
    "admin_user": True,
    "operator": True,
    "viewer": True,
    "outsider": False,
}


@pytest.mark.parametrize("persona", list(PERSONA_PAGES))
def test_every_console_page_and_fragment_shows_only_the_users_project(
    request, client, two_projects, persona
):
    mine, theirs = two_projects
    user = request.getfixturevalue(persona)
    client.force_login(user)
    sees_mine = PERSONA_PAGES[persona]
    shown, hidden = (mine, theirs) if sees_mine else (theirs, mine)
    for url in console_urls(mine).values():
        for headers in ({}, fragment_headers()):
            response = client.get(url, headers=headers)
            body = body_of(response)
            where = f"{persona} GET {url} {headers}"
            assert response.status_code != 500, where
            if not sees_mine and re.search(r"/\d+/", url):
                assert response.status_code == 404, where
            assert not hidden.leaks_in(body), f"{where} shows another project's data"
    # And the pages of the user's own project do show its data.
    response = client.get(reverse("imagesync:image-list"))
    assert shown.leaks_in(body_of(response))


@pytest.mark.parametrize("persona", ["admin_user", "operator", "viewer"])
def test_members_see_their_own_task_and_registry_pages(request, client, two_projects, persona):
    mine, _theirs = two_projects
    client.force_login(request.getfixturevalue(persona))
    for name in ("task-detail", "registry-list", "task-list", "image-list"):
        url = console_urls(mine)[name]
        response = client.get(url)
        assert response.status_code == 200, url
        assert mine.marker in body_of(response), url


def test_a_superuser_sees_each_project_in_turn_never_both_at_once(client, two_projects, superuser):
    mine, theirs = two_projects
    client.force_login(superuser)
    for shown, hidden in ((mine, theirs), (theirs, mine)):
        client.post(reverse("imagesync:project-select"), {"project": shown.project.pk})
        for name in ("image-list", "image-export", "task-list", "registry-list"):
            body = body_of(client.get(reverse(f"imagesync:{name}")))
            assert shown.leaks_in(body), name
            assert not [t for t in hidden.leaks_in(body) if t != str(hidden.project)], name


def test_the_outsider_gets_404_for_every_object_of_another_project(client, two_projects, outsider):
    mine, _theirs = two_projects
    client.force_login(outsider)
    for name, url in console_urls(mine, include_post_only=True).items():
        if not re.search(r"/\d+/", url):
            continue
        method = client.post if name in POST_ONLY else client.get
        response = method(url)
        assert response.status_code == 404, f"{name} {url}: {response.status_code}"
    assert SyncTask.objects.get(pk=mine.task.pk).cancel_requested is False
    assert Registry.objects.filter(pk=mine.registry.pk).exists()


@pytest.mark.parametrize(
    "query",
    [
        "registry={registry}",
        "registry={registry}&type=other",
        "q={marker}",
        "namespace=ns-{marker}",
        "name=api-{marker}",
        "tag=tag-{marker}",
        "repositories={repository}",
    ],
)
def test_filters_naming_another_projects_objects_show_nothing_of_it(
    client, two_projects, outsider, query
):
    mine, _theirs = two_projects
    client.force_login(outsider)
    filled = query.format(
        registry=mine.registry.pk, repository=mine.repository.pk, marker=mine.marker
    )
    for name in ("image-list", "image-export", "sync-panel", "sync-repositories", "task-list"):
        url = reverse(f"imagesync:{name}") + "?" + filled
        for headers in ({}, fragment_headers()):
            response = client.get(url, headers=headers)
            assert response.status_code in (200, 400), url
            assert not mine.leaks_in(body_of(response)), f"{url} leaks another project"


def test_the_export_contains_only_the_current_projects_images(client, two_projects, admin_user):
    mine, theirs = two_projects
    client.force_login(admin_user)
    body = body_of(client.get(reverse("imagesync:image-export")))
    assert body.count(mine.marker) >= 2
    assert theirs.marker not in body


def test_the_repository_picker_offers_only_the_current_projects_repositories(
    client, two_projects, operator
):
    mine, theirs = two_projects
    client.force_login(operator)
    body = body_of(
        client.get(reverse("imagesync:sync-repositories"), {"repositories": theirs.repository.pk})
    )
    assert f"api-{mine.marker}" in body
    assert theirs.marker not in body
    assert f'value="{theirs.repository.pk}"' not in body


def test_a_sync_of_another_projects_repositories_is_refused(client, two_projects, operator):
    mine, theirs = two_projects
    client.force_login(operator)
    response = client.post(
        reverse("imagesync:sync-panel"),
        {"sync_type": "repositories", "repositories": [theirs.repository.pk]},
    )
    assert response.status_code in (200, 400)
    assert not SyncTask.objects.filter(project=mine.project, status="queued").exists()
    assert not SyncTask.objects.filter(project=theirs.project, status="queued").exists()
    assert theirs.marker not in body_of(response)


def test_choosing_another_users_project_in_the_selector_is_refused(client, two_projects, viewer):
    mine, theirs = two_projects
    client.force_login(viewer)
    client.post(reverse("imagesync:project-select"), {"project": theirs.project.pk})
    body = body_of(client.get(reverse("imagesync:image-list")))
    assert mine.marker in body
    assert theirs.marker not in body


@pytest.mark.parametrize(
    ("persona", "allowed"),
    [("viewer", set()), ("operator", {"sync"}), ("admin_user", {"sync", "registry"})],
)
def test_actions_are_refused_with_403_below_the_needed_role(
    request, client, two_projects, persona, allowed
):
    mine, _theirs = two_projects
    client.force_login(request.getfixturevalue(persona))
    urls = console_urls(mine, include_post_only=True)
    attempts = {
        "sync": [
            (urls["sync-panel"], {"sync_type": "all"}),
            (urls["task-cancel"], {}),
            (urls["task-retry"], {}),
        ],
        "registry": [
            (urls["registry-create"], {}),
            (urls["registry-edit"], {}),
            (urls["registry-test"], {}),
        ],
    }
    for group, posts in attempts.items():
        for url, data in posts:
            response = client.post(url, data)
            if group in allowed:
                assert response.status_code != 403, f"{persona} refused {url}"
            else:
                assert response.status_code == 403, f"{persona} allowed {url}"
    if "registry" not in allowed:
        response = client.post(urls["registry-delete"])
        assert response.status_code == 403
        assert Registry.objects.filter(pk=mine.registry.pk).exists()


@pytest.mark.parametrize("persona", ["admin_user", "operator", "viewer", "outsider"])
def test_no_project_persona_can_use_any_admin_page_or_action(
    request, client, two_projects, persona
):
    """The admin site shows every project at once: it is for superusers only."""
    from django.contrib import admin

    mine, _theirs = two_projects
    client.force_login(request.getfixturevalue(persona))
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls = [reverse("admin:{}_{}_changelist".format(*info))]
        urls.append(reverse("admin:{}_{}_add".format(*info)))
        obj = model._default_manager.first()
        if obj is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
        for url in urls:
            response = client.get(url)
            assert response.status_code == 302, url
            assert "/admin/login/" in response["Location"], url
    response = client.post(
        reverse("admin:imagesync_registry_changelist"),
        {"action": "delete_selected", "_selected_action": [mine.registry.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert Registry.objects.filter(pk=mine.registry.pk).exists()


# --- JSON API ---------------------------------------------------------------------------------


def api_urls(seeded: Seeded) -> list[str]:
    pid = seeded.project.pk
    base = f"/api/v1/projects/{pid}"
    return [
        f"/api/v1/projects/{pid}/",
        f"{base}/images/",
        f"{base}/images/{seeded.image.pk}/",
        f"{base}/repositories/",
        f"{base}/repositories/{seeded.repository.pk}/",
        f"{base}/registries/",
        f"{base}/registries/{seeded.registry.pk}/",
        f"{base}/sync-tasks/",
        f"{base}/sync-tasks/{seeded.task.pk}/",
        f"{base}/sync-tasks/{seeded.task.pk}/results/",
    ]


def test_the_api_shows_another_projects_data_to_no_one_outside_it(client, two_projects, outsider):
    mine, theirs = two_projects
    client.force_login(outsider)
    for url in api_urls(mine):
        response = client.get(url)
        assert response.status_code in (403, 404), url
        assert mine.marker not in body_of(response), url
    listing = body_of(client.get("/api/v1/projects/"))
    assert theirs.project.name in listing
    assert mine.project.name not in listing
    # An object of project A addressed under project B's URL is not found either.
    crossed = f"/api/v1/projects/{theirs.project.pk}/images/{mine.image.pk}/"
    assert client.get(crossed).status_code == 404
    filtered = client.get(
        f"/api/v1/projects/{theirs.project.pk}/images/", {"registry": mine.registry.pk}
    )
    assert mine.marker not in body_of(filtered)


@pytest.mark.parametrize("persona", ["admin_user", "operator", "viewer"])
def test_members_read_their_project_through_the_api(request, client, two_projects, persona):
    mine, theirs = two_projects
    client.force_login(request.getfixturevalue(persona))
    for url in api_urls(mine):
        response = client.get(url)
        assert response.status_code == 200, url
        assert theirs.marker not in body_of(response), url
