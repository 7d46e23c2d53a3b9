"""The whole console flow in Simplified Chinese in a real browser (Playwright + the Debian
Chromium, sync tasks run for real against a real Distribution registry): sign in, connect a
registry, test it, synchronize with each of the three scopes, follow the task, open a
repository's results, filter Image View and export CSV. On every page no English UI word is
left, other than proper names and the data the test created. The same walk in English is
tests/test_browser.py.

Screenshots of the main pages in Chinese are written like tests/test_browser.py's (to
docs/screenshots/ only with UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from imagesync.models import Image, SyncTask, UserPreference
from tests.support.browser import FINAL_STATUS
from tests.support.factories import PASSWORD
from tests.support.i18n_check import page_english_words
from tests.support.registry_seed import push_image

pytestmark = [
    pytest.mark.browser,
    pytest.mark.registry,
    pytest.mark.usefixtures("tasks_run_inline"),
]


VISIBLE_TEXT = """() => {
  const parts = [document.title, document.body.innerText];
  for (const el of document.querySelectorAll("[title], [aria-label], [placeholder], [alt]")) {
    const style = window.getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") continue;
    for (const name of ["title", "aria-label", "placeholder", "alt"]) {
      const value = el.getAttribute(name);
      if (value) parts.push(value);
    }
  }
  return parts.join("\\n");
}"""


def english_words(ui, data: set[str]) -> list[str]:
    """English words on the page that are neither proper names nor data."""
    return page_english_words(ui.page.evaluate(VISIBLE_TEXT), data)


def assert_all_chinese(ui, data: set[str], where: str) -> None:
    words = english_words(ui, data)
    assert not words, f"English left on {where}: {sorted(set(words))}"


def wait_for_task_end(ui, task_id: int) -> str:
    ui.goto("/tasks/")
    row = ui.page.locator(f'tr[data-task="{task_id}"]')
    expect(row).to_have_attribute("data-status", FINAL_STATUS, timeout=30_000)
    return row.get_attribute("data-status")


def open_panel(ui):
    ui.page.locator("#open-sync-panel").click()
    panel = ui.page.get_by_role("dialog", name="同步镜像")
    panel.wait_for()
    return panel


def test_the_whole_flow_in_chinese_shows_no_english_ui_word(
    ui_zh, admin, fresh_registry, pushed, project, tmp_path
):
    ui, page = ui_zh, ui_zh.page
    data = {
        "alice-admin", "local-distribution", fresh_registry.url, fresh_registry.username,
        "team/api", "team/web", "infra/proxy", "api", "web", "proxy", "team", "infra",
        "latest", "prod", "cn-north-4", "linux/amd64", "linux/arm64", "linux/arm64/v8",
    }  # fmt: skip

    # Sign in: the page follows the browser's language.
    ui.goto("/login/")
    expect(page.get_by_role("heading", name="登录")).to_be_visible()
    assert_all_chinese(ui, data, "the sign-in page")
    page.get_by_label("用户名").fill("alice-admin")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/images/")
    expect(page.get_by_role("heading", name="还没有连接镜像仓")).to_be_visible()
    assert_all_chinese(ui, data, "the empty Image View")

    # Connect a registry and test it.
    ui.goto("/registries/")
    page.get_by_role("link", name="连接镜像仓").first.click()
    page.wait_for_url("**/registries/new/")
    expect(page.get_by_label(re.compile(r"^名称"))).to_be_visible()
    assert_all_chinese(ui, data, "the registry form")
    page.get_by_label(re.compile(r"^名称")).fill("local-distribution")
    page.get_by_label(re.compile(r"^类型")).select_option("other")
    page.get_by_label(re.compile(r"^地址（URL）")).fill(fresh_registry.url)
    page.get_by_label("用户名").fill(fresh_registry.username)
    page.get_by_label("密码、令牌或私有访问密钥").fill(fresh_registry.password)
    page.get_by_label("允许不安全的 HTTP").check()
    page.get_by_role("button", name="连接", exact=True).click()
    page.wait_for_url("**/registries/")
    row = page.locator('tr[data-registry="local-distribution"]')
    assert "未测试" in row.inner_text()
    row.get_by_role("button", name="测试连接").click()
    page.locator(".conn-status[role=status]").wait_for()
    assert "已连接" in row.inner_text()
    assert_all_chinese(ui, data, "Registry connections")
    ui.screenshot("registry-connections-zh.png")

    # Synchronize all image repositories, follow the task, open its repositories.
    page.get_by_role("link", name="镜像视图").first.click()
    expect(page.get_by_role("heading", name="还没有同步镜像")).to_be_visible()
    panel = open_panel(ui)
    assert panel.get_by_label("全部镜像仓库").is_checked()
    assert_all_chinese(ui, data, "the Synchronize Images panel")
    panel.get_by_role("button", name="确定").click()
    panel.wait_for(state="detached")
    message = page.locator("#messages .alert-success")
    assert "同步已开始" in message.inner_text()
    first = SyncTask.objects.get(project=project)
    data.add(str(first))
    message.get_by_role("link").click()
    page.wait_for_url(f"**/tasks/{first.pk}/")
    assert wait_for_task_end(ui, first.pk) == "succeeded"
    row = page.locator(f'tr[data-task="{first.pk}"]')
    assert "成功" in row.inner_text() and "全部镜像仓库" in row.inner_text()
    assert_all_chinese(ui, data, "Manage Task")
    ui.screenshot("manage-task-zh.png")
    row.get_by_role("link", name=f"#{first.pk}").click()
    page.wait_for_url(f"**/tasks/{first.pk}/")
    results = page.locator("#task-results tbody tr")
    expect(results).to_have_count(3)
    assert "同步完成" in results.first.inner_text()
    assert_all_chinese(ui, data, "a task's repositories")
    ui.screenshot("task-detail-zh.png")

    # Synchronize specified types: an empty choice is refused in Chinese, then one type.
    ui.goto("/images/")
    panel = open_panel(ui)
    panel.get_by_label("指定类型的镜像仓库").check()
    panel.get_by_role("button", name="确定").click()
    page.locator("#sync-panel .field-error", has_text="请至少选择一种").wait_for()
    panel = page.get_by_role("dialog", name="同步镜像")
    assert_all_chinese(ui, data, "the panel's error")
    panel.get_by_label("其他仓库镜像（OCI / Docker v2）").check()
    panel.get_by_role("button", name="确定").click()
    panel.wait_for(state="detached")
    second = SyncTask.objects.exclude(pk=first.pk).get()
    assert second.scope == "types" and second.scope_types == ["other"]
    assert wait_for_task_end(ui, second.pk) == "succeeded"
    ui.goto(f"/tasks/{second.pk}/")
    assert "指定类型的镜像仓库" in page.locator(".facts").inner_text()
    assert_all_chinese(ui, data, "a types task")

    # Synchronize specified repositories: only team/api, which has a new tag.
    push_image(fresh_registry, "team/api", "2.0")
    data.add("2.0")
    ui.goto("/images/")
    panel = open_panel(ui)
    panel.get_by_label("指定镜像仓库").check()
    panel.get_by_label("team/api").check()
    expect(panel.locator("[data-selected-count]")).to_have_text("1")
    assert_all_chinese(ui, data, "the repository picker")
    ui.screenshot("sync-panel-zh.png")
    panel.get_by_role("button", name="确定").click()
    panel.wait_for(state="detached")
    third = SyncTask.objects.exclude(pk__in=[first.pk, second.pk]).get()
    assert third.scope == "repositories"
    assert wait_for_task_end(ui, third.pk) == "succeeded"
    ui.goto(f"/tasks/{third.pk}/")
    results = page.locator("#task-results tbody tr")
    expect(results).to_have_count(1)
    assert "team/api" in results.inner_text()

    # Image View: every image, a filter, the CSV export (its header keys are not translated).
    ui.goto("/images/")
    expect(page.locator("#image-table tbody tr")).to_have_count(5)
    assert Image.objects.filter(project=project).count() == 5
    assert_all_chinese(ui, data, "Image View")
    ui.screenshot("image-view-zh.png")
    page.get_by_label("搜索").fill("proxy")
    page.get_by_role("button", name="应用筛选条件").click()
    page.wait_for_url(re.compile(r".*q=proxy.*"))
    expect(page.locator("#image-table tbody tr")).to_have_count(1)
    assert_all_chinese(ui, data, "filtered Image View")
    with page.expect_download() as download:
        page.get_by_role("link", name="导出 CSV").click()
    target = tmp_path / "images.csv"
    download.value.save_as(target)
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("registry,type,namespace,repository,tag,digest,size")
    assert len(lines) == 2 and "infra/proxy" in lines[1]


def test_the_top_bar_switches_the_language_and_the_user_keeps_it_in_another_browser(
    ui, chromium_browser, live_server, admin
):
    page = ui.page
    ui.sign_in("alice-admin", PASSWORD)
    expect(page.get_by_role("heading", name="Container Images")).to_be_visible()
    page.get_by_label("Language").select_option("zh-hans")
    expect(page.get_by_role("heading", name="容器镜像")).to_be_visible()
    assert UserPreference.objects.get(user=admin).language == "zh-hans"

    # Back to English from the top bar, in Chinese now.
    page.get_by_label("语言").select_option("en")
    expect(page.get_by_role("heading", name="Container Images")).to_be_visible()
    UserPreference.remember(admin, language="zh-hans")

    # A new browser, in English: the user's stored choice wins once signed in.
    from tests.support.browser import open_console_page

    other = open_console_page(chromium_browser, live_server, locale="en-US")
    second = next(other)
    try:
        second.sign_in("alice-admin", PASSWORD)
        expect(second.page.get_by_role("heading", name="容器镜像")).to_be_visible()
    finally:
        other.close()
