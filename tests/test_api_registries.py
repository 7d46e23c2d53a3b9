"""Registry connections over the API: viewers read them, admins connect, edit, remove and test
them; the secret is write-only (accepted, never returned, blank keeps the stored one), and the
API accepts and refuses exactly what the console's registry form does."""

from __future__ import annotations

import pytest

from imagesync.models import AuditEvent, Image, Registry, Repository
from imagesync.registries import CheckResult, RegistryError
from tests.support.api import FAST_HASHERS, api_as, api_url, assert_error, reset_rate_limits

PLANTED = "PLANTED-SECRET-s3cr3t-9f8e7d"  # the conftest registry's secret


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db, settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    reset_rate_limits()


def _detail(project, registry) -> str:
    return api_url("registry-detail", project_id=project.pk, pk=registry.pk)


def _assert_no_secret(response, *secrets: str) -> None:
    text = response.content.decode()
    for secret in secrets:
        assert secret not in text
    assert "secret_encrypted" not in text


def test_viewers_read_registries_without_their_secret(project, registry, viewer):
    client = api_as(viewer)
    listed = client.get(api_url("registry-list", project_id=project.pk))
    detail = client.get(_detail(project, registry))
    for response in (listed, detail):
        assert response.status_code == 200
        _assert_no_secret(response, PLANTED, registry.secret_encrypted)
    body = detail.json()
    assert body["has_secret"] is True and "secret" not in body
    assert body["connection_status"] == "unknown"


def test_an_admin_connects_a_registry_and_the_secret_is_stored_encrypted(project, admin_user):
    response = api_as(admin_user).post(
        api_url("registry-list", project_id=project.pk),
        {
            "name": "harbor-prod",
            "kind": "harbor",
            "endpoint": "https://harbor.example.com",
            "username": "robot$ci",
            "secret": "harbor-pass-123",
            "options": {"max_concurrency": 4},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    _assert_no_secret(response, "harbor-pass-123")
    registry = Registry.objects.get(pk=response.json()["id"])
    assert registry.project == project and registry.options == {"max_concurrency": 4}
    assert registry.get_secret() == "harbor-pass-123"
    assert "harbor-pass-123" not in registry.secret_encrypted
    event = AuditEvent.objects.get(action="registry.create")
    assert event.actor == admin_user and "harbor-pass-123" not in event.detail


@pytest.mark.parametrize("body", [{"username": "robot2"}, {"username": "robot2", "secret": ""}])
def test_a_missing_or_blank_secret_keeps_the_stored_one(project, registry, admin_user, body):
    response = api_as(admin_user).patch(_detail(project, registry), body, format="json")
    assert response.status_code == 200, response.content
    registry.refresh_from_db()
    assert registry.username == "robot2" and registry.get_secret() == PLANTED


def test_a_new_secret_replaces_the_stored_one_and_clear_secret_removes_it(
    project, registry, admin_user
):
    client = api_as(admin_user)
    replaced = client.patch(_detail(project, registry), {"secret": "rotated-1"}, format="json")
    _assert_no_secret(replaced, "rotated-1")
    registry.refresh_from_db()
    assert registry.get_secret() == "rotated-1"
    event = AuditEvent.objects.filter(action="registry.update").latest("id")
    assert "secret replaced" in event.detail and "rotated-1" not in event.detail

    cleared = client.patch(_detail(project, registry), {"clear_secret": True}, format="json")
    assert cleared.json()["has_secret"] is False
    registry.refresh_from_db()
    assert registry.secret_encrypted == ""


def test_a_full_update_changes_every_given_field(project, registry, admin_user):
    response = api_as(admin_user).put(
        _detail(project, registry),
        {
            "name": "renamed",
            "kind": "other",
            "endpoint": "http://10.0.0.5:5000",
            "allow_insecure_http": True,
            "verify_tls": False,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    registry.refresh_from_db()
    assert (registry.name, registry.endpoint, registry.verify_tls) == (
        "renamed",
        "http://10.0.0.5:5000",
        False,
    )
    assert registry.get_secret() == PLANTED


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": "local"}, "name"),  # the conftest registry's name: one per project
        ({"endpoint": "http://plain.example.com"}, "endpoint"),
        ({"options": ["not", "an", "object"]}, "options"),
        ({"options": {"max_concurrency": 0}}, "options"),
        ({"options": {"region": "a\u0000b"}}, "options"),
        ({"kind": "docker-hub"}, "kind"),
        ({"endpoint": "not a url"}, "endpoint"),
    ],
)
def test_the_api_refuses_what_the_console_form_refuses(project, registry, admin_user, body, field):
    data = {"name": "second", "kind": "other", "endpoint": "https://r2.example.com", **body}
    response = api_as(admin_user).post(
        api_url("registry-list", project_id=project.pk), data, format="json"
    )
    error = assert_error(response, 400, "validation_error")
    assert field in error["details"], error
    assert Registry.objects.filter(project=project).count() == 1


def test_the_same_name_is_allowed_in_another_project(project, other_project, outsider, registry):
    response = api_as(outsider).post(
        api_url("registry-list", project_id=other_project.pk),
        {"name": registry.name, "kind": "other", "endpoint": "https://x.example.com"},
        format="json",
    )
    assert response.status_code == 201


def test_removing_a_registry_removes_its_repositories_and_images(project, registry, admin_user):
    repository = Repository.objects.create(
        registry=registry, type="other", path="a/b", namespace="a", name="b"
    )
    Image.objects.create(
        project=project, repository=repository, tag="1", digest="sha256:" + "1" * 64
    )
    response = api_as(admin_user).delete(_detail(project, registry))
    assert response.status_code == 204
    assert not Registry.objects.filter(pk=registry.pk).exists()
    assert not Image.objects.filter(project=project).exists()
    assert AuditEvent.objects.filter(action="registry.delete", target="local").exists()


class FakeClient:
    def __init__(self, result: CheckResult):
        self.result = result
        self.closed = False

    def check(self) -> CheckResult:
        return self.result

    def close(self) -> None:
        self.closed = True


def test_test_connection_stores_and_returns_a_success(project, registry, admin_user, monkeypatch):
    fake = FakeClient(CheckResult(ok=True, message="Registry API v2 answered."))
    monkeypatch.setattr(Registry, "build_client", lambda self: fake)
    response = api_as(admin_user).post(
        api_url("registry-test", project_id=project.pk, pk=registry.pk)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["registry"]["connection_status"] == "success"
    assert fake.closed
    registry.refresh_from_db()
    assert registry.connection_status == "success" and registry.connection_checked_at


def test_test_connection_reports_a_failure_with_its_reason(
    project, registry, admin_user, monkeypatch
):
    fake = FakeClient(
        CheckResult(ok=False, code="auth_failed", message="The registry refused the credentials.")
    )
    monkeypatch.setattr(Registry, "build_client", lambda self: fake)
    response = api_as(admin_user).post(
        api_url("registry-test", project_id=project.pk, pk=registry.pk)
    )
    body = response.json()
    assert (body["ok"], body["code"]) == (False, "auth_failed")
    assert body["registry"]["connection_reason_code"] == "auth_failed"
    _assert_no_secret(response, PLANTED)


def test_test_connection_reports_a_client_that_cannot_be_built(
    project, registry, admin_user, monkeypatch
):
    def refuse(self):
        raise RegistryError("unsupported", "Unknown registry kind 'other'.")

    monkeypatch.setattr(Registry, "build_client", refuse)
    response = api_as(admin_user).post(
        api_url("registry-test", project_id=project.pk, pk=registry.pk)
    )
    assert response.status_code == 200
    assert (response.json()["ok"], response.json()["code"]) == (False, "unsupported")
    assert AuditEvent.objects.filter(action="registry.test", detail="failed: unsupported").exists()


def test_registries_show_their_repository_and_image_counts(project, registry, viewer):
    kept = Repository.objects.create(
        registry=registry, type="other", path="a/b", namespace="a", name="b"
    )
    Repository.objects.create(
        registry=registry,
        type="other",
        path="a/gone",
        namespace="a",
        name="gone",
        removed_at="2026-01-01T00:00:00Z",
    )
    for tag in ("1", "2"):
        Image.objects.create(project=project, repository=kept, tag=tag, digest="sha256:" + tag * 64)
    body = api_as(viewer).get(_detail(project, registry)).json()
    assert (body["repository_count"], body["image_count"]) == (1, 2)
