"""A worker or web process killed with SIGKILL never leaves a task "running" forever, nor a
half-written repository.

These tests run the real thing: `manage.py qcluster` (django-q2 with its ORM broker) in its own
process group, on a dedicated database that every process shares -- a SQLite file in a
temporary directory, or a throw-away PostgreSQL database when DATABASE_URL points at
PostgreSQL. The test process never touches that database through pytest-django; it asks small
Django scripts run in subprocesses (`Stack.run`). The registry is a real Distribution registry
behind tests/support/fault_proxy.py, which adds latency so the sync is slow enough to be
killed in the middle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography.fernet import Fernet

from tests.support.fault_proxy import FaultProxy
from tests.support.registry_seed import push_image

pytestmark = pytest.mark.registry

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HEARTBEAT_INTERVAL = 1
HEARTBEAT_TIMEOUT = 4
REPOS = [f"svc/app-{i}" for i in range(6)]
TAGS = ("1.0", "1.1", "2.0")


class Stack:
    """Environment of the console processes: database, keys, settings."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.pg_admin_url = ""
        base = os.environ.get("DATABASE_URL", "")
        if base.startswith(("postgres://", "postgresql://")):
            name = f"imagesync_death_{uuid.uuid4().hex[:8]}"
            parts = urlsplit(base)
            self.pg_admin_url = urlunsplit(parts._replace(path="/postgres"))
            self.pg_name = name
            database_url = urlunsplit(parts._replace(path=f"/{name}"))
            self._psql(f"CREATE DATABASE {name}")
        else:
            database_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "PYTHONPATH": str(ROOT),
            "IMAGESYNC_VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": database_url,
            "ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "SECRET_KEY": "worker-death-" + uuid.uuid4().hex,
            "SYNC_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
            "SYNC_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "SYNC_WORKERS": "2",
            "Q_WORKERS": "1",
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("REDIS_URL", None)  # the ORM broker: the queue lives in the same database
        self.clusters: list[subprocess.Popen] = []
        self.manage("migrate", "--noinput", "-v", "0")
        # The daily scheduled sync must not start tasks of its own during the test.
        self.run(
            "from django_q.models import Schedule\n"
            "from imagesync.schedules import SCHEDULED_SYNC_NAME\n"
            "Schedule.objects.filter(name=SCHEDULED_SYNC_NAME).delete()\n"
            "result = True"
        )

    def _psql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def python(self, *args: str, timeout: float) -> str:
        """Run Python with the stack's environment; its output, asserting it succeeded."""
        done = subprocess.run(
            [PYTHON, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def manage(self, *args: str, timeout: float = 120) -> str:
        return self.python(str(ROOT / "manage.py"), *args, timeout=timeout)

    def run(self, code: str, timeout: float = 60):
        """Run Django code in a fresh process; returns the JSON of its `result` variable."""
        script = (
            "import django, json\ndjango.setup()\n"
            + textwrap.dedent(code)
            + "\nprint('@@RESULT@@' + json.dumps(result, default=str))\n"
        )
        output = self.python("-c", script, timeout=timeout)
        line = [x for x in output.splitlines() if x.startswith("@@RESULT@@")][-1]
        return json.loads(line[len("@@RESULT@@") :])

    def start_cluster(self) -> subprocess.Popen:
        log = open(self.tmp / f"qcluster-{len(self.clusters)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [PYTHON, str(ROOT / "manage.py"), "qcluster"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes all its workers
        )
        self.clusters.append(process)
        return process

    def kill_cluster(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def close(self) -> None:
        # The test is over: SIGKILL every process of each cluster's group at once (a SIGTERM
        # lets qcluster wait for its worker's task: 20 s per cluster at teardown).
        for process in self.clusters:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(10)
        if self.pg_admin_url:
            self._psql(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")

    # --- domain helpers -------------------------------------------------------------------

    def create_project(self, endpoint: str, reg) -> None:
        self.run(
            f"""
            from imagesync.models import Project, Registry
            project = Project.objects.create(name="p")
            registry = Registry(project=project, kind="other", name="dist", endpoint={endpoint!r},
                                username={reg.username!r}, allow_insecure_http=True,
                                options={{"max_concurrency": 1, "max_retries": 1,
                                          "backoff_base": 0.05, "read_timeout": 5}})
            registry.set_secret({reg.password!r})
            registry.save()
            result = registry.pk
            """
        )

    def sync_in_process(self) -> dict:
        return self.run(
            """
            from imagesync.models import Project, SyncTask
            from imagesync.tasks import run_sync_task
            task = SyncTask.objects.request(Project.objects.get(name="p"), enqueue=False)
            run_sync_task(task.pk)
            task.refresh_from_db()
            result = {"status": task.status, "reason": task.failure_reason}
            """,
            timeout=180,
        )

    def task(self, pk: int) -> dict:
        return self.run(
            f"""
            from imagesync.models import SyncTask
            t = SyncTask.objects.get(pk={pk})
            result = {{"status": t.status, "done": t.repositories_done,
                      "total": t.repositories_total, "code": t.failure_code,
                      "reason": t.failure_reason, "heartbeat": t.heartbeat_at,
                      "results": {{r.repository_path: r.status for r in t.results.all()}}}}
            """
        )

    def inventory(self) -> dict[str, str]:
        return self.run(
            """
            from imagesync.models import Image
            result = {f"{p}:{t}": d for p, t, d in Image.objects.filter(
                repository__removed_at__isnull=True).values_list("repository__path", "tag",
                "digest")}
            """
        )

    def watchdog(self) -> dict:
        return self.run("from imagesync.tasks import watchdog\nresult = watchdog()")

    def wait_for(self, pk: int, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        state = self.task(pk)
        while not predicate(state):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {state}"
            time.sleep(0.3)
            state = self.task(pk)
        return state


def truth(reg) -> dict[str, str]:
    """path:tag -> digest, read from the registry directly."""
    session = reg.session()
    found = {}
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    for path in REPOS:
        for tag in session.get(f"{reg.url}/v2/{path}/tags/list", timeout=10).json()["tags"]:
            head = session.head(
                f"{reg.url}/v2/{path}/manifests/{tag}", headers={"Accept": accept}, timeout=10
            )
            found[f"{path}:{tag}"] = head.headers["Docker-Content-Digest"]
    return found


def of_repo(inventory: dict[str, str], path: str) -> dict[str, str]:
    return {k: v for k, v in inventory.items() if k.rsplit(":", 1)[0] == path}


@pytest.fixture
def stack(tmp_path, fresh_registry):
    for path in REPOS:
        for tag in TAGS:
            push_image(fresh_registry, path, tag)
    proxy = FaultProxy(fresh_registry.url).start()
    env = Stack(tmp_path)
    try:
        env.create_project(proxy.url, fresh_registry)
        yield env, proxy, fresh_registry
    finally:
        env.close()
        proxy.stop()


def test_a_worker_killed_mid_sync_leaves_the_task_interrupted_and_no_repository_half_written(
    stack,
):
    env, proxy, reg = stack
    first = env.sync_in_process()
    assert first["status"] == "succeeded", first
    old = env.inventory()
    assert old == truth(reg)

    # Every tag of every repository gets new content, so a half-written repository would show
    # a mix of old and new digests.
    for path in REPOS:
        for tag in TAGS:
            push_image(reg, path, tag, labels={"rebuilt": "1"})
    new = truth(reg)
    assert not set(new.items()) & set(old.items())

    proxy.latency = 0.25  # about 2 s per repository, one at a time
    cluster = env.start_cluster()
    pk = env.run(
        """
        from imagesync.models import Project, SyncTask
        result = SyncTask.objects.request(Project.objects.get(name="p")).pk
        """
    )
    env.wait_for(
        pk,
        lambda t: t["status"] == "running" and t["done"] >= 2,
        timeout=90,
        what="the cluster to sync two repositories",
    )
    env.kill_cluster(cluster)
    killed_at = time.monotonic()
    assert cluster.returncode is not None

    # Right after the kill the heartbeat is fresh: the watchdog must not interrupt it yet.
    assert env.watchdog()["interrupted"] == 0
    state = env.task(pk)
    assert state["status"] == "running"

    time.sleep(max(0.0, HEARTBEAT_TIMEOUT + 1 - (time.monotonic() - killed_at)))
    assert env.watchdog()["interrupted"] == 1
    state = env.task(pk)
    assert state["status"] == "interrupted"
    assert state["code"] == "interrupted"
    assert "heartbeat" in state["reason"]
    assert set(state["results"].values()) <= {"finished", "skipped"}
    assert list(state["results"].values()).count("finished") >= 2

    inventory = env.inventory()
    for path in REPOS:
        mine = of_repo(inventory, path)
        if state["results"][path] == "finished":
            assert mine == of_repo(new, path), f"{path} finished but is not the registry"
        else:
            assert mine == of_repo(old, path), f"{path} was half written: {mine}"

    # A new worker and a new sync bring everything in line.
    proxy.latency = 0.0
    env.start_cluster()
    again = env.run(
        """
        from imagesync.models import Project, SyncTask
        result = SyncTask.objects.request(Project.objects.get(name="p")).pk
        """
    )
    final = env.wait_for(
        again,
        lambda t: t["status"] not in ("queued", "running"),
        timeout=120,
        what="the new sync to finish",
    )
    assert final["status"] == "succeeded", final
    assert env.inventory() == new


def _web_process(env: Stack, commit: bool) -> subprocess.Popen:
    """A 'web process' that creates a sync task and is killed before or after the commit
    (and in both cases before the task is handed to the queue)."""
    code = textwrap.dedent(
        f"""
        import django, sys, time
        django.setup()
        from django.db import transaction
        from imagesync.models import Project, SyncTask
        project = Project.objects.get(name="p")
        if {commit!r}:
            task = SyncTask.objects.request(project, enqueue=False)  # committed, never enqueued
            print("TASK", task.pk, flush=True)
        else:
            with transaction.atomic():
                task = SyncTask.objects.request(project)
                print("TASK", task.pk, flush=True)
                time.sleep(600)  # killed here, inside the transaction
        time.sleep(600)
        """
    )
    return subprocess.Popen(
        [PYTHON, "-c", code],
        env=env.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _killed_after_printing(process: subprocess.Popen) -> int:
    line = process.stdout.readline()
    assert line.startswith("TASK"), process.stderr.read()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    process.stdout.close()
    process.stderr.close()
    return int(line.split()[1])


def test_a_web_process_killed_before_commit_leaves_no_task_and_no_lock(stack):
    env, proxy, reg = stack
    pk = _killed_after_printing(_web_process(env, commit=False))
    exists = env.run(
        f"from imagesync.models import SyncTask\nresult = SyncTask.objects.filter(pk={pk}).exists()"
    )
    assert exists is False
    # Nothing is stuck: the project can be synchronized at once.
    done = env.sync_in_process()
    assert done["status"] == "succeeded", done
    assert env.inventory() == truth(reg)


def test_a_web_process_killed_after_commit_leaves_a_queued_task_the_watchdog_gets_run(stack):
    env, proxy, reg = stack
    pk = _killed_after_printing(_web_process(env, commit=True))
    assert env.task(pk)["status"] == "queued"  # committed, but no queue entry was ever made

    env.start_cluster()
    # The watchdog re-enqueues a queued task nobody claimed after 5 x the heartbeat timeout.
    deadline = time.monotonic() + 5 * HEARTBEAT_TIMEOUT + 30
    state = env.task(pk)
    while state["status"] == "queued":
        assert time.monotonic() < deadline, f"the queued task was never picked up: {state}"
        env.watchdog()
        time.sleep(1)
        state = env.task(pk)
    final = env.wait_for(
        pk,
        lambda t: t["status"] not in ("queued", "running"),
        timeout=120,
        what="the re-enqueued task to finish",
    )
    assert final["status"] == "succeeded", final
    assert env.inventory() == truth(reg)
