"""Registry events on a connection's page, on the command line and in the API: an admin turns
them on, sees the receiver URL, the setup for the kind and the secret once, rotates it, and
reads the health panel; a viewer and another project's admin see none of it."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from imagesync.events import EventReceiver, RegistryEvent
from imagesync.history import Change
from imagesync.models import AuditEvent, Registry
from tests.support.registry_events import distribution_envelope, hook_post


def edit_url(registry) -> str:
    return reverse("imagesync:registry-edit", args=[registry.pk])


def events_url(registry) -> str:
    return reverse("imagesync:registry-events", args=[registry.pk])


# --- the page -------------------------------------------------------------------------------


def test_an_admin_turns_events_on_and_sees_the_secret_once(login, admin_user, registry):
    client = login(admin_user)
    page = client.get(edit_url(registry)).content.decode()
    assert "Registry events are off." in page and "Turn on registry events" in page

    answer = client.post(events_url(registry), {"action": "enable"})
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    receiver = EventReceiver.objects.get(registry=registry)
    page = answer.content.decode()
    secret = answer.context["events"]["secret"]
    assert secret and secret in page
    assert receiver.token in page and "notifications:" in page  # the Distribution setup
    assert f"Authorization: [Bearer {secret}]" in page
    assert AuditEvent.objects.filter(action="registry.events_on", target=registry.name).exists()

    again = client.get(edit_url(registry)).content.decode()
    assert secret not in again and "Bearer &lt;secret&gt;" in again
    assert "Registry events are on." in again


def test_rotating_shows_a_new_secret_and_the_old_one_stops(login, admin_user, registry, client):
    receiver = EventReceiver.of(registry)
    old = receiver.enable()
    admin = login(admin_user)
    answer = admin.post(events_url(registry), {"action": "rotate"})
    new = answer.context["events"]["secret"]
    assert new and new != old and new in answer.content.decode()
    admin.logout()
    body = distribution_envelope([("push", "team/api", "1")])
    assert hook_post(client, receiver, body, f"Bearer {old}").status_code == 401
    assert hook_post(client, receiver, body, f"Bearer {new}").status_code == 202


def test_turning_events_off_makes_the_receiver_answer_404(login, admin_user, registry, client):
    receiver = EventReceiver.of(registry)
    secret = receiver.enable()
    login(admin_user).post(events_url(registry), {"action": "disable"})
    client.logout()
    body = distribution_envelope([("push", "team/api", "1")])
    assert hook_post(client, receiver, body, secret).status_code == 404


def test_the_health_panel_shows_events_refusals_and_drift(login, admin_user, registry, client):
    receiver = EventReceiver.of(registry)
    secret = receiver.enable()
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "1")]), secret)
    hook_post(client, receiver, distribution_envelope([("push", "team/api", "2")]), "bad")
    hook_post(client, receiver, b"nonsense", secret)
    repository = registry.repositories.create(type="other", path="team/db", name="db")
    change = Change(
        time=timezone.now(), kind="added", tag="9", new_digest="sha256:" + "9" * 64, source="sync"
    )
    change.identify(repository)
    change.save()
    before = Change(
        time=receiver.enabled_at - timedelta(days=1), kind="added", tag="8", source="sync"
    )
    before.identify(repository)
    before.save()
    health = receiver.health()
    assert health["events_24h"] == 1 and health["last_event_at"] is not None
    assert health["refused"]["bad_secret"] == 1 and health["refused"]["malformed"] == 1
    assert health["drift"] == 1  # the change from before events were on is not drift
    page = login(admin_user).get(edit_url(registry)).content.decode()
    assert 'id="events-drift">1<' in page and "team/db:9" in page


def test_a_viewer_can_neither_open_the_panel_nor_change_events(login, viewer, registry):
    receiver = EventReceiver.of(registry)
    receiver.enable()
    client = login(viewer)
    assert client.get(edit_url(registry)).status_code == 403
    assert client.post(events_url(registry), {"action": "rotate"}).status_code == 403
    stored = EventReceiver.objects.get(pk=receiver.pk)
    assert stored.secret_encrypted == receiver.secret_encrypted


def test_another_projects_admin_does_not_see_the_connection(login, outsider, registry):
    client = login(outsider)
    assert client.post(events_url(registry), {"action": "enable"}).status_code == 404
    assert not EventReceiver.objects.exists()


def test_an_unknown_action_is_400(login, admin_user, registry):
    answer = login(admin_user).post(events_url(registry), {"action": "explode"})
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("harbor", ['"auth_header": "Bearer ', '"PUSH_ARTIFACT"', '"DELETE_ARTIFACT"']),
        ("jfrog", ['"use_secret_for_signing": true', '"domain": "docker"', '"secret": "']),
        ("swr", ['"auth_header": "Authorization:Bearer ', "webhook/policies"]),
    ],
)
def test_the_setup_fits_the_registry_kind(login, admin_user, project, kind, expected):
    registry = Registry.objects.create(
        project=project, kind=kind, name=kind, endpoint=f"https://{kind}.example.com"
    )
    answer = login(admin_user).post(events_url(registry), {"action": "enable"})
    setup = answer.context["events"]["setup"]
    for text in expected:
        assert text in setup
    assert answer.context["events"]["secret"] in setup


# --- the command ----------------------------------------------------------------------------


def run(*args) -> str:
    out = StringIO()
    call_command("registry", "webhook", *args, stdout=out)
    return out.getvalue()


def test_the_command_turns_events_on_and_prints_the_secret_once(registry, project):
    first = json.loads(run(registry.name, "--project", project.name, "--format", "json"))
    receiver = EventReceiver.objects.get(registry=registry)
    assert first["url"].endswith(receiver.path()) and first["header"] == "Authorization"
    assert first["secret"] and f"Bearer {first['secret']}" in first["setup"]
    again = json.loads(run(registry.name, "--project", project.name, "--format", "json"))
    assert again["secret"] is None and "Bearer <secret>" in again["setup"]
    text = run(registry.name, "--project", project.name)
    assert "not shown" in text and first["secret"] not in text
    rotated = run(registry.name, "--project", project.name, "--rotate")
    receiver.refresh_from_db()
    new = [line for line in rotated.splitlines() if line.startswith("Secret: ")][0][8:]
    assert new != first["secret"] and receiver.authenticates({"Authorization": new}, b"")
    assert not receiver.authenticates({"Authorization": first["secret"]}, b"")


def test_the_command_turns_events_off(registry, project):
    run(registry.name, "--project", project.name)
    assert "off" in run(registry.name, "--project", project.name, "--disable").splitlines()[0]
    assert not EventReceiver.objects.get(registry=registry).enabled


# --- the API --------------------------------------------------------------------------------


def api_url(registry) -> str:
    return f"/api/v1/projects/{registry.project_id}/registries/{registry.pk}/events/"


def test_the_api_turns_events_on_for_admins_only(login, admin_user, viewer, registry, client):
    client.force_login(viewer)
    assert client.get(api_url(registry)).status_code == 403
    assert client.post(api_url(registry), {"action": "enable"}, format="json").status_code == 403
    client.force_login(admin_user)
    before = client.get(api_url(registry)).json()
    assert before["enabled"] is False and before["secret"] is None
    answer = client.post(
        api_url(registry), json.dumps({"action": "enable"}), content_type="application/json"
    )
    data = answer.json()
    assert answer.status_code == 200 and data["enabled"] and data["secret"]
    assert data["header"] == "Authorization" and data["secret"] in data["setup"]
    later = client.get(api_url(registry)).json()
    assert later["secret"] is None and data["secret"] not in json.dumps(later)
    assert later["health"]["events_24h"] == 0
    bad = client.post(
        api_url(registry), json.dumps({"action": "nope"}), content_type="application/json"
    )
    assert bad.status_code == 400


def test_the_api_hides_another_projects_connection(client, outsider, registry):
    client.force_login(outsider)
    assert client.get(api_url(registry)).status_code == 404


def test_events_for_a_removed_connection_are_counted_and_ignored(registry, client):
    receiver = EventReceiver.of(registry)
    secret = receiver.enable()
    hook_post(client, receiver, distribution_envelope([("push", "a", "1")]), secret)
    assert RegistryEvent.objects.count() == 1
    registry.remove()
    hook_post(client, receiver, distribution_envelope([("push", "a", "2")]), secret)
    receiver.refresh_from_db()
    assert receiver.ignored_removed == 1 and RegistryEvent.objects.count() == 1


def test_a_running_event_refresh_does_not_hide_the_synchronize_form(login, operator, registry):
    from imagesync.models import SyncTask

    SyncTask.objects.create(project=registry.project, trigger="event", status="running")
    page = login(operator).get(reverse("imagesync:sync-panel")).content.decode()
    assert "View the running task" not in page
    assert "A synchronization of this project is already" not in page
