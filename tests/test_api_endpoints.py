"""Every API endpoint per persona: admin, operator, viewer, outsider (an admin of another
project), anonymous, and a revoked token. Roles work exactly as on the console pages: viewers
read, operators synchronize, cancel and retry, admins also manage registries; an outsider gets
404 for the project and everything in it."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import NamedTuple

import pytest

from imagesync.models import (
    Image,
    Registry,
    SyncTask,
)
from tests.support.api import (
    FAST_HASHERS,
    api_as,
    api_url,
    assert_error,
    client_with_token,
    reset_rate_limits,
    token_for,
)
from tests.support.factories import make_image, make_partial_task, make_repository
from tests.support.fakes import FakeClient

ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db, settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS  # persona fixtures hash a password each
    reset_rate_limits()


@pytest.fixture
def world(project, other_project, registry, monkeypatch):
    """A project with a registry, a repository, an image and a finished task whose one
    repository failed; and another project with its own registry and image."""
    monkeypatch.setattr(Registry, "build_client", lambda self: FakeClient())
    repository = make_repository(registry, "team/api")
    image = make_image(repository, "1.0", digest="sha256:" + "a" * 64, size=1000)
    task = make_partial_task(repository, "The registry did not answer.")
    other_registry = Registry.objects.create(
        project=other_project, kind="other", name="theirs", endpoint="https://theirs.example.com"
    )
    other_repository = make_repository(other_registry, "x/y")
    other_image = Image.objects.create(
        project=other_project, repository=other_repository, tag="t", digest="sha256:" + "b" * 64
    )
    return SimpleNamespace(
        project=project,
        registry=registry,
        repository=repository,
        image=image,
        task=task,
        other_registry=other_registry,
        other_repository=other_repository,
        other_image=other_image,
    )


def _active_task(world) -> SyncTask:
    return SyncTask.objects.create(project=world.project, status=SyncTask.Status.RUNNING)


NEW_REGISTRY = {
    "name": "harbor-prod",
    "kind": "harbor",
    "endpoint": "https://harbor.example.com",
    "username": "robot$ci",
    "secret": "n3w-s3cret",
}


class Endpoint(NamedTuple):
    """One API operation and what each persona should get from it."""

    name: str
    method: str
    url_name: str
    kwargs: Callable  # world -> the URL's keyword arguments
    body: dict | None = None
    needed: str = "viewer"  # the least role that may use it
    success: int = 200
    setup: Callable | None = None  # world -> an extra row the URL names (world.active)


def in_project(**objects: str) -> Callable:
    """URL kwargs: the world's project id plus, e.g. pk="image", the pk of world.image."""
    return lambda w: (
        {"project_id": w.project.pk} | {key: getattr(w, name).pk for key, name in objects.items()}
    )


ENDPOINTS = [
    Endpoint("project detail", "get", "project-detail", lambda w: {"pk": w.project.pk}),
    Endpoint("image list", "get", "image-list", in_project()),
    Endpoint("image type counts", "get", "image-type-counts", in_project()),
    Endpoint("image detail", "get", "image-detail", in_project(pk="image")),
    Endpoint("repository list", "get", "repository-list", in_project()),
    Endpoint("repository detail", "get", "repository-detail", in_project(pk="repository")),
    Endpoint("registry list", "get", "registry-list", in_project()),
    Endpoint("registry detail", "get", "registry-detail", in_project(pk="registry")),
    Endpoint("registry create", "post", "registry-list", in_project(), NEW_REGISTRY, "admin", 201),
    Endpoint(
        "registry update",
        "put",
        "registry-detail",
        in_project(pk="registry"),
        {"name": "renamed", "kind": "other", "endpoint": "https://registry.example.com"},
        "admin",
    ),
    Endpoint(
        "registry partial update",
        "patch",
        "registry-detail",
        in_project(pk="registry"),
        {"username": "robot2"},
        "admin",
    ),
    Endpoint(
        "registry delete",
        "delete",
        "registry-detail",
        in_project(pk="registry"),
        None,
        "admin",
        204,
    ),
    Endpoint("registry test", "post", "registry-test", in_project(pk="registry"), None, "admin"),
    Endpoint("sync task list", "get", "synctask-list", in_project()),
    Endpoint("sync task detail", "get", "synctask-detail", in_project(pk="task")),
    Endpoint("sync task results", "get", "synctask-results", in_project(task_id="task")),
    Endpoint(
        "sync task create", "post", "synctask-list", in_project(), {"scope": "all"}, "operator", 201
    ),
    Endpoint(
        "sync task cancel",
        "post",
        "synctask-cancel",
        in_project(pk="active"),
        None,
        "operator",
        setup=_active_task,
    ),
    Endpoint(
        "sync task retry", "post", "synctask-retry", in_project(pk="task"), None, "operator", 201
    ),
]
PERSONAS = ["admin_user", "operator", "viewer", "outsider", "anonymous", "revoked"]
ROLES = {"admin_user": "admin", "operator": "operator", "viewer": "viewer"}


def _client(request, persona: str):
    if persona == "anonymous":
        return api_as(None)
    if persona == "revoked":
        from apitokens.models import ApiToken

        user = request.getfixturevalue("admin_user")
        raw = token_for(user)
        ApiToken.objects.get(user=user).revoke()
        return client_with_token(raw)
    return api_as(request.getfixturevalue(persona))


def _expected(persona: str, needed: str, success: int) -> tuple[int, str | None]:
    if persona == "anonymous":
        return 401, "not_authenticated"
    if persona == "revoked":
        return 401, "authentication_failed"
    if persona == "outsider":
        return 404, "not_found"
    if ROLE_RANK[ROLES[persona]] < ROLE_RANK[needed]:
        return 403, "permission_denied"
    return success, None


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(
    "name,method,url_name,kwargs,body,needed,success,setup",
    ENDPOINTS,
    ids=[endpoint.name for endpoint in ENDPOINTS],
)
def test_each_endpoint_answers_each_persona_as_the_console_would(
    request, world, persona, name, method, url_name, kwargs, body, needed, success, setup
):
    world.active = setup(world) if setup else None
    client = _client(request, persona)
    response = getattr(client, method)(api_url(url_name, **kwargs(world)), body, format="json")
    status, code = _expected(persona, needed, success)
    if code is not None:
        assert_error(response, status, code)
    else:
        assert response.status_code == status, response.content[:500]


@pytest.mark.parametrize("persona", ["admin_user", "operator", "viewer", "outsider"])
def test_the_project_list_shows_only_the_users_projects_with_their_role(
    request, world, persona, other_project
):
    response = api_as(request.getfixturevalue(persona)).get(api_url("project-list"))
    assert response.status_code == 200
    shown = {row["name"]: row["role"] for row in response.json()["results"]}
    if persona == "outsider":
        assert shown == {other_project.name: "admin"}
    else:
        assert shown == {world.project.name: ROLES[persona]}


def test_a_superuser_sees_every_project_as_admin(world, superuser, other_project):
    response = api_as(superuser).get(api_url("project-list"))
    assert {row["name"]: row["role"] for row in response.json()["results"]} == {
        world.project.name: "admin",
        other_project.name: "admin",
    }


@pytest.mark.parametrize(
    "url_name,key",
    [
        ("image-detail", "other_image"),
        ("repository-detail", "other_repository"),
        ("registry-detail", "other_registry"),
    ],
)
def test_another_projects_object_is_not_found_under_ones_own_project(
    world, admin_user, url_name, key
):
    """Guessing ids across projects leaks nothing: the object is simply not there."""
    url = api_url(url_name, project_id=world.project.pk, pk=getattr(world, key).pk)
    assert_error(api_as(admin_user).get(url), 404, "not_found")


def test_lists_never_include_another_projects_rows(world, admin_user):
    client = api_as(admin_user)
    images = client.get(api_url("image-list", project_id=world.project.pk)).json()
    repositories = client.get(api_url("repository-list", project_id=world.project.pk)).json()
    registries = client.get(api_url("registry-list", project_id=world.project.pk)).json()
    assert [row["id"] for row in images["results"]] == [world.image.pk]
    assert [row["id"] for row in repositories["results"]] == [world.repository.pk]
    assert [row["id"] for row in registries["results"]] == [world.registry.pk]


def test_an_outsider_cannot_start_a_sync_in_another_project(world, outsider):
    response = api_as(outsider).post(
        api_url("synctask-list", project_id=world.project.pk), {"scope": "all"}, format="json"
    )
    assert_error(response, 404, "not_found")
    assert not SyncTask.objects.filter(project=world.project).exclude(pk=world.task.pk).exists()


def test_a_viewers_refused_write_changes_nothing(world, viewer):
    client = api_as(viewer)
    url = api_url("registry-detail", project_id=world.project.pk, pk=world.registry.pk)
    assert_error(client.delete(url), 403, "permission_denied")
    assert_error(client.patch(url, {"name": "x"}, format="json"), 403, "permission_denied")
    world.registry.refresh_from_db()
    assert world.registry.name == "local"


@pytest.mark.parametrize("persona", ["admin_user", "viewer", "outsider"])
def test_tokens_are_personal(request, persona, admin_user):
    """Each user lists and revokes only their own tokens; another user's token is a 404."""
    from apitokens.models import ApiToken

    token_for(admin_user, "admin's pipeline")
    mine = api_as(request.getfixturevalue(persona))
    listed = mine.get(api_url("token-list")).json()["results"]
    own = ApiToken.objects.filter(user=request.getfixturevalue(persona))
    assert {row["id"] for row in listed} == set(own.values_list("pk", flat=True))
    others = ApiToken.objects.exclude(user=request.getfixturevalue(persona)).first()
    if others is not None:
        assert_error(mine.delete(api_url("token-detail", pk=others.pk)), 404, "not_found")
        others.refresh_from_db()
        assert others.is_active


def test_token_endpoints_refuse_anonymous_and_revoked_tokens(admin_user):
    from apitokens.models import ApiToken

    assert_error(api_as(None).get(api_url("token-list")), 401, "not_authenticated")
    raw = token_for(admin_user)
    ApiToken.objects.get(user=admin_user).revoke()
    revoked = client_with_token(raw)
    assert_error(revoked.get(api_url("token-list")), 401, "authentication_failed")
    assert_error(
        revoked.post(api_url("token-list"), {"name": "sneaky"}, format="json"),
        401,
        "authentication_failed",
    )
