"""Foundation: sign-in everywhere, project scoping, constraints, admin, settings, secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib import admin
from django.db import IntegrityError, transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from imagesync.middleware import SESSION_KEY
from imagesync.models import (
    AuthorizationGrant,
    Image,
    Project,
    ProjectMembership,
    Registry,
    Repository,
    SyncTask,
)

ROOT = Path(__file__).resolve().parent.parent
PLANTED = "PLANTED-SECRET-s3cr3t-9f8e7d"


def console_urls() -> list[str]:
    """Every console URL (not admin, API, login or logout), with 1 for each path argument."""
    urls = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if str(pattern.pattern).startswith(("admin/", "api/")):
                    continue  # the admin and the JSON API answer anonymous users their own way
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                route = prefix + str(pattern.pattern)
                if route.lstrip("^").startswith("hooks/"):
                    continue  # registry events: a registry POSTs there, with its secret
                if route.startswith(("login", "logout", "i18n/")):
                    continue  # the sign-in page's language switch is for anonymous users too
                for converter in pattern.pattern.converters:
                    route = route.replace(f"<int:{converter}>", "1").replace(f"<{converter}>", "x")
                urls.append("/" + route.lstrip("^").rstrip("$"))

    walk(get_resolver().url_patterns)
    return sorted(set(urls))


@pytest.mark.django_db
def test_every_console_url_sends_an_anonymous_user_to_sign_in(client):
    urls = console_urls()
    assert "/images/" in urls and "/tasks/" in urls
    for url in urls:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/"), url


@pytest.mark.django_db
def test_the_sign_in_page_is_served(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content and b'name="password"' in response.content


def test_a_user_sees_only_the_projects_they_belong_to(login, viewer, project, other_project):
    response = login(viewer).get(reverse("imagesync:image-list"))
    assert response.status_code == 200
    assert list(response.context["user_projects"]) == [project]
    assert other_project.name not in response.content.decode()


def test_a_user_cannot_select_another_project_by_editing_the_request(
    login, viewer, project, other_project
):
    client = login(viewer)
    client.get(reverse("imagesync:image-list"))
    assert client.session[SESSION_KEY] == project.pk
    client.post(reverse("imagesync:project-select"), {"project": other_project.pk})
    assert client.session[SESSION_KEY] == project.pk
    response = client.get(reverse("imagesync:image-list"))
    assert response.context["current_project"] == project


def test_a_forged_session_project_falls_back_to_the_users_own(
    login, viewer, project, other_project
):
    client = login(viewer)
    session = client.session
    session[SESSION_KEY] = other_project.pk
    session.save()
    response = client.get(reverse("imagesync:image-list"))
    assert response.context["current_project"] == project


def test_the_project_choice_persists_in_the_session(login, viewer, project, django_user_model):
    second = Project.objects.create(name="staging", region="cn-south-1")
    ProjectMembership.objects.create(user=viewer, project=second, role="viewer")
    client = login(viewer)
    response = client.post(
        reverse("imagesync:project-select"), {"project": second.pk, "next": "/tasks/"}
    )
    assert response.status_code == 302 and response["Location"] == "/tasks/"
    assert client.get(reverse("imagesync:image-list")).context["current_project"] == second


@pytest.mark.parametrize("target", ["https://evil.example", "//evil.example/x", "0", "admin:index"])
def test_selecting_a_project_rejects_an_outside_redirect(login, viewer, project, target):
    """Another host, or a bare word that is no path of this site, lands on Image View (a word
    once reached redirect() as a URL name and answered 500)."""
    response = login(viewer).post(
        reverse("imagesync:project-select"), {"project": project.pk, "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("imagesync:image-list")


def test_a_superuser_is_admin_of_every_project(superuser, project, other_project):
    assert set(Project.objects.for_user(superuser)) == {project, other_project}
    assert project.role_of(superuser) == "admin"


def test_constraints_reject_duplicate_repositories_and_images(registry, project):
    repo = Repository.objects.create(registry=registry, type="other", path="team/api", name="api")
    with pytest.raises(IntegrityError), transaction.atomic():
        Repository.objects.create(registry=registry, type="other", path="team/api", name="api")
    # the same path as another type is a different repository (SWR private vs shared)
    Repository.objects.create(registry=registry, type="harbor", path="team/api", name="api")
    Image.objects.create(project=project, repository=repo, tag="1.0", digest="sha256:" + "a" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        Image.objects.create(
            project=project, repository=repo, tag="1.0", digest="sha256:" + "b" * 64
        )


def test_only_one_sync_task_per_project_can_be_active(project, other_project):
    SyncTask.objects.create(project=project, status="running")
    with pytest.raises(IntegrityError), transaction.atomic():
        SyncTask.objects.create(project=project, status="queued")
    SyncTask.objects.create(project=project, status="failed")
    SyncTask.objects.create(project=other_project, status="queued")


def test_only_one_active_grant_per_policy(project, superuser):
    grant = AuthorizationGrant.objects.create(project=project, policy="SWROperatePolicy")
    with pytest.raises(IntegrityError), transaction.atomic():
        AuthorizationGrant.objects.create(project=project, policy="SWROperatePolicy")
    assert grant.revoke(superuser)
    assert not grant.revoke(superuser)
    AuthorizationGrant.objects.create(project=project, policy="SWROperatePolicy")
    assert AuthorizationGrant.objects.active().count() == 1


def test_a_registry_secret_is_stored_encrypted(registry):
    stored = Registry.objects.get(pk=registry.pk)
    assert PLANTED not in stored.secret_encrypted
    assert stored.get_secret() == PLANTED
    assert PLANTED not in repr(stored.client_config())


@pytest.mark.django_db
def test_admin_pages_for_every_model_render_for_a_superuser(
    client, superuser, registry, project, viewer
):
    repo = Repository.objects.create(registry=registry, type="other", path="team/api", name="api")
    Image.objects.create(project=project, repository=repo, tag="1.0", digest="sha256:" + "a" * 64)
    task = SyncTask.objects.create(project=project, status="failed", failure_reason="boom")
    task.results.create(repository=repo, repository_type="other", repository_path="team/api")
    AuthorizationGrant.objects.create(project=project, policy="CCEOperatePolicy")
    client.force_login(superuser)
    checked = 0
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        base = f"admin:{opts.app_label}_{opts.model_name}"
        assert client.get(reverse(f"{base}_changelist")).status_code == 200, opts.label
        if model_admin.has_add_permission(client.request().wsgi_request):
            assert client.get(reverse(f"{base}_add")).status_code == 200, opts.label
        obj = model.objects.first()
        if obj is not None:
            response = client.get(reverse(f"{base}_change", args=[obj.pk]))
            assert response.status_code == 200, opts.label
            assert PLANTED not in response.content.decode()
        checked += 1
    assert checked >= 9


@pytest.mark.django_db
def test_the_registry_secret_never_appears_in_a_rendered_page(client, superuser, registry):
    client.force_login(superuser)
    pages = [
        reverse("admin:imagesync_registry_change", args=[registry.pk]),
        reverse("admin:imagesync_registry_changelist"),
        reverse("imagesync:image-list"),
        reverse("imagesync:task-list"),
        reverse("imagesync:registry-list"),
    ]
    for url in pages:
        body = client.get(url).content.decode()
        assert PLANTED not in body, url
        assert registry.secret_encrypted not in body, url


def test_the_admin_registry_form_keeps_the_secret_when_left_blank(client, superuser, registry):
    client.force_login(superuser)
    url = reverse("admin:imagesync_registry_change", args=[registry.pk])
    data = {
        "project": registry.project_id,
        "kind": "other",
        "name": "renamed",
        "endpoint": registry.endpoint,
        "username": "robot",
        "secret": "",
        "verify_tls": "on",
        "ca_bundle": "",
        "options": "{}",
    }
    assert client.post(url, data).status_code == 302
    registry.refresh_from_db()
    assert registry.name == "renamed" and registry.get_secret() == PLANTED
    client.post(url, {**data, "secret": "a-new-one"})
    registry.refresh_from_db()
    assert registry.get_secret() == "a-new-one"


def test_a_grant_made_in_the_admin_records_who_and_when(client, superuser, project):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:imagesync_authorizationgrant_add"),
        {"project": project.pk, "policy": "SWROperatePolicy", "note": ""},
    )
    assert response.status_code == 302
    grant = AuthorizationGrant.objects.get()
    assert grant.granted_by == superuser and grant.granted_at is not None
    client.post(
        reverse("admin:imagesync_authorizationgrant_changelist"),
        {"action": "revoke_grants", "_selected_action": [grant.pk]},
    )
    grant.refresh_from_db()
    assert grant.revoked_by == superuser and grant.revoked_at is not None


def run_manage(*args, env=None, stdin=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "variable,value",
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://db/x"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("TIME_ZONE", "Mars/Olympus"),
        ("ENCRYPTION_KEY", "too-short"),
        ("SYNC_HEARTBEAT_TIMEOUT", "soon"),
    ],
)
def test_a_bad_setting_stops_start_up_with_an_error_naming_it(variable, value):
    result = run_manage("check", env={variable: value})
    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_production_settings_pass_the_deploy_check():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "SECRET_KEY": "x" * 20 + "-production-secret-key-with-enough-entropy-0123456789",
            "DEBUG": "false",
            "HTTPS": "true",
            "ALLOWED_HOSTS": "console.example.com",
        },
    )
    assert result.returncode == 0, result.stderr


def test_bootstrap_creates_the_default_project_and_an_admin_once(db, capsys):
    from django.core.management import call_command

    call_command("bootstrap", project="default", region="local", username="admin")
    first = capsys.readouterr().out
    assert "password:" in first
    call_command("bootstrap", project="default", region="local", username="admin")
    second = capsys.readouterr().out
    assert "password" not in second
    project = Project.objects.get(name="default")
    assert project.role_of(ProjectMembership.objects.get().user) == "admin"


class _FakePlaywrightPage:
    """Records where a screenshot would be written (no browser needed)."""

    def __init__(self):
        self.saved: list[Path] = []

    def wait_for_timeout(self, ms):
        pass

    def screenshot(self, path, **kwargs):
        self.saved.append(Path(path))


@pytest.mark.parametrize(
    ("update", "inside_docs"), [(None, False), ("0", False), ("1", True)], ids=str
)
def test_screenshots_replace_the_docs_pictures_only_when_asked(monkeypatch, update, inside_docs):
    from tests.support.browser import DOCS_SCREENSHOTS, ConsolePage

    if update is None:
        monkeypatch.delenv("UPDATE_SCREENSHOTS", raising=False)
    else:
        monkeypatch.setenv("UPDATE_SCREENSHOTS", update)
    page = _FakePlaywrightPage()
    target = ConsolePage(page=page, base_url="http://testserver").screenshot("image-view.png")
    assert page.saved == [target]
    assert (target.parent == DOCS_SCREENSHOTS) is inside_docs
    assert target.is_relative_to(ROOT) is inside_docs


# Automatic collections are off while the command runs: one could collect the cycle before the
# exit, depending on how many objects the process allocated before (it did in a clean clone).
# Python's last search at exit runs even so, unless manage.py froze every object first.
CYCLE_AT_EXIT = """
import gc, logging, sys
gc.disable()
class Cycle:
    def __del__(self):
        sys.stderr.write("cycle collected\\n")
cycle = Cycle()
cycle.itself = cycle
del cycle
logging.getLogger("imagesync").error("the last log line")
for number in range(5000):
    print(f"line {number}")
sys.exit(3)
"""


def test_a_command_ends_without_searching_for_cycles_and_loses_no_output():
    """manage.py skips Python's last search for reference cycles at exit (the process's end
    frees that memory anyway), which made every command end 0.1-0.25 s later; what the
    command wrote and its exit status still reach the caller."""
    result = run_manage("shell", "-c", CYCLE_AT_EXIT)
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[-5000:] == [f"line {number}" for number in range(5000)]
    assert "the last log line" in result.stderr
    assert "cycle collected" not in result.stderr  # the search did not run
