"""Shared fixtures: personas (admin, operator, viewer, outsider) and their projects.

Fixtures that need an external tool (a Distribution registry, Chromium) skip on a developer's
laptop when the tool is missing, but fail when IMAGESYNC_REQUIRE_TOOLS=1 (set by .ci/run).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.factories import PASSWORD
from tests.support.tools import REQUIRE_TOOLS

pytest_plugins = [
    "tests.support.registry_fixtures",
    "tests.support.fakes",
    "tests.support.browser",
]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (IMAGESYNC_REQUIRE_TOOLS=1) a skipped test is a failed test."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_TOOLS and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI, which is not allowed: {reason}"


ROOT = Path(__file__).resolve().parent.parent
_TREE_BEFORE = pytest.StashKey[set[str]]()


def _git_status() -> set[str] | None:
    """`git status --porcelain` lines of the checkout, or None outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return set(done.stdout.splitlines()) if done.returncode == 0 else None


def pytest_sessionstart(session):
    """Remember the checkout's state (in the controller only, not in each xdist worker)."""
    if not hasattr(session.config, "workerinput"):
        status = _git_status()
        if status is not None:
            session.config.stash[_TREE_BEFORE] = status


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Warn when the run changed the checkout (.ci/run fails on it): a test wrote into it."""
    before = config.stash.get(_TREE_BEFORE, None)
    after = _git_status() if before is not None else None
    if after is None or not after - before:
        return
    terminalreporter.write_sep("=", "the checkout changed during the test run", yellow=True)
    for line in sorted(after - before):
        terminalreporter.write_line(f"  {line}")
    terminalreporter.write_line("  (screenshots go to docs/ only with UPDATE_SCREENSHOTS=1)")


@pytest.fixture
def redis_url() -> str:
    """REDIS_URL (or the local server's default database), once its server answers; skips
    where no Redis runs (CI has one)."""
    import os

    import redis

    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        pytest.skip("no Redis server here (CI has one)")
    return url


@pytest.fixture
def project(db):
    from imagesync.models import Project

    return Project.objects.create(name="prod", region="cn-north-4")


@pytest.fixture
def other_project(db):
    from imagesync.models import Project

    return Project.objects.create(name="elsewhere", region="eu-west-101")


def _member(django_user_model, username, project, role):
    from imagesync.models import ProjectMembership

    user = django_user_model.objects.create_user(username=username, password=PASSWORD)
    ProjectMembership.objects.create(user=user, project=project, role=role)
    return user


@pytest.fixture
def admin_user(db, django_user_model, project):
    """A project admin (not a Django superuser): manages registries and syncs."""
    return _member(django_user_model, "alice-admin", project, "admin")


@pytest.fixture
def operator(db, django_user_model, project):
    return _member(django_user_model, "oscar-operator", project, "operator")


@pytest.fixture
def viewer(db, django_user_model, project):
    return _member(django_user_model, "vera-viewer", project, "viewer")


@pytest.fixture
def outsider(db, django_user_model, other_project):
    """An admin of another project: must see nothing of `project`."""
    return _member(django_user_model, "olga-outsider", other_project, "admin")


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", password=PASSWORD, email="root@example.com"
    )


@pytest.fixture
def registry(db, project):
    """An 'other' registry connection of `project` with a planted secret."""
    from imagesync.models import Registry

    reg = Registry(
        project=project,
        kind="other",
        name="local",
        endpoint="https://registry.example.com",
        username="robot",
    )
    reg.set_secret("PLANTED-SECRET-s3cr3t-9f8e7d")
    reg.save()
    return reg


@pytest.fixture
def login(client):
    """login(user) signs the test client in as that user and returns the client."""

    def _login(user):
        client.force_login(user)
        return client

    return _login
