"""Manage Task > Image Synchronization: the task list, a task's repositories, live polling
while active, and cancel / retry by role."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from imagesync.models import SyncTask, SyncTaskRepository
from tests.support.factories import make_repository

LIST = "/tasks/"
HX = {"HTTP_HX_REQUEST": "true"}
NOW = timezone.now()


@pytest.fixture
def finished_task(project, operator, registry):
    """A partially succeeded task: one repository finished, one failed, one skipped."""
    task = SyncTask.objects.create(
        project=project,
        status=SyncTask.Status.PARTIALLY_SUCCEEDED,
        created_by=operator,
        repositories_total=3,
        repositories_done=3,
        repositories_failed=1,
        images_added=7,
        images_updated=2,
        images_removed=1,
        failure_reason="1 repository failed: team/broken (auth_failed).",
        created_at=NOW - dt.timedelta(days=3),
        started_at=NOW - dt.timedelta(days=3),
        finished_at=NOW - dt.timedelta(days=3) + dt.timedelta(seconds=95),
    )
    good = make_repository(registry, "team/good")
    broken = make_repository(registry, "team/broken")
    gone = make_repository(registry, "team/gone")
    for repository, status, code, message, added in (
        (good, "finished", "", "", 7),
        (broken, "failed", "auth_failed", "Authentication failed: check the secret.", 0),
        (gone, "skipped", "cancelled", "Skipped: the task was cancelled.", 0),
    ):
        SyncTaskRepository.objects.create(
            task=task,
            repository=repository,
            registry_name=registry.name,
            repository_type="other",
            repository_path=repository.path,
            status=status,
            reason_code=code,
            reason_message=message,
            images_total=added,
            images_added=added,
        )
    return task


@pytest.fixture
def running_task(project):
    return SyncTask.objects.create(
        project=project,
        trigger=SyncTask.Trigger.SCHEDULED,
        status=SyncTask.Status.RUNNING,
        repositories_total=4,
        repositories_done=1,
        started_at=NOW,
    )


def detail(task) -> str:
    return f"/tasks/{task.pk}/"


# --- the list -------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["admin_user", "operator", "viewer"])
def test_members_see_every_task_with_its_facts(
    login, request, finished_task, running_task, persona
):
    response = login(request.getfixturevalue(persona)).get(LIST)
    body = response.content.decode()
    assert response.status_code == 200
    assert f'data-task="{finished_task.pk}"' in body and f'data-task="{running_task.pk}"' in body
    assert "Partially succeeded" in body and "Running" in body
    assert "Manual" in body and "Scheduled" in body
    assert "2 / 1 / 3" in body  # repositories succeeded / failed / total
    assert "7 / 2 / 1" in body  # images added / updated / removed
    assert "1m 35s" in body
    assert "oscar-operator" in body and "scheduler" in body
    assert "team/broken (auth_failed)" in body
    assert 'aria-valuenow="25"' in body  # 1 of 4 repositories done


def test_an_outsider_sees_no_task_of_the_project(login, outsider, finished_task):
    body = login(outsider).get(LIST).content.decode()
    assert f'data-task="{finished_task.pk}"' not in body
    assert "No synchronization tasks yet" in body


def test_status_is_shown_as_text_with_an_icon_not_colour_alone(login, viewer, finished_task):
    body = login(viewer).get(LIST).content.decode()
    assert (
        '<span class="badge status-partially_succeeded"><span class="badge-icon" aria-hidden="true">◐</span>Partially succeeded</span>'
        in body
    )


def test_the_list_polls_while_an_active_task_is_shown(login, viewer, running_task):
    response = login(viewer).get(LIST, **HX)
    body = response.content.decode()
    assert "<html" not in body
    assert 'hx-trigger="every 2s"' in body


def test_the_list_stops_polling_when_no_task_is_active(login, viewer, finished_task):
    body = login(viewer).get(LIST, **HX).content.decode()
    assert "every 2s" not in body
    assert f'data-task="{finished_task.pk}"' in body


@pytest.mark.parametrize(
    ("params", "expect_finished", "expect_running"),
    [
        ({"status": "running"}, False, True),
        ({"status": "partially_succeeded"}, True, False),
        ({"trigger": "scheduled"}, False, True),
        ({"trigger": "manual"}, True, False),
        ({"created_to": (NOW - dt.timedelta(days=2)).date().isoformat()}, True, False),
        ({"created_from": (NOW - dt.timedelta(days=1)).date().isoformat()}, False, True),
    ],
)
def test_the_list_filters_by_status_trigger_and_time(
    login, viewer, finished_task, running_task, params, expect_finished, expect_running
):
    body = login(viewer).get(LIST, params).content.decode()
    assert (f'data-task="{finished_task.pk}"' in body) is expect_finished
    assert (f'data-task="{running_task.pk}"' in body) is expect_running


@pytest.mark.parametrize(
    "params", [{"status": "exploded"}, {"created_from": "last week"}, {"page": "zz"}]
)
def test_invalid_task_filters_never_fail(login, viewer, finished_task, params):
    response = login(viewer).get(LIST, params)
    assert response.status_code == 200


def test_an_invalid_task_filter_shows_an_error(login, viewer, finished_task):
    body = login(viewer).get(LIST, {"created_from": "last week"}).content.decode()
    assert "Some filters are not valid" in body
    assert f'data-task="{finished_task.pk}"' not in body


# --- the detail -----------------------------------------------------------------------------


def test_the_detail_lists_each_repository_with_status_and_reason(login, viewer, finished_task):
    body = login(viewer).get(detail(finished_task)).content.decode()
    assert "team/good" in body and "team/broken" in body and "team/gone" in body
    assert "auth_failed" in body and "Authentication failed: check the secret." in body
    assert "Finished" in body and "Failed" in body and "Skipped" in body
    assert "7 added · 2 updated · 1 removed" in body


@pytest.mark.parametrize(
    ("status", "shown", "hidden"),
    [
        ("failed", "team/broken", "team/good"),
        ("finished", "team/good", "team/broken"),
        ("skipped", "team/gone", "team/good"),
    ],
)
def test_the_detail_filters_repositories_by_status(
    login, viewer, finished_task, status, shown, hidden
):
    response = login(viewer).get(detail(finished_task), {"status": status}, **HX)
    assert "<html" not in response.content.decode()
    paths = [result.repository_path for result in response.context["page"].object_list]
    assert shown in paths and hidden not in paths


def test_an_invalid_result_status_filter_shows_an_error(login, viewer, finished_task):
    response = login(viewer).get(detail(finished_task), {"status": "bogus"})
    assert response.status_code == 200
    assert "That status filter is not valid" in response.content.decode()


def test_the_detail_polls_only_while_the_task_is_active(login, viewer, finished_task, running_task):
    client = login(viewer)
    assert 'hx-trigger="every 2s"' in client.get(detail(running_task), **HX).content.decode()
    assert "every 2s" not in client.get(detail(finished_task), **HX).content.decode()


def test_an_outsider_gets_404_for_a_task_of_the_project(login, outsider, finished_task):
    assert login(outsider).get(detail(finished_task)).status_code == 404


def test_a_missing_task_is_404(login, viewer):
    assert login(viewer).get("/tasks/999999/").status_code == 404


def test_anonymous_users_are_sent_to_sign_in_from_a_task(client, finished_task):
    response = client.get(detail(finished_task))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- cancel and retry -----------------------------------------------------------------------


def test_viewers_see_no_cancel_or_retry_buttons(login, viewer, finished_task, running_task):
    client = login(viewer)
    assert "Cancel task" not in client.get(detail(running_task)).content.decode()
    assert "Retry failed repositories" not in client.get(detail(finished_task)).content.decode()


def test_operators_see_cancel_on_active_and_retry_on_failed_tasks(
    login, operator, finished_task, running_task
):
    client = login(operator)
    assert "Cancel task" in client.get(detail(running_task)).content.decode()
    body = client.get(detail(finished_task)).content.decode()
    assert "Retry failed repositories (1)" in body and "Cancel task" not in body


def test_an_operator_cancels_a_queued_task(login, operator, project, registry):
    task = SyncTask.objects.create(project=project, status=SyncTask.Status.QUEUED)
    response = login(operator).post(f"/tasks/{task.pk}/cancel/", follow=True)
    task.refresh_from_db()
    assert task.status == SyncTask.Status.CANCELLED
    assert "Cancellation requested" in response.content.decode()


def test_an_operator_asks_a_running_task_to_stop(login, operator, running_task):
    login(operator).post(f"/tasks/{running_task.pk}/cancel/")
    running_task.refresh_from_db()
    assert running_task.cancel_requested
    assert "Cancelling" in login(operator).get(detail(running_task)).content.decode()


def test_cancelling_a_finished_task_changes_nothing(login, operator, finished_task):
    response = login(operator).post(f"/tasks/{finished_task.pk}/cancel/", follow=True)
    finished_task.refresh_from_db()
    assert finished_task.status == SyncTask.Status.PARTIALLY_SUCCEEDED
    assert "nothing to cancel" in response.content.decode()


def test_a_viewer_cannot_cancel(login, viewer, running_task):
    assert login(viewer).post(f"/tasks/{running_task.pk}/cancel/").status_code == 403
    running_task.refresh_from_db()
    assert not running_task.cancel_requested


def test_an_outsider_cannot_cancel_and_learns_nothing(login, outsider, running_task):
    assert login(outsider).post(f"/tasks/{running_task.pk}/cancel/").status_code == 404
    running_task.refresh_from_db()
    assert not running_task.cancel_requested


def test_an_operator_retries_just_the_failed_repositories(login, operator, finished_task):
    response = login(operator).post(f"/tasks/{finished_task.pk}/retry/")
    retry = SyncTask.objects.exclude(pk=finished_task.pk).get()
    assert response.status_code == 302 and response["Location"] == detail(retry)
    assert retry.retry_of == finished_task
    assert retry.scope == "repositories"
    assert list(retry.scope_repositories.values_list("path", flat=True)) == ["team/broken"]


def test_a_retry_while_a_sync_is_active_is_refused_with_a_link(
    login, operator, finished_task, running_task
):
    response = login(operator).post(f"/tasks/{finished_task.pk}/retry/", follow=True)
    body = response.content.decode()
    assert "already in progress" in body and detail(running_task) in body
    assert SyncTask.objects.count() == 2


def test_a_viewer_cannot_retry(login, viewer, finished_task):
    assert login(viewer).post(f"/tasks/{finished_task.pk}/retry/").status_code == 403
    assert SyncTask.objects.count() == 1


def test_an_outsider_cannot_retry(login, outsider, finished_task):
    assert login(outsider).post(f"/tasks/{finished_task.pk}/retry/").status_code == 404
    assert SyncTask.objects.count() == 1


def test_cancel_and_retry_refuse_get(login, operator, finished_task):
    assert login(operator).get(f"/tasks/{finished_task.pk}/retry/").status_code == 405


@pytest.mark.parametrize("url", ["/tasks/", "/registries/", "/images/synchronize/"])
def test_a_user_without_a_project_is_told_to_ask_an_administrator_everywhere(
    client, django_user_model, url
):
    client.force_login(django_user_model.objects.create_user(username="nobody", password="x"))
    response = client.get(url)
    assert response.status_code == 200
    assert "Ask an administrator to add you to a project" in response.content.decode()


def test_a_user_without_a_project_cannot_start_a_sync(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="nobody", password="x"))
    assert client.post("/images/synchronize/", {"sync_type": "all"}).status_code == 403
    assert not SyncTask.objects.exists()


# --- one FilterSet and one table for the page and the API -----------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"status": "running"},
        {"status": ["running", "partially_succeeded"]},
        {"trigger": "manual"},
        {"active": "true"},
        {"created_from": (NOW - dt.timedelta(days=1)).date().isoformat()},  # the console's name
        {"created_after": (NOW - dt.timedelta(days=1)).isoformat()},  # an instant
        {"created_to": (NOW - dt.timedelta(days=3)).date().isoformat()},  # the whole day
        {"created_before": NOW.isoformat()},
        {"sort": "created"},
        {"ordering": "-status"},
    ],
    ids=lambda params: "&".join(params) or "no-parameters",
)
def test_the_task_page_and_the_api_list_the_same_tasks(
    login, viewer, project, finished_task, running_task, params
):
    from tests.support.api import api_as, api_url

    page = login(viewer).get(LIST, params)
    assert page.status_code == 200 and not page.context["filters_invalid"]
    on_page = [task.pk for task in page.context["page"].object_list]
    answer = api_as(viewer).get(api_url("synctask-list", project_id=project.pk), params)
    assert answer.status_code == 200, answer.content[:300]
    assert on_page == [task["id"] for task in answer.json()["results"]]
    assert on_page


def test_the_task_list_sorts_by_a_header(login, viewer, finished_task, running_task):
    client = login(viewer)
    body = client.get(LIST, {"sort": "started"}).content.decode()
    assert body.index(f'data-task="{finished_task.pk}"') < body.index(
        f'data-task="{running_task.pk}"'
    )
    assert 'aria-sort="ascending"><a href="/tasks/?sort=-started">Started / finished' in body
    assert 'aria-sort="none"><a href="/tasks/?sort=status">Status' in body
    body = client.get(LIST, {"sort": "-started"}).content.decode()
    assert body.index(f'data-task="{running_task.pk}"') < body.index(
        f'data-task="{finished_task.pk}"'
    )


def test_an_unknown_task_sort_falls_back_to_the_newest_first(login, viewer, finished_task):
    response = login(viewer).get(LIST, {"sort": "password"})
    assert response.status_code == 200 and not response.context["filters_invalid"]
    assert f'data-task="{finished_task.pk}"' in response.content.decode()
