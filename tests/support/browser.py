"""Playwright helpers for the browser tests: the Debian Chromium, a page that records Content
Security Policy violations, and signing in; and the two fixtures browser tests use (this module
is a pytest plugin, registered in tests/conftest.py):

* `chromium_browser` -- module-scoped: Playwright's sync API keeps an event loop in the main
  thread while it runs, and Django refuses ORM calls there unless DJANGO_ALLOW_ASYNC_UNSAFE is
  set; stopping it at the end of the module keeps other test modules unaffected.
* `ui` -- a signed-out page on `live_server`; fails the test on CSP violations or JS errors.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.tools import missing_tool

CHROMIUM = os.environ.get("IMAGESYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}


def screenshot_dir() -> Path:
    """Where ConsolePage.screenshot writes.

    UPDATE_SCREENSHOTS=1 writes the committed docs/screenshots/*.png the README shows; set it
    only when the console's look changed on purpose, then commit the pictures. Without it the
    pictures go to a temporary directory, so running the suite leaves the checkout unmodified.
    """
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return DOCS_SCREENSHOTS
    return Path(tempfile.gettempdir()) / "imagesync-screenshots"


@dataclass
class ConsolePage:
    """A Playwright page plus what the browser complained about while the test ran."""

    page: object
    base_url: str
    csp_violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str):
        return self.page.goto(self.base_url + path)

    def sign_in(self, username: str, password: str) -> None:
        """Sign in through the real login form."""
        self.goto("/login/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/images/")

    def screenshot(self, name: str) -> Path:
        """Save a screenshot under screenshot_dir() (docs/screenshots/ with UPDATE_SCREENSHOTS=1)."""
        directory = screenshot_dir()
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        # Let the slide-in finish. Playwright's animations="disabled" and caret="hide" touch
        # the page's styles (a <style> element, style="" on inputs) that the Content Security
        # Policy then reports, so neither is used.
        self.page.wait_for_timeout(400)
        self.page.screenshot(path=str(target), full_page=False, caret="initial")
        return target


def launch_chromium() -> Iterator[object]:
    """The Debian Chromium driven by Playwright (never `playwright install`)."""
    if not Path(CHROMIUM).exists():
        missing_tool(f"{CHROMIUM} is missing: install the Debian chromium package")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def open_console_page(browser, live_server, locale: str | None = None) -> Iterator[ConsolePage]:
    """A fresh browser context on the live server (its Accept-Language from `locale`, e.g.
    "zh-CN"); fails the test on any CSP violation or JavaScript error."""
    options = {"locale": locale} if locale else {}
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url, **options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    console = ConsolePage(page=page, base_url=live_server.url)

    def on_console(message) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            console.csp_violations.append(text)
        elif message.type == "error" and "favicon" not in text:
            console.errors.append(text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.errors.append(str(error)))
    try:
        yield console
    finally:
        context.close()
    assert not console.csp_violations, "CSP violations:\n" + "\n".join(console.csp_violations)
    assert not console.errors, "JavaScript errors:\n" + "\n".join(console.errors)


@pytest.fixture(scope="module")
def chromium_browser():
    yield from launch_chromium()


@pytest.fixture
def ui(chromium_browser, live_server):
    """A signed-out browser page on the live server; fails on CSP violations or JS errors."""
    yield from open_console_page(chromium_browser, live_server)


@pytest.fixture
def ui_zh(chromium_browser, live_server):
    """As `ui`, from a browser whose language is Simplified Chinese (Accept-Language zh-CN)."""
    yield from open_console_page(chromium_browser, live_server, locale="zh-CN")


# --- the browser flows' shared setup (tests/test_browser.py and tests/test_i18n_browser.py) ---

FINAL_STATUS = re.compile(r"^(succeeded|partially_succeeded|failed|cancelled|interrupted|skipped)$")


@pytest.fixture
def tasks_run_inline(settings, monkeypatch):
    """django-q2 runs async_task inline, so a sync started in the browser really runs."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)


@pytest.fixture
def admin(transactional_db, django_user_model, project):
    from imagesync.models import ProjectMembership
    from tests.support.factories import PASSWORD

    user = django_user_model.objects.create_user(username="alice-admin", password=PASSWORD)
    ProjectMembership.objects.create(user=user, project=project, role="admin")
    return user


@pytest.fixture
def pushed(fresh_registry):
    """Three repositories in an empty registry: two single-platform tags and a multi-arch index."""
    from tests.support.registry_seed import push_image, push_index

    push_image(fresh_registry, "team/api", "1.0")
    push_image(fresh_registry, "team/api", "1.1", arch="arm64", variant="v8")
    push_index(fresh_registry, "team/web", "latest", platforms=["linux/amd64", "linux/arm64"])
    push_image(fresh_registry, "infra/proxy", "2.4")
    return {("api", "1.0"), ("api", "1.1"), ("web", "latest"), ("proxy", "2.4")}
