"""The console in a real browser: Playwright drives the Debian Chromium against live_server,
sync tasks run for real (django-q2 in sync mode) against a real Distribution registry.

Every page is checked against the Content Security Policy (a violation fails the test), and
the flow takes the screenshots the README shows; they replace docs/screenshots/ only with
UPDATE_SCREENSHOTS=1 (see tests/support/browser.py), so a plain run leaves the checkout clean.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from imagesync.models import Image, ProjectMembership, Registry, SyncTask
from tests.support.browser import FINAL_STATUS
from tests.support.factories import PASSWORD
from tests.support.registry_seed import push_image

pytestmark = [
    pytest.mark.browser,
    pytest.mark.registry,
    pytest.mark.usefixtures("tasks_run_inline"),
]


def connect_registry(ui, registry) -> None:
    """Connect the local Distribution registry through the form (plain HTTP on loopback)."""
    page = ui.page
    ui.goto("/registries/")
    page.get_by_role("link", name="Connect a registry").first.click()
    page.get_by_label(re.compile(r"^Name")).fill("local-distribution")
    page.get_by_label(re.compile(r"^Kind")).select_option("other")
    page.get_by_label(re.compile(r"^Endpoint URL")).fill(registry.url)
    page.get_by_label("Username").fill(registry.username)
    page.get_by_label("Password, token or secret key").fill(registry.password)
    page.get_by_label("Allow insecure HTTP").check()
    page.get_by_role("button", name="Connect").click()
    page.wait_for_url("**/registries/")


def saved_registry(project, registry) -> Registry:
    """The local Distribution registry, connected without going through the form."""
    connection = Registry(
        project=project,
        kind="other",
        name="local-distribution",
        endpoint=registry.url,
        username=registry.username,
        allow_insecure_http=True,
    )
    connection.set_secret(registry.password)
    connection.save()
    return connection


def image_rows(page) -> set[tuple[str, str]]:
    """(image name, tag) of every row of the Image View table."""
    rows = page.locator("#image-table tbody tr")
    found = set()
    for index in range(rows.count()):
        cells = rows.nth(index).locator("td")
        tag = cells.nth(1).locator("code").inner_text().strip()
        found.add((cells.nth(0).inner_text().strip(), tag))
    return found


def open_panel(ui):
    page = ui.page
    page.locator("#open-sync-panel").click()
    panel = page.get_by_role("dialog", name="Synchronize Images")
    panel.wait_for()
    return panel


def wait_for_task_end(ui, task_id: int) -> str:
    """Open Manage Task and wait until the task's row shows a final status."""
    page = ui.page
    ui.goto("/tasks/")
    row = page.locator(f'tr[data-task="{task_id}"]')
    expect(row).to_have_attribute("data-status", FINAL_STATUS, timeout=30_000)
    return row.get_attribute("data-status")


def test_an_admin_connects_a_registry_synchronizes_and_sees_exactly_the_pushed_images(
    ui, admin, fresh_registry, pushed, project
):
    page = ui.page
    ui.sign_in("alice-admin", PASSWORD)

    # Empty Image View tells what to do next.
    expect(page.get_by_role("heading", name="No registry connected yet")).to_be_visible()

    connect_registry(ui, fresh_registry)
    row = page.locator('tr[data-registry="local-distribution"]')
    assert "Not tested" in row.inner_text()
    row.get_by_role("button", name="Test connection").click()
    page.locator(".conn-status[role=status]").wait_for()
    assert "Connected" in row.inner_text()
    registry = Registry.objects.get(name="local-distribution")
    assert registry.connection_status == "success"
    ui.screenshot("registry-connections.png")
    assert fresh_registry.password not in page.content()

    page.get_by_role("link", name="Image View").first.click()
    expect(page.get_by_role("heading", name="No images synchronized yet")).to_be_visible()

    panel = open_panel(ui)
    assert panel.get_by_label("All image repositories").is_checked()
    panel.get_by_role("button", name="OK").click()
    panel.wait_for(state="detached")
    message = page.locator("#messages .alert-success")
    assert "Synchronization started" in message.inner_text()

    task = SyncTask.objects.get(project=project)
    message.get_by_role("link").click()
    page.wait_for_url(f"**/tasks/{task.pk}/")
    assert wait_for_task_end(ui, task.pk) == "succeeded"
    row = page.locator(f'tr[data-task="{task.pk}"]')
    assert "Succeeded" in row.inner_text() and "3 / 0 / 3" in row.inner_text()
    assert "alice-admin" in row.inner_text()
    ui.screenshot("manage-task.png")

    row.get_by_role("link", name=f"#{task.pk}").click()
    page.wait_for_url(f"**/tasks/{task.pk}/")
    results = page.locator("#task-results tbody tr")
    assert results.count() == 3
    assert {results.nth(i).get_attribute("data-status") for i in range(3)} == {"finished"}
    assert "every 2s" not in (page.locator("#task-detail").get_attribute("hx-trigger") or "")
    ui.screenshot("task-detail.png")

    ui.goto("/images/")
    assert image_rows(page) == pushed
    multi_arch = page.locator("#image-table tbody tr", has_text="multi-arch")
    assert multi_arch.count() == 1 and "linux/amd64, linux/arm64" in multi_arch.inner_text()
    assert multi_arch.locator("td").first.inner_text() == "web"
    assert Image.objects.filter(project=project).count() == 4
    ui.screenshot("image-view.png")

    # Filters live in the URL and work through htmx.
    page.get_by_label("Search").fill("proxy")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r".*q=proxy.*"))
    expect(page.locator("#image-table tbody tr")).to_have_count(1)
    assert image_rows(page) == {("proxy", "2.4")}

    # Sorting through a header link keeps the search; a later search keeps the sort.
    page.get_by_label("Search").fill("team")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#image-table tbody tr")).to_have_count(3)
    page.get_by_role("link", name=re.compile(r"^Size")).click()
    page.wait_for_url(re.compile(r".*q=team.*sort=size.*"))
    expect(page.locator("#image-table th[aria-sort=ascending]")).to_contain_text("Size")
    page.get_by_label("Search").fill("api")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r".*q=api.*sort=size.*"))
    expect(page.locator("#image-table tbody tr")).to_have_count(2)


def test_the_specified_types_flow_refuses_an_empty_choice_then_syncs_those_types(
    ui, admin, fresh_registry, pushed, project
):
    page = ui.page
    saved_registry(project, fresh_registry)
    ui.sign_in("alice-admin", PASSWORD)

    panel = open_panel(ui)
    panel.get_by_label("Specified types of image repositories").check()
    panel.get_by_role("button", name="OK").click()
    error = panel.page.locator("#sync-panel .field-error", has_text="Select at least one")
    error.wait_for()
    assert not SyncTask.objects.exists()

    panel = page.get_by_role("dialog", name="Synchronize Images")
    assert panel.locator("details.dropdown[open]").count() == 1  # re-rendered open, with the error
    panel.get_by_label("Other (OCI / Docker v2) image").check()
    panel.get_by_role("button", name="OK").click()
    panel.wait_for(state="detached")

    task = SyncTask.objects.get(project=project)
    assert task.scope == "types" and task.scope_types == ["other"]
    assert wait_for_task_end(ui, task.pk) == "succeeded"
    ui.goto("/images/")
    assert image_rows(page) == pushed


def test_the_specified_repositories_flow_syncs_only_the_chosen_repository(
    ui, admin, fresh_registry, pushed, project
):
    page = ui.page
    saved_registry(project, fresh_registry)
    ui.sign_in("alice-admin", PASSWORD)

    # A first full sync makes the repositories known, so they can be picked.
    panel = open_panel(ui)
    panel.get_by_role("button", name="OK").click()
    panel.wait_for(state="detached")
    first = SyncTask.objects.get(project=project)
    assert wait_for_task_end(ui, first.pk) == "succeeded"

    # New tags in two repositories; only one repository is chosen.
    push_image(fresh_registry, "team/api", "2.0")
    push_image(fresh_registry, "infra/proxy", "2.5")

    ui.goto("/images/")
    panel = open_panel(ui)
    panel.get_by_label("Specified image repositories").check()
    assert panel.locator("#repo-picker input[data-repo-checkbox]").count() == 3
    panel.get_by_label("team/api").check()
    assert panel.locator("[data-selected-count]").inner_text() == "1"
    ui.screenshot("sync-panel.png")
    # Filtering the picker keeps the selection.
    panel.get_by_label("Name", exact=True).fill("proxy")
    panel.get_by_role("button", name="Filter").click()
    expect(panel.locator("#repo-picker input[data-repo-checkbox]")).to_have_count(1)
    expect(panel.get_by_label("infra/proxy")).to_be_visible()
    assert panel.locator("[data-selected-count]").inner_text() == "1"
    panel.get_by_role("button", name="OK").click()
    panel.wait_for(state="detached")

    second = SyncTask.objects.exclude(pk=first.pk).get()
    assert second.scope == "repositories"
    assert wait_for_task_end(ui, second.pk) == "succeeded"
    ui.goto(f"/tasks/{second.pk}/")
    results = page.locator("#task-results tbody tr")
    assert results.count() == 1 and "team/api" in results.inner_text()

    ui.goto("/images/")
    assert image_rows(page) == pushed | {("api", "2.0")}


def test_manage_task_updates_an_active_task_live_and_then_stops_polling(ui, admin, project):
    page = ui.page
    task = SyncTask.objects.create(
        project=project, status=SyncTask.Status.RUNNING, repositories_total=4, repositories_done=1
    )
    ui.sign_in("alice-admin", PASSWORD)
    ui.goto("/tasks/")
    row = page.locator(f'tr[data-task="{task.pk}"]')
    assert "Running" in row.inner_text() and "25%" in row.inner_text()
    assert page.locator("#task-table[data-polling]").count() == 1

    SyncTask.objects.filter(pk=task.pk).update(repositories_done=3)
    expect(row).to_contain_text("75%", timeout=6_000)
    SyncTask.objects.filter(pk=task.pk).update(
        status=SyncTask.Status.SUCCEEDED, repositories_done=4
    )
    expect(row).to_have_attribute("data-status", "succeeded", timeout=6_000)
    assert "Succeeded" in row.inner_text()
    expect(page.locator("#task-table[data-polling]")).to_have_count(0)


def test_the_panel_closes_with_escape_and_returns_focus(ui, admin, fresh_registry, project):
    page = ui.page
    Registry.objects.create(
        project=project,
        kind="other",
        name="r",
        endpoint=fresh_registry.url,
        allow_insecure_http=True,
    )
    ui.sign_in("alice-admin", PASSWORD)
    panel = open_panel(ui)
    assert page.evaluate("document.activeElement.closest('#sync-panel') !== null")
    page.keyboard.press("Escape")
    panel.wait_for(state="detached")
    assert page.evaluate("document.activeElement.id") == "open-sync-panel"


def test_a_viewer_sees_no_synchronize_button(
    ui, transactional_db, django_user_model, project, fresh_registry
):
    page = ui.page
    user = django_user_model.objects.create_user(username="vera-viewer", password=PASSWORD)
    ProjectMembership.objects.create(user=user, project=project, role="viewer")
    Registry.objects.create(
        project=project,
        kind="other",
        name="r",
        endpoint=fresh_registry.url,
        allow_insecure_http=True,
    )
    ui.sign_in("vera-viewer", PASSWORD)
    expect(page.get_by_role("link", name="Manage Task").first).to_be_visible()
    assert page.get_by_role("link", name="Synchronize Images").count() == 0
    assert page.get_by_role("button", name="Synchronize Images").count() == 0
    ui.goto("/registries/")
    assert page.get_by_role("button", name="Test connection").count() == 0


def test_the_project_selector_switches_the_scope_of_every_page(ui, admin, project, other_project):
    page = ui.page
    ProjectMembership.objects.create(user=admin, project=other_project, role="viewer")
    Registry.objects.create(
        project=project, kind="other", name="prod-registry", endpoint="https://r.example.com"
    )
    ui.sign_in("alice-admin", PASSWORD)
    ui.goto("/registries/")
    selector = page.get_by_label("Region / project")
    options = selector.locator("option")
    assert sorted(options.all_inner_texts()) == ["cn-north-4 / prod", "eu-west-101 / elsewhere"]

    # First by name: "elsewhere", where alice is a viewer and there is no registry.
    assert "elsewhere" in selector.locator("option:checked").inner_text()
    expect(page.get_by_role("heading", name="No registry connected yet")).to_be_visible()
    assert page.get_by_role("link", name="Connect a registry").count() == 0

    selector.select_option(label="cn-north-4 / prod")
    page.wait_for_url("**/registries/")
    expect(page.locator('tr[data-registry="prod-registry"]')).to_have_count(1)
    assert "prod" in page.get_by_label("Region / project").locator("option:checked").inner_text()
    assert page.get_by_role("link", name="Connect a registry").count() == 1
