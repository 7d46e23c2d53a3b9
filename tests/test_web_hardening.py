"""Web hardening a security admin can check: CSRF on every state change, production cookie and
header settings, `check --deploy` clean, a Content Security Policy the pages really pass (no
inline script, no inline handlers, no inline styles), login throttling, and an audit trail of
who started, cancelled and retried syncs and who changed registries and grants.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from imagesync.models import AuditEvent, AuthorizationGrant, Registry, SyncTask
from tests.support.factories import PASSWORD, seed_project
from tests.support.web import POST_ONLY, body_of, console_urls, fragment_headers

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def seeded(db, project, other_project):
    return seed_project(project, "hard9k")


# --- CSRF -------------------------------------------------------------------------------------


def state_changing_urls(seeded) -> dict[str, str]:
    """Every console URL that accepts POST: the POST-only ones and the forms."""
    urls = console_urls(seeded, include_post_only=True)
    forms = {"sync-panel", "registry-create", "registry-edit", "registry-delete"}
    chosen = {name: url for name, url in urls.items() if name in POST_ONLY | forms}
    chosen["logout"] = reverse("logout")
    return chosen


def test_every_state_change_is_refused_without_a_csrf_token(seeded, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    urls = state_changing_urls(seeded)
    assert len(urls) >= 9
    for name, url in urls.items():
        for headers in ({}, fragment_headers()):
            response = client.post(
                url, {"sync_type": "all", "project": seeded.project.pk}, headers=headers
            )
            assert response.status_code == 403, f"{name} accepted a POST without CSRF token"
    assert not SyncTask.objects.filter(status="queued").exists()
    assert Registry.objects.filter(pk=seeded.registry.pk).exists()
    assert client.get(reverse("imagesync:image-list")).status_code == 200  # still signed in


def test_a_state_change_with_the_token_goes_through(seeded, admin_user):
    """The other half: the token from the page is accepted, so the 403 above is CSRF's."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    client.get(reverse("imagesync:image-list"))
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("imagesync:task-cancel", args=[seeded.task.pk]), {"csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302


def test_the_login_form_and_the_api_need_csrf_for_session_users(seeded, admin_user):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("login"), {"username": admin_user.username, "password": PASSWORD}
    )
    assert response.status_code == 403
    client.force_login(admin_user)
    response = client.post(
        f"/api/v1/projects/{seeded.project.pk}/sync-tasks/",
        {"scope": "all"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert not SyncTask.objects.filter(status="queued").exists()


# --- production settings ----------------------------------------------------------------------


def production_env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "IMAGESYNC_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "HTTPS": "true",
        "DEBUG": "false",
        "SECRET_KEY": "prod-" + "k3y-w1th-3n0ugh-3ntr0py-" * 3,
        "ALLOWED_HOSTS": "console.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://console.example.com",
    }
    env.pop("REDIS_URL", None)
    return env


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_responses_carry_secure_cookies_and_headers(tmp_path):
    env = production_env(tmp_path)
    for command in (["migrate", "--noinput", "-v", "0"], ["createcachetable"]):  # as bin/run
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=120
        )
    script = textwrap.dedent(
        f"""
        import django, json
        django.setup()
        from django.contrib.auth.models import User
        from django.test import Client
        User.objects.create_user("prod-user", password={PASSWORD!r})
        client = Client(HTTP_HOST="console.example.com")
        plain = client.get("/login/")
        page = client.get("/login/", secure=True)
        token = client.cookies["csrftoken"].value
        signed = client.post("/login/", {{"username": "prod-user", "password": {PASSWORD!r},
                              "csrfmiddlewaretoken": token}}, secure=True,
                              HTTP_REFERER="https://console.example.com/login/")
        cookies = {{name: dict(morsel) for name, morsel in client.cookies.items()}}
        print(json.dumps({{"plain": [plain.status_code, plain.get("Location", "")],
                          "headers": dict(page.headers), "signed": signed.status_code,
                          "cookies": cookies}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["plain"][0] == 301 and seen["plain"][1].startswith("https://")
    headers = seen["headers"]
    assert "max-age=31536000" in headers["Strict-Transport-Security"]
    assert "includeSubDomains" in headers["Strict-Transport-Security"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert seen["signed"] == 302
    for name in ("sessionid", "csrftoken"):
        cookie = seen["cookies"][name]
        assert cookie["secure"] is True, name
        assert cookie["httponly"] is True, name
        assert cookie["samesite"] == "Lax", name


# --- Content Security Policy ------------------------------------------------------------------


class InlineCodeFinder(HTMLParser):
    """Collects what a strict CSP would block: inline <script> bodies, on*= handlers, style=
    attributes, <style> blocks and javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            if name == "style":
                self.problems.append(f"<{tag} style=...>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"<{tag} {name}=javascript:...>")
        if tag == "script":
            self._in_script = not any(name == "src" for name, _ in attrs)
            type_ = dict(attrs).get("type", "")
            if type_ in ("application/json", "text/template"):  # data, not code
                self._in_script = False
        if tag == "style":
            self._in_style = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append(f"inline <script>: {data.strip()[:60]}")
        if self._in_style and data.strip():
            self.problems.append(f"inline <style>: {data.strip()[:60]}")


def inline_code(html: str) -> list[str]:
    finder = InlineCodeFinder()
    finder.feed(html)
    return finder.problems


def test_the_inline_code_finder_finds_what_csp_blocks():
    html = (
        '<p style="color:red" onclick="x()">a</p><script>alert(1)</script>'
        '<script src="/static/app.js"></script><a href="javascript:void(0)">x</a>'
    )
    assert len(inline_code(html)) == 4


def check_page(response, where: str) -> None:
    assert response.status_code == 200, where
    policy = response["Content-Security-Policy"]
    script_src = next(
        (d for d in policy.split(";") if d.strip().startswith(("script-src", "default-src"))), ""
    )
    assert "'unsafe-inline'" not in policy, f"{where}: {policy}"
    assert "'unsafe-eval'" not in script_src, where
    assert "script-src 'self'" in policy
    assert "object-src 'none'" in policy
    problems = inline_code(body_of(response))
    assert not problems, f"{where} has inline code a strict CSP blocks: {problems[:5]}"


@pytest.mark.parametrize("persona", ["admin_user", "viewer"])
def test_every_console_page_and_fragment_passes_the_csp(request, client, seeded, persona):
    client.force_login(request.getfixturevalue(persona))
    for name, url in console_urls(seeded).items():
        if name == "image-export":
            continue  # CSV
        admin_only = (
            name.startswith("registry-") and name != "registry-list"
        ) or name == "audit-list"
        if persona == "viewer" and admin_only:
            continue  # admins only: 403
        for headers in ({}, fragment_headers()):
            check_page(client.get(url, headers=headers), f"{persona} {url} {headers}")
    # The pages with filters applied, a form with errors and a page with messages.
    check_page(client.get(reverse("imagesync:image-list"), {"q": "x", "type": "other"}), "filter")
    check_page(client.get(reverse("imagesync:image-list"), {"size_min": "abc"}), "bad filter")


def test_the_login_page_and_invalid_forms_pass_the_csp(client, seeded, admin_user):
    check_page(client.get(reverse("login")), "login")
    check_page(client.post(reverse("login"), {"username": "x", "password": "y"}), "bad login")
    client.force_login(admin_user)
    check_page(client.post(reverse("imagesync:registry-create"), {"name": ""}), "bad registry")
    check_page(
        client.post(reverse("imagesync:sync-panel"), {"sync_type": "types"}), "bad sync form"
    )
    check_page(
        client.post(
            reverse("imagesync:sync-panel"), {"sync_type": "types"}, headers=fragment_headers()
        ),
        "bad sync form fragment",
    )


def test_every_page_sends_the_security_headers(client, seeded, admin_user):
    client.force_login(admin_user)
    for url in console_urls(seeded).values():
        response = client.get(url)
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["X-Frame-Options"] == "DENY", url
        assert response["Referrer-Policy"] == "same-origin", url
        assert "Content-Security-Policy" in response, url


# --- login throttling -------------------------------------------------------------------------


@override_settings(AXES_FAILURE_LIMIT=4)  # what LOGIN_FAILURE_LIMIT=4 sets
def test_guessing_passwords_is_stopped_and_the_lockout_leaks_nothing(client, viewer):
    guesses = [
        client.post(reverse("login"), {"username": viewer.username, "password": f"guess-{n}"})
        for n in range(4)
    ]
    assert [r.status_code for r in guesses] == [200, 200, 200, 429]  # the 4th already locks
    locked = client.post(reverse("login"), {"username": viewer.username, "password": PASSWORD})
    unknown = client.post(reverse("login"), {"username": "nobody", "password": "x"})
    assert locked.status_code == 429
    assert unknown.status_code == 429  # same address: no way to tell users apart
    assert "_auth_user_id" not in client.session
    assert PASSWORD not in body_of(locked)


# --- audit trail ------------------------------------------------------------------------------


def actions_of(user) -> list[str]:
    return list(
        AuditEvent.objects.filter(actor=user)
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )


def test_sync_start_cancel_and_retry_from_the_console_are_audited(client, seeded, operator):
    client.force_login(operator)
    client.post(reverse("imagesync:sync-panel"), {"sync_type": "all"})
    started = SyncTask.objects.get(project=seeded.project, status="queued")
    client.post(reverse("imagesync:task-cancel", args=[started.pk]))
    client.post(reverse("imagesync:task-retry", args=[seeded.task.pk]))
    assert actions_of(operator) == ["sync.start", "sync.cancel", "sync.retry"]
    events = AuditEvent.objects.filter(actor=operator)
    assert all(
        e.project_id == seeded.project.pk and e.actor_name == operator.username for e in events
    )
    assert all(e.created_at for e in events)
    assert {e.target for e in events} >= {str(started)}


def test_registry_changes_from_the_console_are_audited(client, seeded, admin_user):
    client.force_login(admin_user)
    client.post(
        reverse("imagesync:registry-create"),
        {
            "name": "audited",
            "kind": "other",
            "endpoint": "https://audited.example.com",
            "username": "u",
            "secret": "AUDIT-SECRET-1234",
            "verify_tls": "on",
            "options": "{}",
        },
    )
    created = Registry.objects.get(name="audited")
    client.post(
        reverse("imagesync:registry-edit", args=[created.pk]),
        {
            "name": "audited-2",
            "kind": "other",
            "endpoint": "https://audited.example.com",
            "username": "u",
            "verify_tls": "on",
            "options": "{}",
        },
    )
    client.post(reverse("imagesync:registry-delete", args=[created.pk]))
    assert actions_of(admin_user) == ["registry.create", "registry.update", "registry.delete"]
    details = " ".join(AuditEvent.objects.values_list("detail", flat=True))
    assert "AUDIT-SECRET-1234" not in details


def test_registry_and_grant_changes_in_the_admin_are_audited(client, seeded, superuser):
    client.force_login(superuser)
    client.post(
        reverse("admin:imagesync_authorizationgrant_add"),
        {"project": seeded.project.pk, "policy": "CCEOperatePolicy", "note": "ok"},
    )
    grant = AuthorizationGrant.objects.get(policy="CCEOperatePolicy")
    client.post(
        reverse("admin:imagesync_authorizationgrant_changelist"),
        {"action": "revoke_grants", "_selected_action": [grant.pk]},
    )
    client.post(
        reverse("admin:imagesync_registry_delete", args=[seeded.registry.pk]), {"post": "yes"}
    )
    assert actions_of(superuser) == ["grant.create", "grant.revoke", "registry.delete"]


def test_bulk_deletes_in_the_admin_are_audited_too(client, seeded, superuser):
    client.force_login(superuser)
    grant = AuthorizationGrant.objects.get(project=seeded.project)
    for changelist, pk in (
        ("admin:imagesync_authorizationgrant_changelist", grant.pk),
        ("admin:imagesync_registry_changelist", seeded.registry.pk),
    ):
        client.post(
            reverse(changelist),
            {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
        )
    assert not Registry.objects.filter(pk=seeded.registry.pk).exists()
    assert sorted(actions_of(superuser)) == ["grant.delete", "registry.delete"]


def test_the_audit_log_is_visible_to_superusers_and_read_only(client, seeded, superuser, operator):
    client.force_login(operator)
    client.post(reverse("imagesync:sync-panel"), {"sync_type": "all"})
    client.force_login(superuser)
    page = client.get(reverse("admin:imagesync_auditevent_changelist"))
    assert page.status_code == 200
    assert "sync.start" in body_of(page) and operator.username in body_of(page)
    assert client.get(reverse("admin:imagesync_auditevent_add")).status_code == 403
