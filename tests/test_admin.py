"""The admin site: the inventory (repositories, images, sync tasks and their results) and the
audit log can be viewed, filtered and searched but never added, changed or deleted by hand;
projects, memberships, registries and grants stay editable; every model has a proper name."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from imagesync.models import AuditEvent, Image, Registry, Repository, SyncTask, SyncTaskRepository
from tests.support.factories import PASSWORD, seed_project

READ_ONLY = ["repository", "image", "synctask", "synctaskrepository", "auditevent"]
EDITABLE = ["project", "projectmembership", "registry", "authorizationgrant"]


@pytest.fixture
def seeded(project):
    return seed_project(project, "adm")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def one_of(model_name: str, seeded):
    return {
        "repository": seeded.repository,
        "image": seeded.image,
        "synctask": seeded.task,
        "synctaskrepository": SyncTaskRepository.objects.filter(task=seeded.task).first(),
        "auditevent": AuditEvent.objects.first(),
    }[model_name]


@pytest.mark.parametrize("model_name", READ_ONLY)
def test_an_inventory_list_can_be_searched_but_offers_no_add(admin_client, seeded, model_name):
    changelist = reverse(f"admin:imagesync_{model_name}_changelist")
    body = admin_client.get(changelist, {"q": "adm"}).content.decode()
    assert reverse(f"admin:imagesync_{model_name}_add") not in body
    assert 'value="delete_selected"' not in body
    assert admin_client.get(reverse(f"admin:imagesync_{model_name}_add")).status_code == 403


@pytest.mark.parametrize("model_name", READ_ONLY)
def test_an_inventory_row_is_shown_without_save_and_a_post_is_refused(
    admin_client, seeded, model_name
):
    row = one_of(model_name, seeded)
    change = reverse(f"admin:imagesync_{model_name}_change", args=[row.pk])
    body = admin_client.get(change).content.decode()
    assert 'name="_save"' not in body and 'name="_continue"' not in body
    assert reverse(f"admin:imagesync_{model_name}_delete", args=[row.pk]) not in body
    assert admin_client.post(change, {}).status_code == 403
    delete = reverse(f"admin:imagesync_{model_name}_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert type(row).objects.filter(pk=row.pk).exists()


def test_a_tasks_results_are_listed_read_only_on_its_page(admin_client, seeded):
    body = admin_client.get(
        reverse("admin:imagesync_synctask_change", args=[seeded.task.pk])
    ).content.decode()
    assert seeded.repository.path in body
    assert 'name="results-0-status"' not in body and "-DELETE" not in body
    assert 'name="results-MAX_NUM_FORMS" value="0"' in body  # no row to add


@pytest.mark.parametrize("model_name", EDITABLE)
def test_projects_memberships_registries_and_grants_stay_editable(admin_client, model_name):
    body = admin_client.get(reverse(f"admin:imagesync_{model_name}_add")).content.decode()
    assert 'name="_save"' in body


def test_the_admin_index_names_every_model_in_proper_english(admin_client):
    body = html.unescape(admin_client.get(reverse("admin:index")).content.decode())
    for plural in (
        "Registries",
        "Repositories",
        "Sync tasks",
        "Sync task results",
        "Images",
        "Audit events",
        "Authorization grants",
        "Project memberships",
    ):
        assert f">{plural}<" in body, plural
    assert "repositorys" not in body.lower() and "registrys" not in body.lower()


def test_removing_a_registry_in_the_admin_takes_its_inventory_along(admin_client, seeded):
    """The inventory is read-only, yet deleting its registry must not be blocked by that."""
    delete = reverse("admin:imagesync_registry_delete", args=[seeded.registry.pk])
    confirm = admin_client.get(delete).content.decode()
    assert "permission to delete" not in confirm
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not Registry.objects.filter(pk=seeded.registry.pk).exists()
    assert not Repository.objects.exists() and not Image.objects.exists()
    event = AuditEvent.objects.get(action="registry.delete")
    assert event.detail == "via admin" and event.target == "reg-adm"


def test_a_registry_made_in_the_admin_gets_kind_fields_and_is_audited(
    admin_client, project, superuser
):
    response = admin_client.post(
        reverse("admin:imagesync_registry_add"),
        {
            "project": project.pk,
            "name": "harbor",
            "kind": "harbor",
            "endpoint": "https://harbor.example.com",
            "projects": "library\nteam",
            "repo_keys": "ignored-for-harbor",
            "verify_tls": "on",
            "options": '{"include_non_images": true}',
        },
    )
    assert response.status_code == 302, html.unescape(response.content.decode())
    registry = Registry.objects.get(name="harbor")
    assert registry.options == {"include_non_images": True, "projects": ["library", "team"]}
    event = AuditEvent.objects.get(action="registry.create")
    assert (event.actor, event.detail) == (superuser, "via admin")
    page = admin_client.get(reverse("admin:imagesync_registry_change", args=[registry.pk]))
    assert "registry_form.js" in page.content.decode()


def test_a_sync_task_cannot_be_started_from_the_admin(admin_client, project):
    assert admin_client.post(reverse("admin:imagesync_synctask_add"), {}).status_code == 403
    assert not SyncTask.objects.exists()


@pytest.mark.browser
def test_the_admin_registry_form_shows_only_the_chosen_kinds_settings(
    ui, transactional_db, django_user_model
):
    django_user_model.objects.create_superuser("kind-root", "root@example.com", PASSWORD)
    ui.sign_in("kind-root", PASSWORD)
    page = ui.page
    # the admin has no favicon; its 404 would count as a page error
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    ui.goto(reverse("admin:imagesync_registry_add"))
    page.locator("#id_kind").select_option("harbor")
    expect(page.get_by_label("Harbor projects")).to_be_visible()
    expect(page.get_by_label("SWR region")).to_be_hidden()
    expect(page.get_by_label("Repositories")).to_be_hidden()
