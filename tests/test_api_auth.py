"""API authentication, rate limiting and the one error shape: tokens are shown once, stored
hashed, revocable and record their last use; sessions need CSRF on writes; every error is
`{"error": {"code", "message", "details"?}}`."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apitokens.models import ApiToken
from imagesync.models import AuditEvent
from tests.support.api import (
    FAST_HASHERS,
    api_as,
    api_url,
    assert_error,
    client_with_token,
    reset_rate_limits,
    token_for,
)


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db, settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    reset_rate_limits()


# --- tokens ---------------------------------------------------------------------------------


def test_a_token_created_through_the_api_is_shown_once_and_stored_only_as_a_hash(viewer):
    created = api_as(viewer).post(api_url("token-list"), {"name": "dashboard"}, format="json")
    assert created.status_code == 201
    assert created["Cache-Control"] == "no-store"
    raw = created.json()["token"]
    assert raw.startswith("isk_") and len(raw) >= 40
    row = ApiToken.objects.get(pk=created.json()["id"])
    assert row.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {row.key_hash, row.prefix, row.name}
    assert raw.startswith(row.prefix) and len(row.prefix) < len(raw) // 3
    # Never again: neither in the list nor in the detail.
    again = client_with_token(raw)
    listed = again.get(api_url("token-list"))
    detail = again.get(api_url("token-detail", pk=row.pk))
    assert raw not in listed.content.decode() and raw not in detail.content.decode()
    assert "token" not in detail.json()
    assert AuditEvent.objects.filter(action="api_token.create", actor=viewer).exists()


def test_the_new_token_works_as_a_bearer_token_for_its_owner(operator, project):
    raw = (
        api_as(operator).post(api_url("token-list"), {"name": "ci"}, format="json").json()["token"]
    )
    response = client_with_token(raw).get(api_url("project-list"))
    assert response.status_code == 200
    assert [row["role"] for row in response.json()["results"]] == ["operator"]


def test_a_token_needs_a_name(viewer):
    response = api_as(viewer).post(api_url("token-list"), {"name": ""}, format="json")
    error = assert_error(response, 400, "validation_error")
    assert "name" in error["details"]


def test_last_use_is_recorded_at_most_once_a_minute(viewer):
    raw = token_for(viewer)
    token = ApiToken.objects.get(user=viewer)
    assert token.last_used_at is None
    client = client_with_token(raw)
    client.get(api_url("project-list"))
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=30)

    client.get(api_url("project-list"))
    token.refresh_from_db()
    assert token.last_used_at == first  # a second request within the minute writes nothing

    stale = timezone.now() - timedelta(minutes=5)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    client.get(api_url("project-list"))
    token.refresh_from_db()
    assert token.last_used_at > stale + timedelta(minutes=4)


def test_a_revoked_token_stops_working_at_once_and_stays_on_record(viewer):
    raw = token_for(viewer, "old pipeline")
    token = ApiToken.objects.get(user=viewer)
    client = client_with_token(raw)
    assert client.delete(api_url("token-detail", pk=token.pk)).status_code == 204
    error = assert_error(client.get(api_url("project-list")), 401, "authentication_failed")
    assert raw not in error["message"]
    token.refresh_from_db()
    assert token.revoked_at is not None
    session = api_as(viewer)
    listed = session.get(api_url("token-list")).json()["results"]
    assert any(row["id"] == token.pk and row["is_active"] is False for row in listed)


@pytest.mark.parametrize(
    "header",
    ["Bearer isk_not-a-real-token", "Bearer", "Bearer a b", "bearer " + "x" * 300],
)
def test_an_unknown_or_malformed_token_is_refused_with_401(header, viewer):
    client = client_with_token(None)
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(api_url("project-list"))
    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_token_of_a_deactivated_user_is_refused(viewer):
    raw = token_for(viewer)
    viewer.is_active = False
    viewer.save()
    assert_error(client_with_token(raw).get(api_url("project-list")), 401, "authentication_failed")


def test_anonymous_requests_get_a_json_401_not_the_login_page(db):
    response = Client().get(api_url("project-list"))
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


# --- session authentication -----------------------------------------------------------------


def test_the_browser_session_reads_the_api(viewer, project):
    client = Client()
    client.force_login(viewer)
    response = client.get(api_url("project-list"))
    assert response.status_code == 200
    assert response.json()["results"][0]["name"] == project.name


def test_a_session_write_without_the_csrf_token_is_refused(operator, project, registry):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    url = api_url("synctask-list", project_id=project.pk)
    response = client.post(url, {"scope": "all"}, content_type="application/json")
    error = assert_error(response, 403, "permission_denied")
    assert "CSRF" in error["message"]

    client.get("/login/")  # sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post(
        url, {"scope": "all"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert response.status_code == 201


# --- the admin site -------------------------------------------------------------------------


def test_an_administrator_creates_a_token_in_the_admin_and_sees_it_once(superuser, viewer):
    admin = Client()
    admin.force_login(superuser)
    form = admin.get("/admin/apitokens/apitoken/add/").content.decode()
    assert 'name="user"' in form and 'name="name"' in form and "key_hash" not in form
    response = admin.post(
        "/admin/apitokens/apitoken/add/", {"user": viewer.pk, "name": "nightly report"}
    )
    assert response.status_code == 200
    token = ApiToken.objects.get(user=viewer)
    page = response.content.decode()
    start = page.index('value="isk_') + len('value="')
    raw = page[start : page.index('"', start)]
    assert hashlib.sha256(raw.encode()).hexdigest() == token.key_hash
    assert "will not be shown again" in page
    assert token.created_by == superuser
    # The change page and the list show the prefix only.
    for url in ("/admin/apitokens/apitoken/", f"/admin/apitokens/apitoken/{token.pk}/change/"):
        shown = admin.get(url).content.decode()
        assert token.prefix in shown and raw not in shown
    # The token works for the user it was made for.
    assert client_with_token(raw).get(api_url("token-list")).json()["results"][0]["id"] == token.pk


def test_an_administrator_revokes_tokens_from_the_admin(superuser, viewer):
    raw = token_for(viewer)
    admin = Client()
    admin.force_login(superuser)
    token = ApiToken.objects.get(user=viewer)
    admin.post(
        "/admin/apitokens/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert_error(client_with_token(raw).get(api_url("project-list")), 401, "authentication_failed")


# --- rate limiting --------------------------------------------------------------------------


def test_each_token_is_rate_limited_with_retry_after(settings, viewer):
    settings.API_THROTTLE_RATE = "3/minute"
    busy = api_as(viewer)
    for _ in range(3):
        assert busy.get(api_url("project-list")).status_code == 200
    response = busy.get(api_url("project-list"))
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    # Another token of the same user has its own budget.
    assert api_as(viewer).get(api_url("project-list")).status_code == 200


# --- the error shape ------------------------------------------------------------------------


def test_malformed_json_is_a_parse_error(operator, project):
    response = api_as(operator).generic(
        "POST",
        api_url("synctask-list", project_id=project.pk),
        "{not json",
        content_type="application/json",
    )
    assert_error(response, 400, "parse_error")


def test_a_form_body_is_an_unsupported_media_type(operator, project):
    response = api_as(operator).post(
        api_url("synctask-list", project_id=project.pk), {"scope": "all"}, format="multipart"
    )
    assert_error(response, 415, "unsupported_media_type")


def test_a_wrong_method_is_method_not_allowed(viewer, project):
    response = api_as(viewer).delete(api_url("project-detail", pk=project.pk))
    assert_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize(
    "path",
    ["/api/v1/nothing/", "/api/v2/projects/", "/api/v1/projects/1234567890123456789012/"],
)
def test_an_unknown_api_url_is_a_json_404(viewer, path):
    assert_error(api_as(viewer).get(path), 404, "not_found")


def test_the_api_root_points_to_where_to_start(db):
    body = Client().get("/api/v1/").json()
    assert body["schema"].endswith("/api/v1/schema/") and body["docs"].endswith("/api/v1/docs/")
    assert body["projects"].endswith("/api/v1/projects/")


def test_an_unexpected_failure_is_a_json_500_without_details(viewer, project, monkeypatch):
    """Never a traceback or a secret in an error."""
    from imagesync.api import views

    def explode(self):
        raise RuntimeError("password=hunter2 at /srv/secret/path")

    monkeypatch.setattr(views.ProjectViewSet, "get_queryset", explode)
    response = api_as(viewer).get(api_url("project-list"))
    error = assert_error(response, 500, "server_error")
    body = response.content.decode()
    assert "hunter2" not in body and "Traceback" not in body and "details" not in error
