"""End to end: a real Distribution registry whose config.yml (written by the test) sends its
notifications to the live test server; the worker's refresh (called here as the worker would)
brings the inventory in line without any manual sync."""

from __future__ import annotations

import time

import pytest
import requests

from imagesync.events import EventReceiver, RefreshPending, RegistryEvent, refresh_registry
from imagesync.history import Change
from imagesync.models import Image, Project, Registry, SyncTask
from tests.support.registry_events import distribution_envelope
from tests.support.registry_fixtures import (
    notifications_block,
    restart_registry,
    start_registry,
    stop_registry,
    tools_missing,
)
from tests.support.registry_seed import delete_manifest, push_image
from tests.support.tools import missing_tool

pytestmark = [pytest.mark.registry, pytest.mark.django_db(transaction=True)]

WAIT = 30.0  # seconds for an event to reach the inventory (a few in practice)


@pytest.fixture
def notifying(live_server, tmp_path, settings):
    """(project, registry connection, running registry, receiver) with events turned on and
    the registry configured to notify the live server."""
    settings.REGISTRY_EVENTS_COALESCE_MS = 0
    if tools_missing():
        missing_tool(tools_missing())
    project = Project.objects.create(name="events-e2e")
    registry = Registry(
        project=project,
        kind="other",
        name="distribution",
        endpoint="http://127.0.0.1:1",  # set once the registry has its port
        username="seeder",
        allow_insecure_http=True,
    )
    registry.save()
    receiver = EventReceiver.of(registry)
    secret = receiver.enable()
    url = live_server.url + receiver.path()
    reg = start_registry(
        tmp_path / "registry", notifications=notifications_block(url, f"Bearer {secret}")
    )
    registry.endpoint = reg.url
    registry.set_secret(reg.password)
    registry.username = reg.username
    registry.save()
    try:
        yield project, registry, reg, receiver
    finally:
        stop_registry(reg)
        _wait_for_deliveries_to_end(receiver)


def _wait_for_deliveries_to_end(receiver, quiet: float = 1.0, limit: float = 15.0) -> None:
    """Wait until no notification the stopped registry sent is still being stored by the
    live server (each of the test's refreshes pulls manifests, and the registry notifies
    those pulls too): the database is emptied after the test, and a delivery stored meanwhile
    refers to rows already deleted."""

    def stored() -> tuple[int, int]:
        pending = RefreshPending.objects.filter(registry_id=receiver.registry_id).count()
        return RegistryEvent.objects.filter(receiver=receiver).count(), pending

    deadline = time.monotonic() + limit
    last, since = stored(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = stored()
        if now != last:
            last, since = now, time.monotonic()


def inventory(registry) -> dict[str, str]:
    rows = Image.objects.filter(repository__registry=registry)
    return {f"{p}:{t}": d for p, t, d in rows.values_list("repository__path", "tag", "digest")}


def wait_for(registry, condition) -> dict[str, str]:
    """Run the refresh as the worker does until the inventory meets `condition`."""
    deadline = time.monotonic() + WAIT
    while True:
        refresh_registry(registry.pk, wait=False)
        found = inventory(registry)
        if condition(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"the inventory did not follow the registry: {found}")
        time.sleep(0.2)


def test_pushes_repushes_and_deletes_reach_the_inventory_without_a_sync(notifying):
    project, registry, reg, receiver = notifying

    first = push_image(reg, "team/api", "1.0")
    wait_for(registry, lambda inv: inv.get("team/api:1.0") == first)

    again = push_image(reg, "team/api", "1.0", created="2025-01-01T00:00:00Z")
    assert again != first
    wait_for(registry, lambda inv: inv.get("team/api:1.0") == again)

    doomed = push_image(reg, "team/api", "2.0", created="2025-02-01T00:00:00Z")
    wait_for(registry, lambda inv: inv.get("team/api:2.0") == doomed)
    delete_manifest(reg, "team/api", doomed)
    final = wait_for(registry, lambda inv: "team/api:2.0" not in inv)
    assert final == {"team/api:1.0": again}

    tasks = SyncTask.objects.filter(project=project)
    assert set(tasks.values_list("trigger", flat=True)) == {"event"}  # no manual sync at all
    assert set(Change.objects.filter(project=project).values_list("source", flat=True)) == {"event"}
    assert RegistryEvent.objects.filter(receiver=receiver).exists()


def test_events_still_arrive_after_the_registry_restarts(notifying):
    _project, registry, reg, _receiver = notifying
    before = push_image(reg, "team/web", "1")
    wait_for(registry, lambda inv: inv.get("team/web:1") == before)
    restart_registry(reg)
    after = push_image(reg, "team/web", "2", created="2025-03-01T00:00:00Z")
    wait_for(registry, lambda inv: inv.get("team/web:2") == after)


def test_a_wrong_secret_changes_nothing(notifying, live_server):
    _project, registry, reg, receiver = notifying
    body = distribution_envelope([("push", "team/api", "1.0")])
    answer = requests.post(
        live_server.url + receiver.path(),
        data=body,
        headers={"Authorization": "Bearer not-the-secret"},
        timeout=10,
    )
    assert answer.status_code == 401
    receiver.refresh_from_db()
    assert receiver.refused_secret == 1
    assert not RegistryEvent.objects.filter(receiver=receiver).exists()
    assert refresh_registry(registry.pk, wait=False) is None
    assert inventory(registry) == {} and not SyncTask.objects.exists()
