"""Registry events from Harbor (default and CloudEvents payloads), JFrog (plain secret and
HMAC signature) and SWR Enterprise Edition: the receiver authenticates and parses each, and the
refresh re-lists the named repository through the connection's real client against
`responses` answers shaped like the vendor APIs. Nothing from the payload reaches the
inventory: the tags are what the listing says."""

from __future__ import annotations

import pytest
import responses

from imagesync.events import EventReceiver, RefreshPending, refresh_registry
from imagesync.models import AuthorizationGrant, Image, Registry, SyncTask
from tests.support import harbor_payloads as harbor
from tests.support import jfrog_payloads as jfrog
from tests.support import swr_payloads as swr
from tests.support.registry_events import (
    harbor_cloudevent,
    harbor_event,
    hook_post,
    jfrog_event,
    jfrog_signature,
    swr_ee_event,
)

pytestmark = pytest.mark.django_db(transaction=True)

HARBOR = "https://harbor.example.com"
ART = "https://art.example.com/artifactory"
SWR = "https://swr-api.cn-north-4.myhuaweicloud.com"
SWR_PROJECT = "0123456789abcdef0123456789abcdef"
INSTANCE = "5b8f1f62-0000-4a8e-9d3e-0123456789ab"


@pytest.fixture(autouse=True)
def no_coalescing_wait(settings):
    settings.REGISTRY_EVENTS_COALESCE_MS = 0


def connect(project, kind: str, endpoint: str, **options) -> tuple[Registry, EventReceiver, str]:
    registry = Registry(
        project=project,
        kind=kind,
        name=f"{kind}-registry",
        endpoint=endpoint,
        username="robot",
        options={"backoff_base": 0, "max_retries": 0, **options},
    )
    registry.set_secret("registry-password-never-shown")
    registry.save()
    receiver = EventReceiver.of(registry)
    return registry, receiver, receiver.enable()


def tags(registry) -> dict[str, str]:
    rows = Image.objects.filter(repository__registry=registry)
    return {f"{p}:{t}": d for p, t, d in rows.values_list("repository__path", "tag", "digest")}


def serve_harbor_artifacts(path: str, artifacts: list[dict]) -> None:
    project, _, name = path.partition("/")
    responses.get(
        f"{HARBOR}/api/v2.0/projects/{project}/repositories/{name}/artifacts",
        json=artifacts,
        headers={"X-Total-Count": str(len(artifacts))},
    )


# --- Harbor ---------------------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize("payload", [harbor_event, harbor_cloudevent])
def test_a_harbor_push_refreshes_the_repository(client, project, payload):
    registry, receiver, secret = connect(project, "harbor", HARBOR)
    kind = "PUSH_ARTIFACT" if payload is harbor_event else "harbor.artifact.pushed"
    body = payload(kind, "library/nginx", "1.25")
    # Harbor sends the policy's auth_header verbatim as Authorization.
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 202
    artifact = harbor.single_artifact(
        7, [harbor.tag(1, 7, "1.25", "2024-05-01T08:15:30.123Z")], arch="amd64"
    )
    serve_harbor_artifacts("library/nginx", [artifact])
    task = SyncTask.objects.get(pk=refresh_registry(registry.pk, wait=False))
    assert task.status == SyncTask.Status.SUCCEEDED and task.trigger == "event"
    assert tags(registry) == {"library/nginx:1.25": harbor.digest(7)}


@responses.activate
@pytest.mark.parametrize("payload", [harbor_event, harbor_cloudevent])
def test_a_harbor_delete_removes_what_the_listing_no_longer_has(client, project, payload):
    registry, receiver, secret = connect(project, "harbor", HARBOR)
    push = harbor_event("PUSH_ARTIFACT", "library/nginx", "1.25")
    hook_post(client, receiver, push, secret)
    artifacts = [
        harbor.single_artifact(7, [harbor.tag(1, 7, "1.25", "2024-05-01T08:15:30.123Z")]),
        harbor.single_artifact(8, [harbor.tag(2, 8, "1.26", "2024-05-02T08:15:30.123Z")]),
    ]
    serve_harbor_artifacts("library/nginx", artifacts)
    refresh_registry(registry.pk, wait=False)
    assert len(tags(registry)) == 2
    kind = "DELETE_ARTIFACT" if payload is harbor_event else "harbor.artifact.deleted"
    assert (
        hook_post(client, receiver, payload(kind, "library/nginx", "1.25"), secret).status_code
        == 202
    )
    responses.replace(
        responses.GET,
        f"{HARBOR}/api/v2.0/projects/library/repositories/nginx/artifacts",
        json=artifacts[1:],
        headers={"X-Total-Count": "1"},
    )
    refresh_registry(registry.pk, wait=False)
    assert tags(registry) == {"library/nginx:1.26": harbor.digest(8)}


@pytest.mark.parametrize("payload", [harbor_event, harbor_cloudevent])
def test_harbor_pulls_and_other_event_types_are_ignored(client, project, payload):
    _registry, receiver, secret = connect(project, "harbor", HARBOR)
    pull = "PULL_ARTIFACT" if payload is harbor_event else "harbor.artifact.pulled"
    scan = "SCANNING_COMPLETED" if payload is harbor_event else "harbor.scan.completed"
    for kind in (pull, scan):
        assert hook_post(client, receiver, payload(kind, "a/b", "1"), secret).status_code == 202
    receiver.refresh_from_db()
    assert (receiver.ignored_pull, receiver.ignored_unknown) == (1, 1)
    assert not RefreshPending.objects.exists()


def test_a_harbor_event_with_a_wrong_auth_header_is_refused(client, project):
    _registry, receiver, _secret = connect(project, "harbor", HARBOR)
    body = harbor_event("PUSH_ARTIFACT", "library/nginx", "1.25")
    assert hook_post(client, receiver, body, "Bearer not-it").status_code == 401
    assert not RefreshPending.objects.exists()


# --- JFrog ----------------------------------------------------------------------------------


def serve_aql(results: list[dict]) -> None:
    responses.post(f"{ART}/api/search/aql", json=jfrog.aql_answer(results))


@responses.activate
@pytest.mark.parametrize("signed", [False, True])
def test_a_jfrog_push_refreshes_the_image_path(client, project, signed):
    registry, receiver, secret = connect(project, "jfrog", ART, fetch_manifests=False)
    body = jfrog_event("pushed", "docker-local", "team/api", "1.0")
    auth = jfrog_signature(body, secret) if signed else secret
    response = hook_post(client, receiver, body, auth, header="X-JFrog-Event-Auth")
    assert response.status_code == 202
    assert list(RefreshPending.objects.values_list("type", "path")) == [
        ("jfrog", "docker-local/team/api")
    ]
    serve_aql([jfrog.manifest_item("docker-local", "team/api", "1.0", 1)])
    task = SyncTask.objects.get(pk=refresh_registry(registry.pk, wait=False))
    assert task.status == SyncTask.Status.SUCCEEDED
    assert tags(registry) == {"docker-local/team/api:1.0": jfrog.digest(1)}


@pytest.mark.parametrize("auth", ["wrong", None, "0" * 64])
def test_a_jfrog_event_without_the_secret_or_its_signature_is_refused(client, project, auth):
    _registry, receiver, secret = connect(project, "jfrog", ART)
    body = jfrog_event("pushed", "docker-local", "team/api", "1.0")
    # The signature of another body does not pass either.
    other = jfrog_signature(b"{}", secret)
    for value in (auth, other):
        response = hook_post(client, receiver, body, value, header="X-JFrog-Event-Auth")
        assert response.status_code == 401
    # Authorization is not JFrog's header.
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 401
    assert not RefreshPending.objects.exists()


def test_jfrog_events_of_other_domains_are_ignored(client, project):
    _registry, receiver, secret = connect(project, "jfrog", ART)
    body = jfrog_event("deployed", "generic-local", "a", "b", domain="artifact")
    assert hook_post(client, receiver, body, secret, header="X-JFrog-Event-Auth").status_code == 202
    receiver.refresh_from_db()
    assert receiver.ignored_unknown == 1 and not RefreshPending.objects.exists()


@responses.activate
def test_a_jfrog_delete_empties_the_deleted_tag(client, project):
    registry, receiver, secret = connect(project, "jfrog", ART, fetch_manifests=False)
    push = jfrog_event("pushed", "docker-local", "team/api", "1.0")
    hook_post(client, receiver, push, secret, header="X-JFrog-Event-Auth")
    serve_aql([jfrog.manifest_item("docker-local", "team/api", "1.0", 1)])
    refresh_registry(registry.pk, wait=False)
    delete = jfrog_event("deleted", "docker-local", "team/api", "1.0")
    signature = jfrog_signature(delete, secret)
    assert (
        hook_post(client, receiver, delete, signature, header="X-JFrog-Event-Auth").status_code
        == 202
    )
    responses.replace(responses.POST, f"{ART}/api/search/aql", json=jfrog.aql_answer([]))
    refresh_registry(registry.pk, wait=False)
    assert tags(registry) == {}


# --- SWR Enterprise Edition -----------------------------------------------------------------


@responses.activate
def test_an_swr_enterprise_push_refreshes_the_repository(client, project):
    AuthorizationGrant.objects.create(project=project, policy="SWRAuthorization")
    registry, receiver, secret = connect(
        project, "swr", SWR, project_id=SWR_PROJECT, region="cn-north-4"
    )
    assert receiver.header_name == "Authorization"
    body = swr_ee_event("shop/api", "v1")
    assert hook_post(client, receiver, body, f"Bearer {secret}").status_code == 202
    assert list(RefreshPending.objects.values_list("type", "path")) == [
        ("swr_enterprise", "shop/api")
    ]
    responses.get(
        f"{SWR}/v2/{SWR_PROJECT}/instances",
        json={"instances": [swr.instance(id=INSTANCE)], "total": 1},
    )
    responses.get(
        f"{SWR}/v2/{SWR_PROJECT}/instances/{INSTANCE}/repositories",
        json={"total": 1, "repositories": [swr.instance_repository("shop", "api")]},
    )
    responses.get(
        f"{SWR}/v2/{SWR_PROJECT}/instances/{INSTANCE}/namespaces/shop/repositories/api/artifacts",
        json={"artifacts": [swr.artifact("7", ["v1"])], "total": 1},
    )
    task = SyncTask.objects.get(pk=refresh_registry(registry.pk, wait=False))
    assert task.status == SyncTask.Status.SUCCEEDED, task.failure_reason
    assert tags(registry) == {"shop/api:v1": "sha256:" + "7" * 64}


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "PUSH_ARTIFACT"}',
        b'{"type": "PUSH_ARTIFACT", "event_data": []}',
        b'{"type": "PUSH_ARTIFACT", "event_data": {"repository": {"repo_full_name": "a b"}}}',
    ],
)
def test_an_swr_enterprise_payload_without_a_usable_repository_is_malformed(client, project, body):
    _registry, receiver, secret = connect(project, "swr", SWR, project_id=SWR_PROJECT)
    assert hook_post(client, receiver, body, secret).status_code == 400
    receiver.refresh_from_db()
    assert receiver.refused_malformed == 1 and not RefreshPending.objects.exists()
