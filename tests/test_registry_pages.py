"""Registry connections: the list, connect / edit / remove by admins, write-only secrets, and
Test connection shown inline."""

from __future__ import annotations

import re

import pytest
import responses
from playwright.sync_api import expect

from imagesync.models import AuditEvent, ProjectMembership, Registry
from tests.support.factories import PASSWORD, make_image, make_repository

LIST = "/registries/"
NEW = "/registries/new/"
HX = {"HTTP_HX_REQUEST": "true"}
SECRET = "PLANTED-SECRET-s3cr3t-9f8e7d"


def form_data(**overrides) -> dict:
    data = {
        "name": "harbor-prod",
        "kind": "harbor",
        "endpoint": "https://harbor.example.com",
        "username": "robot$sync",
        "secret": "",
        "verify_tls": "on",
        "ca_bundle": "",
        "options": "{}",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


# --- the list -------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["admin_user", "operator", "viewer"])
def test_members_see_the_registries_with_status_and_counts(login, request, registry, persona):
    repository = make_repository(registry, "team/api")
    make_image(repository, "1.0")
    make_image(repository, "2.0")
    registry.record_check(
        False, "auth_failed", "Authentication failed: check the username and secret."
    )
    body = login(request.getfixturevalue(persona)).get(LIST).content.decode()
    assert "local" in body and "OCI / Docker v2 registry" in body
    assert "https://registry.example.com" in body
    assert "Connection failed" in body and "auth_failed" in body
    assert "Authentication failed: check the username and secret." in body
    row = body[body.index('data-registry="local"') :]
    assert '<td class="num">1</td>' in row and '<td class="num">2</td>' in row


def test_only_admins_see_the_management_buttons(login, admin_user, operator, viewer, registry):
    assert "Connect a registry" in login(admin_user).get(LIST).content.decode()
    for user in (operator, viewer):
        body = login(user).get(LIST).content.decode()
        assert "Connect a registry" not in body
        assert "Test connection" not in body and "/edit/" not in body


def test_an_outsider_sees_none_of_the_projects_registries(login, outsider, registry):
    body = login(outsider).get(LIST).content.decode()
    assert "registry.example.com" not in body
    assert "No registry connected yet" in body


def test_no_page_ever_shows_the_secret_or_its_ciphertext(login, admin_user, registry):
    client = login(admin_user)
    for url in (
        LIST,
        f"/registries/{registry.pk}/edit/",
        f"/registries/{registry.pk}/delete/",
        "/images/",
    ):
        body = client.get(url).content.decode()
        assert SECRET not in body, url
        assert registry.secret_encrypted not in body, url


# --- connect, edit, remove ------------------------------------------------------------------


def test_an_admin_connects_a_registry_with_an_encrypted_secret(login, admin_user, project):
    response = login(admin_user).post(NEW, form_data(secret="hunter2-token"))
    assert response.status_code == 302
    registry = Registry.objects.get(name="harbor-prod")
    assert registry.project == project and registry.kind == "harbor"
    assert registry.get_secret() == "hunter2-token"
    assert "hunter2-token" not in registry.secret_encrypted
    assert AuditEvent.objects.filter(action="registry.create", target="harbor-prod").exists()


def test_a_local_http_registry_needs_insecure_http_ticked(login, admin_user):
    client = login(admin_user)
    data = form_data(kind="other", name="local-dist", endpoint="http://127.0.0.1:5000")
    response = client.post(NEW, data)
    assert response.status_code == 200
    assert "plain http://" in response.content.decode()
    response = client.post(NEW, {**data, "allow_insecure_http": "on"})
    assert response.status_code == 302
    assert Registry.objects.get(name="local-dist").allow_insecure_http


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "This field is required"),
        ({"endpoint": "not a url"}, "Enter a valid URL"),
        ({"kind": "quay"}, "Select a valid choice"),
        ({"options": "{not json"}, "Enter a valid JSON"),
        ({"options": "[1, 2]"}, "Options must be a JSON object"),
        ({"options": '{"max_concurrency": 0}'}, "max_concurrency must be a whole number"),
        ({"options": '{"requests_per_second": "fast"}'}, "requests_per_second must be a positive"),
        ({"options": '{"colour": "blue"}'}, "“colour” is not an option of a Harbor registry"),
        ({"projects": "Library"}, "“Library” is not a Harbor project name"),
    ],
)
def test_invalid_registry_input_is_shown_inline(login, admin_user, overrides, message):
    response = login(admin_user).post(NEW, form_data(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Registry.objects.exists()


def test_a_duplicate_name_in_the_project_is_refused(login, admin_user, registry):
    response = login(admin_user).post(NEW, form_data(name="local"))
    assert response.status_code == 200
    assert "already has a registry with this name" in response.content.decode()


def test_the_secret_field_is_write_only_and_blank_keeps_the_stored_secret(
    login, admin_user, registry
):
    client = login(admin_user)
    edit = f"/registries/{registry.pk}/edit/"
    body = client.get(edit).content.decode()
    assert 'type="password" name="secret"' in body and "A secret is stored" in body
    data = form_data(
        name="local", kind="other", endpoint="https://registry2.example.com", username="robot"
    )
    assert client.post(edit, data).status_code == 302
    registry.refresh_from_db()
    assert registry.endpoint == "https://registry2.example.com"
    assert registry.get_secret() == SECRET
    event = AuditEvent.objects.get(action="registry.update")
    assert SECRET not in event.detail and "endpoint" in event.detail


def test_a_new_secret_replaces_the_old_one(login, admin_user, registry):
    data = form_data(name="local", kind="other", endpoint=registry.endpoint, secret="new-token-42")
    login(admin_user).post(f"/registries/{registry.pk}/edit/", data)
    registry.refresh_from_db()
    assert registry.get_secret() == "new-token-42"
    assert "new-token-42" not in AuditEvent.objects.get(action="registry.update").detail


def test_the_stored_secret_can_be_removed(login, admin_user, registry):
    data = form_data(name="local", kind="other", endpoint=registry.endpoint, clear_secret="on")
    login(admin_user).post(f"/registries/{registry.pk}/edit/", data)
    registry.refresh_from_db()
    assert not registry.has_secret


def test_an_invalid_edit_never_echoes_the_typed_secret(login, admin_user, registry):
    data = form_data(name="", kind="other", endpoint=registry.endpoint, secret="typed-secret-77")
    response = login(admin_user).post(f"/registries/{registry.pk}/edit/", data)
    assert response.status_code == 200
    assert "typed-secret-77" not in response.content.decode()


def test_an_admin_removes_a_registry_with_its_inventory(login, admin_user, registry):
    repository = make_repository(registry, "team/api")
    make_image(repository, "1.0")
    client = login(admin_user)
    confirm = client.get(f"/registries/{registry.pk}/delete/").content.decode()
    assert "1 repository and 1 image" in confirm
    assert client.post(f"/registries/{registry.pk}/delete/").status_code == 302
    assert not Registry.objects.exists()
    assert AuditEvent.objects.filter(action="registry.delete", target="local").exists()


@pytest.mark.parametrize("persona", ["operator", "viewer"])
def test_operators_and_viewers_cannot_manage_registries(login, request, registry, persona):
    client = login(request.getfixturevalue(persona))
    assert client.get(NEW).status_code == 403
    assert client.post(NEW, form_data()).status_code == 403
    assert client.post(f"/registries/{registry.pk}/edit/", form_data(name="x")).status_code == 403
    assert client.post(f"/registries/{registry.pk}/delete/").status_code == 403
    assert client.post(f"/registries/{registry.pk}/test/").status_code == 403
    registry.refresh_from_db()
    assert registry.name == "local" and registry.connection_status == "unknown"


def test_an_outsider_gets_404_for_every_registry_action(login, outsider, registry):
    client = login(outsider)
    for url in (f"/registries/{registry.pk}/edit/", f"/registries/{registry.pk}/delete/"):
        assert client.get(url).status_code == 404
    assert client.post(f"/registries/{registry.pk}/delete/").status_code == 404
    assert client.post(f"/registries/{registry.pk}/test/").status_code == 404
    assert Registry.objects.filter(pk=registry.pk).exists()


def test_anonymous_users_are_sent_to_sign_in_from_registry_pages(client, registry):
    for url in (NEW, f"/registries/{registry.pk}/edit/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- Test connection ------------------------------------------------------------------------


@responses.activate
def test_test_connection_shows_success_inline(login, admin_user, registry):
    responses.get("https://registry.example.com/v2/", json={}, status=200)
    response = login(admin_user).post(f"/registries/{registry.pk}/test/", **HX)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert "Connected" in body and 'role="status"' in body
    registry.refresh_from_db()
    assert registry.connection_status == "success" and registry.connection_checked_at
    assert AuditEvent.objects.filter(action="registry.test", detail="ok").exists()


@responses.activate
def test_test_connection_shows_the_failure_reason_inline(login, admin_user, registry):
    responses.get("https://registry.example.com/v2/", json={"errors": []}, status=401)
    body = login(admin_user).post(f"/registries/{registry.pk}/test/", **HX).content.decode()
    assert "Connection failed" in body and "auth_failed" in body
    assert SECRET not in body
    registry.refresh_from_db()
    assert registry.connection_status == "fail" and registry.connection_reason_code == "auth_failed"


def test_test_connection_reports_a_bad_configuration(login, admin_user, registry):
    Registry.objects.filter(pk=registry.pk).update(endpoint="http://registry.example.com")
    body = login(admin_user).post(f"/registries/{registry.pk}/test/", **HX).content.decode()
    assert "Connection failed" in body and "insecure HTTP" in body


@responses.activate
def test_test_connection_without_htmx_redirects_with_a_message(login, admin_user, registry):
    responses.get("https://registry.example.com/v2/", json={}, status=200)
    response = login(admin_user).post(f"/registries/{registry.pk}/test/", follow=True)
    assert "Connection to “local” succeeded" in response.content.decode()


# --- kind-specific fields in a browser ------------------------------------------------------


@pytest.mark.browser
def test_the_form_shows_only_the_settings_of_the_chosen_kind(
    ui, transactional_db, django_user_model, project
):
    user = django_user_model.objects.create_user(username="kind-admin", password=PASSWORD)
    ProjectMembership.objects.create(user=user, project=project, role="admin")
    ui.sign_in("kind-admin", PASSWORD)
    ui.goto(NEW)
    page = ui.page
    kind = page.get_by_label(re.compile(r"^Kind"))
    kind.select_option("swr")
    expect(page.get_by_label("SWR region")).to_be_visible()
    expect(page.get_by_label("SWR project ID")).to_be_visible()
    expect(page.get_by_label("Harbor projects")).to_be_hidden()
    kind.select_option("other")
    expect(page.get_by_label("SWR region")).to_be_hidden()
    expect(page.get_by_label("Repositories")).to_be_visible()
    expect(page.get_by_label("Advanced options (JSON)")).to_be_visible()
