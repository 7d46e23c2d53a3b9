"""Sync tasks over the API: create with the three scopes, refuse a second active sync with 409
naming the active task, cancel, retry the failed repositories, read per-repository results —
and a sync started through the API is the very task Manage Task shows, and runs to the same
inventory (end to end against a real Distribution registry)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

import imagesync.tasks
from imagesync.models import (
    AuditEvent,
    Image,
    Registry,
    Repository,
    SyncTask,
    SyncTaskRepository,
)
from imagesync.tasks import run_sync_task
from tests.support import registry_seed
from tests.support.api import FAST_HASHERS, api_as, api_url, assert_error, reset_rate_limits


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db, settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    reset_rate_limits()


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    """Task ids handed to the queue (instead of django-q2) once the request's transaction
    commits."""
    ids: list[int] = []
    monkeypatch.setattr(imagesync.tasks, "enqueue_sync_task", ids.append)
    return ids


@pytest.fixture
def repositories(registry):
    def make(path, type_="other"):
        namespace, _, name = path.partition("/")
        return Repository.objects.create(
            registry=registry, type=type_, path=path, namespace=namespace, name=name
        )

    return [make("team/api"), make("team/web"), make("ops/tool")]


def _create(client, project, body):
    return client.post(api_url("synctask-list", project_id=project.pk), body, format="json")


# --- creating -------------------------------------------------------------------------------


def test_an_operator_starts_a_sync_of_all_repositories(project, registry, operator):
    response = _create(api_as(operator), project, {"scope": "all"})
    assert response.status_code == 201, response.content
    body = response.json()
    task = SyncTask.objects.get(pk=body["id"])
    assert (task.project, task.scope, task.trigger, task.created_by) == (
        project,
        "all",
        "manual",
        operator,
    )
    assert body["status"] == "queued" and body["is_active"] is True
    assert body["created_by"] == operator.username
    assert AuditEvent.objects.filter(action="sync.start", actor=operator).exists()


def test_a_sync_of_specified_types_records_the_types(project, registry, operator):
    response = _create(api_as(operator), project, {"scope": "types", "types": ["harbor", "other"]})
    assert response.status_code == 201, response.content
    assert response.json()["scope_types"] == ["harbor", "other"]


def test_a_sync_of_specified_repositories_records_them(project, repositories, operator):
    chosen = [repositories[0].pk, repositories[2].pk]
    response = _create(api_as(operator), project, {"scope": "repositories", "repositories": chosen})
    assert response.status_code == 201, response.content
    assert sorted(response.json()["scope_repositories"]) == sorted(chosen)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"scope": "types"}, "types"),
        ({"scope": "types", "types": ["docker"]}, "types"),
        ({"scope": "repositories", "repositories": []}, "repositories"),
        ({"scope": "everything"}, "scope"),
        ({"scope": "repositories", "repositories": ["abc"]}, "repositories"),
    ],
)
def test_an_invalid_choice_is_refused_like_the_panel_refuses_it(
    project, registry, operator, body, field
):
    error = assert_error(_create(api_as(operator), project, body), 400, "validation_error")
    assert field in error["details"]
    assert not SyncTask.objects.exists()


def test_another_projects_repositories_cannot_be_synchronized(
    project, other_project, registry, operator
):
    theirs = Registry.objects.create(
        project=other_project, kind="other", name="theirs", endpoint="https://t.example.com"
    )
    foreign = Repository.objects.create(
        registry=theirs, type="other", path="x/y", namespace="x", name="y"
    )
    response = _create(
        api_as(operator), project, {"scope": "repositories", "repositories": [foreign.pk]}
    )
    error = assert_error(response, 400, "validation_error")
    assert "do not belong to this project" in error["details"]["non_field_errors"][0]
    assert not SyncTask.objects.exists()


def test_a_project_without_registries_cannot_be_synchronized(project, operator):
    response = _create(api_as(operator), project, {"scope": "all"})
    error = assert_error(response, 400, "validation_error")
    assert "registry" in error["details"]["non_field_errors"][0]


def test_a_second_sync_while_one_is_active_is_a_conflict_naming_the_active_task(
    project, registry, operator
):
    client = api_as(operator)
    first = _create(client, project, {"scope": "all"}).json()
    response = _create(client, project, {"scope": "types", "types": ["other"]})
    error = assert_error(response, 409, "conflict")
    assert error["details"] == {"active_task_id": first["id"]}
    assert SyncTask.objects.count() == 1


# --- reading --------------------------------------------------------------------------------


@pytest.fixture
def finished_task(project, registry, repositories):
    """A partially succeeded task: one repository finished, two failed."""
    task = SyncTask.objects.create(
        project=project,
        status=SyncTask.Status.PARTIALLY_SUCCEEDED,
        repositories_total=3,
        repositories_done=3,
        repositories_failed=2,
        images_added=4,
    )
    for repository, status, code in [
        (repositories[0], "finished", ""),
        (repositories[1], "failed", "unreachable"),
        (repositories[2], "failed", "auth_failed"),
    ]:
        SyncTaskRepository.objects.create(
            task=task,
            repository=repository,
            registry_name=registry.name,
            repository_type="other",
            repository_path=repository.path,
            status=status,
            reason_code=code,
            reason_message=f"{code} happened" if code else "",
            images_total=4 if status == "finished" else 0,
            images_added=4 if status == "finished" else 0,
        )
    return task


def test_a_task_reads_with_its_counters_and_result_counts(project, finished_task, viewer):
    body = (
        api_as(viewer)
        .get(api_url("synctask-detail", project_id=project.pk, pk=finished_task.pk))
        .json()
    )
    assert body["status"] == "partially_succeeded" and body["progress_percent"] == 100
    assert (body["repositories_succeeded"], body["repositories_failed"]) == (1, 2)
    assert body["result_counts"]["failed"] == 2 and body["result_counts"]["finished"] == 1


def test_a_tasks_results_list_each_repository_and_filter_by_status(project, finished_task, viewer):
    client = api_as(viewer)
    url = api_url("synctask-results", project_id=project.pk, task_id=finished_task.pk)
    everything = client.get(url).json()
    assert everything["count"] == 3
    failed = client.get(url, {"status": "failed"}).json()["results"]
    assert {(row["repository_path"], row["reason_code"]) for row in failed} == {
        ("team/web", "unreachable"),
        ("ops/tool", "auth_failed"),
    }


def test_tasks_filter_by_status_trigger_and_time(project, finished_task, registry, viewer):
    scheduled = SyncTask.objects.create(
        project=project, trigger="scheduled", status=SyncTask.Status.FAILED
    )
    client = api_as(viewer)
    url = api_url("synctask-list", project_id=project.pk)

    def ids(params):
        return [row["id"] for row in client.get(url, params).json()["results"]]

    assert ids({"trigger": "scheduled"}) == [scheduled.pk]
    assert ids({"status": ["failed", "partially_succeeded"], "ordering": "id"}) == [
        finished_task.pk,
        scheduled.pk,
    ]
    assert ids({"active": "true"}) == []
    assert ids({"created_after": "2999-01-01T00:00:00Z"}) == []


# --- cancel and retry -----------------------------------------------------------------------


def test_an_operator_cancels_a_queued_task(project, registry, operator):
    client = api_as(operator)
    task = _create(client, project, {"scope": "all"}).json()
    response = client.post(api_url("synctask-cancel", project_id=project.pk, pk=task["id"]))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = client.post(api_url("synctask-cancel", project_id=project.pk, pk=task["id"]))
    assert_error(again, 409, "conflict")


def test_cancelling_a_running_task_asks_it_to_stop(project, registry, operator):
    task = SyncTask.objects.create(project=project, status=SyncTask.Status.RUNNING)
    response = api_as(operator).post(api_url("synctask-cancel", project_id=project.pk, pk=task.pk))
    assert response.json()["cancel_requested"] is True
    task.refresh_from_db()
    assert task.cancel_requested and task.status == "running"


def test_retry_starts_a_new_task_with_just_the_failed_repositories(
    project, finished_task, repositories, operator
):
    response = api_as(operator).post(
        api_url("synctask-retry", project_id=project.pk, pk=finished_task.pk)
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["retry_of"] == finished_task.pk and body["scope"] == "repositories"
    assert sorted(body["scope_repositories"]) == sorted([repositories[1].pk, repositories[2].pk])


def test_retry_while_a_sync_is_active_is_a_conflict(project, finished_task, operator):
    active = SyncTask.objects.create(project=project, status=SyncTask.Status.RUNNING)
    response = api_as(operator).post(
        api_url("synctask-retry", project_id=project.pk, pk=finished_task.pk)
    )
    assert assert_error(response, 409, "conflict")["details"] == {"active_task_id": active.pk}


def test_retry_of_a_task_without_failures_is_a_conflict(project, registry, operator):
    task = SyncTask.objects.create(project=project, status=SyncTask.Status.SUCCEEDED)
    response = api_as(operator).post(api_url("synctask-retry", project_id=project.pk, pk=task.pk))
    error = assert_error(response, 409, "conflict")
    assert "no failed repositories" in error["message"]


# --- end to end: the API's task is the console's task and fills the same inventory -----------


@pytest.mark.registry
def test_a_sync_started_through_the_api_is_the_console_task_and_fills_the_inventory(
    transactional_db, project, admin_user, fresh_registry, enqueued, settings
):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    pushed = {
        ("team/api", "1.0"): registry_seed.push_image(fresh_registry, "team/api", "1.0"),
        ("team/api", "1.1"): registry_seed.push_image(
            fresh_registry, "team/api", "1.1", layer_sizes=(2048,)
        ),
        ("team/web", "2.0"): registry_seed.push_index(fresh_registry, "team/web", "2.0"),
    }
    client = api_as(admin_user)

    # Connect the registry and test the connection, as an admin would on the page.
    created = client.post(
        api_url("registry-list", project_id=project.pk),
        {
            "name": "distribution",
            "kind": "other",
            "endpoint": fresh_registry.url,
            "username": fresh_registry.username,
            "secret": fresh_registry.password,
            "allow_insecure_http": True,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    registry_id = created.json()["id"]
    tested = client.post(api_url("registry-test", project_id=project.pk, pk=registry_id))
    assert tested.json()["ok"] is True, tested.json()

    # Synchronize all repositories through the API.
    started = client.post(
        api_url("synctask-list", project_id=project.pk), {"scope": "all"}, format="json"
    )
    assert started.status_code == 201, started.content
    task_id = started.json()["id"]
    assert enqueued == [task_id]

    # Manage Task in the console shows that very task.
    console = Client()
    console.force_login(admin_user)
    page = console.get(reverse("imagesync:task-list"))
    assert page.status_code == 200
    assert reverse("imagesync:task-detail", args=[task_id]) in page.content.decode()

    # The worker runs it (here, in this process) to the end.
    run_sync_task(task_id)
    task = client.get(api_url("synctask-detail", project_id=project.pk, pk=task_id)).json()
    assert task["status"] == "succeeded", task
    assert task["images_added"] == 3 and task["result_counts"]["finished"] == 2

    # The API's image list is the inventory: exactly what was pushed.
    listed = client.get(
        api_url("image-list", project_id=project.pk), {"page_size": 200, "ordering": "path,tag"}
    ).json()
    assert listed["count"] == 3
    from_api = {(row["repository_path"], row["tag"]): row["digest"] for row in listed["results"]}
    assert from_api == pushed
    stored = {
        (image.repository.path, image.tag): image.digest
        for image in Image.objects.filter(project=project).select_related("repository")
    }
    assert stored == from_api
    web = next(row for row in listed["results"] if row["repository_path"] == "team/web")
    assert web["multi_arch"] is True and set(web["platforms"]) >= {"linux/amd64", "linux/arm64"}
    # The console's Image View lists the same images.
    image_view = console.get(reverse("imagesync:image-list"), {"per_page": 100}).content.decode()
    for _path, tag in pushed:
        assert tag in image_view
