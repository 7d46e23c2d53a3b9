"""End to end: last pulled from the pull notifications of a real Distribution registry.

Distribution reports every manifest GET and HEAD as a `pull`, the console's own sync requests
included; a pull by anyone else (here a `docker pull`-like GET of the manifest by tag) sets
last pulled, the console's own requests never do, and a pull writes no history."""

from __future__ import annotations

import time

import pytest

from imagesync.events import EventReceiver, refresh_registry
from imagesync.history import Change
from imagesync.models import Image, Project, Registry, SyncTask
from imagesync.registries.manifests import MANIFEST_ACCEPT
from imagesync.tasks import run_sync_task
from tests.support.registry_fixtures import (
    notifications_block,
    start_registry,
    stop_registry,
    tools_missing,
)
from tests.support.registry_seed import push_image
from tests.support.tools import missing_tool

pytestmark = [pytest.mark.registry, pytest.mark.django_db(transaction=True)]

WAIT = 30.0
DOCKER = "docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/6.1.0 os/linux arch/amd64"


@pytest.fixture
def notifying(live_server, tmp_path, settings):
    settings.REGISTRY_EVENTS_COALESCE_MS = 0
    if tools_missing():
        missing_tool(tools_missing())
    project = Project.objects.create(name="usage-e2e")
    registry = Registry.objects.create(
        project=project,
        kind="other",
        name="distribution",
        endpoint="http://127.0.0.1:1",
        allow_insecure_http=True,
    )
    receiver = EventReceiver.of(registry)
    secret = receiver.enable()
    reg = start_registry(
        tmp_path / "registry",
        notifications=notifications_block(live_server.url + receiver.path(), f"Bearer {secret}"),
    )
    registry.endpoint, registry.username = reg.url, reg.username
    registry.set_secret(reg.password)
    registry.save()
    try:
        yield project, registry, reg, receiver
    finally:
        stop_registry(reg)


def until(condition, what: str):
    deadline = time.monotonic() + WAIT
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def pulls_received(receiver) -> int:
    receiver.refresh_from_db()
    return receiver.ignored_pull


def test_a_pull_sets_last_pulled_and_the_consoles_own_requests_do_not(notifying):
    project, registry, reg, receiver = notifying
    digest = push_image(reg, "team/api", "1.0")

    def stored():
        refresh_registry(registry.pk, wait=False)
        return Image.objects.filter(repository__registry=registry, tag="1.0").first()

    until(stored, "the pushed image in the inventory")
    # The console's own full sync reads the manifest again (HEAD or GET): more "pulls".
    before = pulls_received(receiver)
    task = SyncTask.objects.request(project)
    run_sync_task(task.pk)
    until(lambda: pulls_received(receiver) > before, "the console's own pull events")
    time.sleep(0.5)  # any stray delivery of them
    row = Image.objects.get(repository__registry=registry, tag="1.0")
    assert row.last_pulled is None and not row.pull_known and row.pull_source == ""
    changes = Change.objects.filter(project=project).count()

    # Someone else pulls it by tag, as `docker pull` does.
    session = reg.session()
    answer = session.get(
        f"{reg.url}/v2/team/api/manifests/1.0",
        headers={"Accept": MANIFEST_ACCEPT, "User-Agent": DOCKER},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.headers["Docker-Content-Digest"] == digest

    def pulled():
        row = Image.objects.get(repository__registry=registry, tag="1.0")
        return row if row.last_pulled is not None else None

    row = until(pulled, "last pulled from the pull event")
    assert (row.pull_source, row.pull_known) == ("events", True)
    assert Change.objects.filter(project=project).count() == changes  # a pull is no change
    assert SyncTask.objects.filter(project=project, trigger="event").count() >= 1
    first = row.last_pulled

    # The console's next sync keeps it (Distribution has no pull data of its own).
    task = SyncTask.objects.request(project)
    run_sync_task(task.pk)
    row.refresh_from_db()
    assert row.last_pulled == first and row.pull_source == "events"
