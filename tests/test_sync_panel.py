"""The Synchronize Images slide-out: the three synchronization types, inline refusals, the
repository picker, and who may start a sync."""

from __future__ import annotations

import pytest

from imagesync.models import AuditEvent, Repository, SyncTask
from tests.support.factories import make_repository

URL = "/images/synchronize/"
PICKER_URL = "/images/synchronize/repositories/"
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def repositories(registry):
    return [make_repository(registry, f"team/app{n:02d}") for n in range(25)]


# --- opening the panel ----------------------------------------------------------------------


def test_the_panel_offers_the_three_synchronization_types(login, operator, registry):
    response = login(operator).get(URL, **HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'role="dialog"' in body
    for label in (
        "All image repositories",
        "Specified types of image repositories",
        "Specified image repositories",
    ):
        assert label in body
    for label in (
        "SWR private image",
        "SWR shared image",
        "SWR enterprise edition image",
        "Harbor repository image",
        "JFrog repository image",
    ):
        assert label in body


def test_without_htmx_the_panel_is_a_full_page(login, operator, registry):
    body = login(operator).get(URL).content.decode()
    assert "<html" in body and "Synchronize Images" in body


def test_every_panel_input_has_a_label(login, operator, repositories):
    body = login(operator).get(URL, **HX).content.decode()
    import re

    ids = re.findall(r'<input[^>]+type="(?:checkbox|radio|text)"[^>]*id="([^"]+)"', body)
    ids += re.findall(r'<(?:select|input)[^>]+id="([^"]+)"', body)
    for element_id in set(ids):
        assert f'for="{element_id}"' in body, element_id


def test_a_viewer_sees_no_ok_button_in_the_panel(login, viewer, registry):
    body = login(viewer).get(URL, **HX).content.decode()
    assert ">OK<" not in body
    assert "can view images but not start a synchronization" in body


def test_while_a_sync_is_active_the_panel_links_to_it(login, operator, registry, project):
    task = SyncTask.objects.create(project=project, status=SyncTask.Status.RUNNING)
    body = login(operator).get(URL, **HX).content.decode()
    assert "already running" in body
    assert f"/tasks/{task.pk}/" in body
    assert ">OK<" not in body


# --- starting a sync ------------------------------------------------------------------------


def test_ok_with_all_repositories_creates_a_task_and_closes_the_panel(
    login, operator, registry, project
):
    response = login(operator).post(URL, {"sync_type": "all"}, **HX)
    task = SyncTask.objects.get(project=project)
    body = response.content.decode()
    assert response.status_code == 200
    assert task.scope == "all" and task.trigger == "manual" and task.created_by == operator
    assert 'role="dialog"' not in body  # the panel is replaced by nothing: closed
    assert 'hx-swap-oob="true"' in body and f"/tasks/{task.pk}/" in body
    assert "Synchronization started" in body


def test_ok_without_htmx_redirects_to_image_view_with_a_message(login, operator, registry, project):
    client = login(operator)
    response = client.post(URL, {"sync_type": "all"}, follow=True)
    task = SyncTask.objects.get(project=project)
    assert response.redirect_chain[-1][0] == "/images/"
    assert f"/tasks/{task.pk}/" in response.content.decode()


def test_specified_types_creates_a_task_with_those_types(login, operator, registry, project):
    login(operator).post(URL, {"sync_type": "types", "types": ["harbor", "swr_shared"]}, **HX)
    task = SyncTask.objects.get(project=project)
    assert task.scope == "types"
    assert sorted(task.scope_types) == ["harbor", "swr_shared"]


def test_specified_types_without_a_type_is_refused_inline(login, operator, registry, project):
    response = login(operator).post(URL, {"sync_type": "types"}, **HX)
    assert response.status_code == 200
    assert "Select at least one repository type" in response.content.decode()
    assert not SyncTask.objects.exists()


def test_an_unknown_type_is_refused_inline(login, operator, registry):
    response = login(operator).post(URL, {"sync_type": "types", "types": ["dockerhub"]}, **HX)
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not SyncTask.objects.exists()


def test_specified_repositories_creates_a_task_with_exactly_those(
    login, operator, repositories, project
):
    chosen = [repositories[0].pk, repositories[13].pk]
    login(operator).post(URL, {"sync_type": "repositories", "repositories": chosen}, **HX)
    task = SyncTask.objects.get(project=project)
    assert task.scope == "repositories"
    assert sorted(task.scope_repositories.values_list("pk", flat=True)) == sorted(chosen)


def test_specified_repositories_without_a_choice_is_refused_inline(login, operator, repositories):
    response = login(operator).post(URL, {"sync_type": "repositories"}, **HX)
    assert response.status_code == 200
    assert "Select at least one image repository" in response.content.decode()
    assert not SyncTask.objects.exists()


def test_a_repository_of_another_project_cannot_be_chosen(
    login, operator, repositories, other_project
):
    from imagesync.models import Registry

    foreign = Registry.objects.create(
        project=other_project, kind="other", name="x", endpoint="https://x.example.com"
    )
    outside = make_repository(foreign, "secret/repo")
    response = login(operator).post(
        URL, {"sync_type": "repositories", "repositories": [outside.pk]}, **HX
    )
    assert response.status_code == 200
    assert "no longer exists" in response.content.decode()
    assert not SyncTask.objects.exists()


def test_a_second_sync_while_one_is_active_is_refused_with_a_link(
    login, operator, registry, project
):
    running = SyncTask.objects.create(project=project, status=SyncTask.Status.RUNNING)
    response = login(operator).post(URL, {"sync_type": "all"}, **HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert f"/tasks/{running.pk}/" in body
    assert SyncTask.objects.count() == 1


def test_starting_a_sync_is_audited(login, operator, registry, project):
    login(operator).post(URL, {"sync_type": "all"}, **HX)
    assert AuditEvent.objects.filter(action="sync.start", actor=operator).exists()


@pytest.mark.parametrize("persona", ["admin_user", "operator"])
def test_admins_and_operators_can_start_a_sync(login, request, registry, project, persona):
    response = login(request.getfixturevalue(persona)).post(URL, {"sync_type": "all"}, **HX)
    assert response.status_code == 200
    assert SyncTask.objects.filter(project=project).count() == 1


def test_a_viewers_post_is_refused(login, viewer, registry):
    response = login(viewer).post(URL, {"sync_type": "all"}, **HX)
    assert response.status_code == 403
    assert not SyncTask.objects.exists()


def test_an_outsiders_post_starts_nothing_in_the_project(login, outsider, registry, project):
    login(outsider).post(URL, {"sync_type": "all"}, **HX)
    assert not SyncTask.objects.filter(project=project).exists()


def test_anonymous_post_is_sent_to_sign_in(client, registry):
    response = client.post(URL, {"sync_type": "all"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not SyncTask.objects.exists()


# --- repository picker ----------------------------------------------------------------------


def picked(response) -> list[str]:
    return [repository.path for repository in response.context["picker_page"].object_list]


def test_the_picker_pages_the_projects_repositories(login, operator, repositories):
    client = login(operator)
    first = client.get(PICKER_URL)
    assert len(picked(first)) == 10
    assert "Page 1 of 3" in first.content.decode()
    third = client.get(PICKER_URL, {"repo_page": 3})
    assert picked(third) == [f"team/app{n:02d}" for n in range(20, 25)]


def test_the_picker_filters_by_type_registry_namespace_and_name(
    login, operator, repositories, registry, project
):
    from imagesync.models import Registry

    harbor = Registry.objects.create(
        project=project, kind="harbor", name="hb", endpoint="https://hb.example.com"
    )
    make_repository(harbor, "infra/proxy", "harbor")
    client = login(operator)
    assert picked(client.get(PICKER_URL, {"repo_type": "harbor"})) == ["infra/proxy"]
    assert picked(client.get(PICKER_URL, {"repo_registry": harbor.pk})) == ["infra/proxy"]
    assert picked(client.get(PICKER_URL, {"repo_namespace": "infr"})) == ["infra/proxy"]
    assert picked(client.get(PICKER_URL, {"repo_name": "app07"})) == ["team/app07"]


def test_the_picker_keeps_selections_from_other_pages(login, operator, repositories):
    chosen = [repositories[0].pk, repositories[24].pk]
    response = login(operator).get(PICKER_URL, {"repo_page": 2, "repositories": chosen})
    body = response.content.decode()
    for pk in chosen:
        assert f'<input type="hidden" name="repositories" value="{pk}">' in body
    assert "<span data-selected-count>2</span>" in body


def test_the_picker_checks_selected_repositories_on_the_page(login, operator, repositories):
    body = login(operator).get(PICKER_URL, {"repositories": [repositories[3].pk]}).content.decode()
    assert f'value="{repositories[3].pk}" id="repo-{repositories[3].pk}" checked' in body
    assert "Select all on this page" in body


def test_the_picker_never_lists_another_projects_repositories(login, outsider, repositories):
    assert picked(login(outsider).get(PICKER_URL)) == []


def test_the_picker_ignores_invalid_input(login, operator, repositories):
    response = login(operator).get(
        PICKER_URL, {"repo_page": "x", "repo_registry": "nope", "repositories": ["a", "-1"]}
    )
    assert response.status_code == 200
    assert "<span data-selected-count>0</span>" in response.content.decode()


def test_removed_repositories_are_not_offered(login, operator, repositories):
    from django.utils import timezone

    Repository.objects.filter(pk=repositories[0].pk).update(removed_at=timezone.now())
    assert "team/app00" not in picked(login(operator).get(PICKER_URL))


@pytest.mark.parametrize("persona", ["admin_user", "operator", "viewer"])
def test_members_can_browse_the_picker(login, request, repositories, persona):
    response = login(request.getfixturevalue(persona)).get(PICKER_URL, {"repo_name": "app1"})
    assert response.status_code == 200
    assert picked(response) == [f"team/app{n}" for n in range(10, 20)]


def test_anonymous_users_cannot_load_the_picker(client, repositories):
    response = client.get(PICKER_URL)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_an_outsiders_panel_shows_nothing_of_the_project(login, outsider, repositories):
    body = login(outsider).get(URL, **HX).content.decode()
    assert "team/app" not in body and "local" not in body


@pytest.mark.parametrize("value", ["²", "9" * 40, "0", "-3", "1e3"])
def test_values_that_are_no_row_ids_are_refused_without_a_server_error(
    login, operator, repositories, value
):
    client = login(operator)
    assert client.get(PICKER_URL, {"repositories": value}).status_code == 200
    assert client.get(URL, {"repositories": value}, **HX).status_code == 200
    response = client.post(URL, {"sync_type": "repositories", "repositories": value}, **HX)
    assert response.status_code == 200
    assert "Select repositories from the list" in response.content.decode()
    assert not SyncTask.objects.exists()
