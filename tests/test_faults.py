"""A registry that misbehaves never costs the inventory an image, and never hangs a task.

Every test puts tests/support/fault_proxy.py between the sync engine and a real Distribution
registry and plays three syncs:

1. clean: the inventory becomes exactly the registry;
2. the registry changes (a tag added, a tag deleted, a tag re-pushed) and a fault is injected:
   the task still finishes within a bound, each repository ends with the right status and
   reason code, and no image that still exists in the registry leaves the inventory -- a
   repository whose listing failed keeps its previous images untouched;
3. the faults stop: the inventory is exactly the registry again.

Small retry budgets and timeouts (Registry.options) keep each test to a few seconds.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from imagesync.models import Image, Registry, SyncTask, SyncTaskRepository
from imagesync.tasks import run_sync_task
from tests.support.fault_proxy import FaultProxy, Rule
from tests.support.registry_seed import delete_tag, push_image

pytestmark = pytest.mark.registry

READ_TIMEOUT = 1.0
FAST_FAILURE = {
    "max_retries": 2,
    "retry_budget": 2.5,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
    "read_timeout": READ_TIMEOUT,
    "connect_timeout": 1,
    "max_concurrency": 4,
}
# The manifest of the tag pushed between the syncs, fetched by tag or by digest.
NEW_MANIFEST = r"^/v2/team/api/manifests/(2\.1|sha256:)"
RUN_BOUND = 60.0  # seconds: a run that takes longer is a hang
TARGET = "team/api"  # the repository the per-repository faults hit
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)

Inventory = dict[tuple[str, str], str]  # (repository path, tag) -> digest


def registry_truth(reg) -> Inventory:
    """What the registry really holds, read directly (not through the proxy)."""
    session = reg.session()
    truth: Inventory = {}
    catalog = session.get(f"{reg.url}/v2/_catalog", params={"n": 1000}, timeout=10).json()
    for path in catalog.get("repositories") or []:
        tags = session.get(f"{reg.url}/v2/{path}/tags/list", timeout=10).json().get("tags") or []
        for tag in tags:
            head = session.head(
                f"{reg.url}/v2/{path}/manifests/{tag}",
                headers={"Accept": MANIFEST_ACCEPT},
                timeout=10,
            )
            head.raise_for_status()
            truth[(path, tag)] = head.headers["Docker-Content-Digest"]
    return truth


def inventory(registry: Registry) -> Inventory:
    return {
        (path, tag): digest
        for path, tag, digest in Image.objects.filter(
            repository__registry=registry, repository__removed_at__isnull=True
        ).values_list("repository__path", "tag", "digest")
    }


def run_sync(project) -> SyncTask:
    """Create and run a sync of all repositories in a thread; fail the test if it hangs."""
    task = SyncTask.objects.request(project, enqueue=False)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_sync_task(task.pk)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=target, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(RUN_BOUND)
    assert not thread.is_alive(), f"the sync did not finish within {RUN_BOUND} s"
    assert not errors, errors
    task.refresh_from_db()
    task.elapsed = time.monotonic() - started
    assert task.status not in SyncTask.ACTIVE_STATUSES
    assert task.finished_at is not None
    return task


def results(task: SyncTask) -> dict[str, tuple[str, str]]:
    return {
        r.repository_path: (r.status, r.reason_code)
        for r in SyncTaskRepository.objects.filter(task=task)
    }


def seed_registry(reg) -> None:
    for tag in ("1.0", "1.1", "2.0"):
        push_image(reg, TARGET, tag)
    for tag in ("1.0", "1.1"):
        push_image(reg, "team/web", tag, oci=True)
    for tag in ("3.18", "3.19"):
        push_image(reg, "base/os", tag, arch="arm64", variant="v8")


def change_registry(reg) -> None:
    """What happens between two syncs: every repository changes in some way."""
    push_image(reg, TARGET, "2.1")
    delete_tag(reg, "team/web", "1.0")
    push_image(reg, "base/os", "3.19", arch="arm64", variant="v8", labels={"rebuilt": "yes"})


@pytest.fixture
def faulty(transactional_db, project, fresh_registry):
    """(proxy, Registry row, RunningRegistry): a seeded registry behind a fault proxy."""
    seed_registry(fresh_registry)
    proxy = FaultProxy(
        fresh_registry.url, upstream_auth=(fresh_registry.username, fresh_registry.password)
    ).start()
    registry = _registry_row(project, proxy, fresh_registry)
    try:
        yield proxy, registry, fresh_registry
    finally:
        proxy.stop()


def _registry_row(project, proxy: FaultProxy, reg) -> Registry:
    row = Registry(
        project=project,
        kind=Registry.Kind.OTHER,
        name="distribution",
        endpoint=proxy.url,
        username=reg.username,
        allow_insecure_http=True,
        options=dict(FAST_FAILURE),
    )
    row.set_secret(reg.password)
    row.save()
    return row


def assert_nothing_still_present_was_lost(before: Inventory, after: Inventory, truth: Inventory):
    """Every image of the previous inventory that the registry still has is still listed."""
    lost = {key for key, digest in before.items() if truth.get(key) == digest and key not in after}
    assert not lost, f"images still in the registry were removed from the inventory: {lost}"


def assert_failed_repository_kept_its_images(before: Inventory, after: Inventory, path: str):
    kept_before = {k: v for k, v in before.items() if k[0] == path}
    kept_after = {k: v for k, v in after.items() if k[0] == path}
    assert kept_before and kept_after == kept_before


# (fault rules, expected (status, reason code) of TARGET, expected task status)
PER_REPOSITORY_FAULTS = {
    "503 on every tag listing": (
        [Rule("status", path=rf"^/v2/{TARGET}/tags/list", status=503)],
        ("failed", "unreachable"),
        "partially_succeeded",
    ),
    "500 on every manifest": (
        [Rule("status", path=rf"^/v2/{TARGET}/manifests/", status=500)],
        ("failed", "unreachable"),
        "partially_succeeded",
    ),
    "502 on the new manifest": (
        [Rule("status", path=NEW_MANIFEST, method="GET", status=502)],
        ("failed", "unreachable"),
        "partially_succeeded",
    ),
    "connection reset on every tag listing": (
        [Rule("reset", path=rf"^/v2/{TARGET}/tags/list")],
        ("failed", "unreachable"),
        "partially_succeeded",
    ),
    "read timeout on every manifest HEAD": (
        [Rule("timeout", path=rf"^/v2/{TARGET}/manifests/", delay=READ_TIMEOUT + 0.5)],
        ("failed", "timeout"),
        "partially_succeeded",
    ),
    "429 storm with Retry-After": (
        [Rule("status", path=rf"^/v2/{TARGET}/", status=429, retry_after="1")],
        ("failed", "rate_limited"),
        "partially_succeeded",
    ),
    "429 storm without Retry-After": (
        [Rule("status", path=rf"^/v2/{TARGET}/", status=429)],
        ("failed", "rate_limited"),
        "partially_succeeded",
    ),
    "429 storm asking to wait an hour": (
        [Rule("status", path=rf"^/v2/{TARGET}/", status=429, retry_after="3600")],
        ("failed", "rate_limited"),
        "partially_succeeded",
    ),
    "truncated tag list (connection closed mid-body)": (
        [Rule("truncate", path=rf"^/v2/{TARGET}/tags/list")],
        ("failed", "unreachable"),
        "partially_succeeded",
    ),
    "tag list JSON cut short": (
        [Rule("cut", path=rf"^/v2/{TARGET}/tags/list")],
        ("failed", "bad_response"),
        "partially_succeeded",
    ),
    "malformed tag list": (
        [Rule("malformed", path=rf"^/v2/{TARGET}/tags/list")],
        ("failed", "bad_response"),
        "partially_succeeded",
    ),
    "malformed new manifest": (
        [Rule("malformed", path=NEW_MANIFEST, method="GET")],
        ("failed", "bad_response"),
        "partially_succeeded",
    ),
    "malformed image config": (
        [Rule("malformed", path=rf"^/v2/{TARGET}/blobs/")],
        ("failed", "bad_response"),
        "partially_succeeded",
    ),
    # Faults that a retry gets past: everything synchronizes.
    "one 502 then healthy": (
        [Rule("status", path=rf"^/v2/{TARGET}/tags/list", status=502, times=1)],
        ("finished", ""),
        "succeeded",
    ),
    "two connection resets then healthy": (
        [Rule("reset", path=rf"^/v2/{TARGET}/tags/list", times=2)],
        ("finished", ""),
        "succeeded",
    ),
    "a 429 burst with Retry-After 0": (
        [Rule("status", path=rf"^/v2/{TARGET}/", status=429, retry_after="0", times=2)],
        ("finished", ""),
        "succeeded",
    ),
    "one read timeout then healthy": (
        [Rule("timeout", path=rf"^/v2/{TARGET}/tags/list", delay=READ_TIMEOUT + 0.5, times=1)],
        ("finished", ""),
        "succeeded",
    ),
}


@pytest.mark.parametrize("name", list(PER_REPOSITORY_FAULTS))
def test_a_fault_on_one_repository_fails_only_it_and_keeps_its_images(faulty, project, name):
    proxy, registry, reg = faulty
    rules, expected_target, expected_task = PER_REPOSITORY_FAULTS[name]

    first = run_sync(project)
    assert first.status == "succeeded", first.failure_reason
    assert inventory(registry) == registry_truth(reg)
    before = inventory(registry)

    change_registry(reg)
    truth = registry_truth(reg)
    proxy.add(*rules)
    faulted = run_sync(project)
    after = inventory(registry)

    assert faulted.status == expected_task, faulted.failure_reason
    assert sum(rule.fired for rule in rules) > 0, "the fault was never injected"
    outcome = results(faulted)
    assert outcome[TARGET] == expected_target
    for path in ("team/web", "base/os"):
        assert outcome[path] == ("finished", "")
        assert {k: v for k, v in after.items() if k[0] == path} == {
            k: v for k, v in truth.items() if k[0] == path
        }
    assert_nothing_still_present_was_lost(before, after, truth)
    if expected_target[0] == "failed":
        assert_failed_repository_kept_its_images(before, after, TARGET)
        assert expected_target[1] == faulted.failure_code
        assert TARGET in faulted.failure_reason
        assert faulted.elapsed < 30, "a failing repository must not take long to give up"
    else:
        assert after == truth

    proxy.clear()
    healed = run_sync(project)
    assert healed.status == "succeeded", healed.failure_reason
    assert inventory(registry) == registry_truth(reg)


REGISTRY_WIDE_FAULTS = {
    "503 on the catalog": ([Rule("status", path=r"^/v2/_catalog", status=503)], "unreachable"),
    "catalog connection reset": ([Rule("reset", path=r"^/v2/_catalog")], "unreachable"),
    "catalog read timeout": (
        [Rule("timeout", path=r"^/v2/_catalog", delay=READ_TIMEOUT + 0.5)],
        "timeout",
    ),
    "catalog JSON cut short": ([Rule("cut", path=r"^/v2/_catalog")], "bad_response"),
    "malformed catalog": ([Rule("malformed", path=r"^/v2/_catalog")], "bad_response"),
    "429 storm on everything": ([Rule("status", status=429, retry_after="1")], "rate_limited"),
}


@pytest.mark.parametrize("name", list(REGISTRY_WIDE_FAULTS))
def test_a_failed_catalog_fails_every_repository_and_removes_nothing(faulty, project, name):
    proxy, registry, reg = faulty
    rules, code = REGISTRY_WIDE_FAULTS[name]
    assert run_sync(project).status == "succeeded"
    before = inventory(registry)

    change_registry(reg)
    proxy.add(*rules)
    faulted = run_sync(project)

    assert faulted.status == "failed"
    assert faulted.failure_code == code
    assert results(faulted) == {
        path: ("failed", code) for path in ("team/api", "team/web", "base/os")
    }
    assert inventory(registry) == before, "a failed catalog must not touch the inventory"

    proxy.clear()
    assert run_sync(project).status == "succeeded"
    assert inventory(registry) == registry_truth(reg)


def test_a_registry_that_vanishes_mid_task_ends_the_task_and_loses_nothing(faulty, project):
    proxy, registry, reg = faulty
    assert run_sync(project).status == "succeeded"
    before = inventory(registry)
    change_registry(reg)
    truth = registry_truth(reg)

    # The catalog and a few tag requests get through, then the registry is gone.
    proxy.latency = 0.02
    proxy.add(Rule("vanish", path=r"^/v2/.+/(tags|manifests)/", after=3))
    faulted = run_sync(project)
    after = inventory(registry)

    assert proxy.vanished
    assert faulted.status in ("failed", "partially_succeeded")
    outcome = results(faulted)
    assert set(outcome) == {"team/api", "team/web", "base/os"}
    assert any(status == "failed" for status, _code in outcome.values())
    for path, (status, code) in outcome.items():
        assert (status, code) in {("finished", ""), ("failed", "unreachable")}, path
        mine_after = {k: v for k, v in after.items() if k[0] == path}
        if status == "failed":
            assert mine_after == {k: v for k, v in before.items() if k[0] == path}
        else:
            assert mine_after == {k: v for k, v in truth.items() if k[0] == path}
    assert_nothing_still_present_was_lost(before, after, truth)

    proxy.restore()
    assert run_sync(project).status == "succeeded"
    assert inventory(registry) == registry_truth(reg)


def test_a_registry_gone_before_the_task_starts_fails_it_quickly(faulty, project):
    proxy, registry, reg = faulty
    assert run_sync(project).status == "succeeded"
    before = inventory(registry)
    proxy.vanish()
    faulted = run_sync(project)
    assert faulted.status == "failed"
    assert faulted.failure_code == "unreachable"
    assert faulted.elapsed < 20
    assert inventory(registry) == before
    proxy.restore()
    assert run_sync(project).status == "succeeded"


def test_a_token_that_expires_mid_sync_is_renewed_and_nothing_fails(
    transactional_db, project, fresh_registry
):
    """The token service says a token lives 300 s, but the registry drops it after three uses
    or 0.3 s: the client must answer the new challenge with a new token, not fail the
    repository."""
    reg = fresh_registry
    seed_registry(reg)
    proxy = FaultProxy(
        reg.url,
        upstream_auth=(reg.username, reg.password),
        token_auth=True,
        token_ttl=0.3,
        token_expires_in=300,
        token_max_uses=3,
    ).start()
    try:
        registry = _registry_row(project, proxy, reg)
        assert run_sync(project).status == "succeeded"
        change_registry(reg)
        proxy.latency = 0.05  # long enough that tokens expire between requests
        task = run_sync(project)
        assert task.status == "succeeded", task.failure_reason
        assert proxy.count(outcome="challenge:expired") > 0, "no token expired mid-sync"
        assert proxy.count(r"^/token", outcome="token") > 2
        assert inventory(registry) == registry_truth(reg)
    finally:
        proxy.stop()


def test_a_token_service_that_refuses_the_credentials_fails_with_auth_failed(
    transactional_db, project, fresh_registry
):
    reg = fresh_registry
    seed_registry(reg)
    proxy = FaultProxy(reg.url, upstream_auth=(reg.username, reg.password), token_auth=True).start()
    try:
        registry = _registry_row(project, proxy, reg)
        assert run_sync(project).status == "succeeded"
        before = inventory(registry)
        registry.set_secret("not-the-password")
        registry.save()
        task = run_sync(project)
        assert task.status == "failed"
        assert task.failure_code == "auth_failed"
        assert "not-the-password" not in task.failure_reason
        assert inventory(registry) == before
    finally:
        proxy.stop()
