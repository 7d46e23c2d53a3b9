"""Real `manage.py qcluster` worker processes on a database of their own, for tests and
benchmarks of one sync spread over several workers.

The database is a SQLite file in a temporary directory (with the ORM broker), or, when
DATABASE_URL points at PostgreSQL, a throw-away database on that server with the Redis broker
on REDIS_URL's server (the database just below the test process's own, which is left alone). The
test process never opens that database itself: it runs small Django scripts in subprocesses.
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

from cryptography.fernet import Fernet

from console.env import redis_url_of_test_worker

ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable


def _redis_url_below_the_suites() -> str:
    """REDIS_URL's server, the database just below the one this test process uses."""
    url = os.environ["REDIS_URL"]
    if os.environ.get("IMAGESYNC_TEST_REDIS_PER_WORKER"):
        url = redis_url_of_test_worker(url, os.environ.get("PYTEST_XDIST_WORKER", ""))
    redis = urlsplit(url)
    return urlunsplit(redis._replace(path=f"/{int(redis.path.strip('/') or 0) - 1}"))


class Cluster:
    """The environment shared by the console processes, and the qcluster processes started."""

    def __init__(self, tmp: Path, **settings: str) -> None:
        self.tmp = tmp
        self.pg_admin_url = ""
        base = os.environ.get("DATABASE_URL", "")
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "REDIS_URL", "IMAGESYNC_TEST_REDIS_PER_WORKER"}
        }
        if base.startswith(("postgres://", "postgresql://")):
            self.pg_name = f"imagesync_cluster_{uuid.uuid4().hex[:8]}"
            parts = urlsplit(base)
            self.pg_admin_url = urlunsplit(parts._replace(path="/postgres"))
            self._psql(f"CREATE DATABASE {self.pg_name}")
            self.env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{self.pg_name}"))
            if os.environ.get("REDIS_URL"):
                self.env["REDIS_URL"] = _redis_url_below_the_suites()
        else:
            self.env["DATABASE_URL"] = f"sqlite:///{tmp / 'db.sqlite3'}"
        self.env.update(
            DJANGO_SETTINGS_MODULE="console.settings",
            PYTHONPATH=str(ROOT),
            IMAGESYNC_VAR_DIR=str(tmp / "var"),
            ENCRYPTION_KEY=Fernet.generate_key().decode(),
            SECRET_KEY="cluster-" + uuid.uuid4().hex,
            Q_WORKERS="1",
            LOG_LEVEL="WARNING",
            **settings,
        )
        self.processes: list[subprocess.Popen] = []
        self.manage("migrate", "--noinput", "-v", "0")
        # Only the tasks a test starts: no scheduled sync; the watchdog is called explicitly.
        self.run(
            "from django_q.models import Schedule\nSchedule.objects.all().delete()\nresult = True"
        )

    @property
    def broker(self) -> str:
        return "Redis" if "REDIS_URL" in self.env else "the ORM"

    def _psql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def python(self, *args: str, timeout: float) -> str:
        done = subprocess.run(
            [PYTHON, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def manage(self, *args: str, timeout: float = 120) -> str:
        return self.python(str(ROOT / "manage.py"), *args, timeout=timeout)

    def run(self, code: str, timeout: float = 60):
        """Run Django code in a fresh process; the JSON of its `result` variable."""
        script = (
            "import django, json\ndjango.setup()\n"
            + textwrap.dedent(code)
            + "\nprint('@@RESULT@@' + json.dumps(result, default=str))\n"
        )
        output = self.python("-c", script, timeout=timeout)
        line = [x for x in output.splitlines() if x.startswith("@@RESULT@@")][-1]
        return json.loads(line[len("@@RESULT@@") :])

    def start_worker(self) -> subprocess.Popen:
        """One `qcluster` with one worker process, in its own process group."""
        log = open(self.tmp / f"qcluster-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [PYTHON, str(ROOT / "manage.py"), "qcluster"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def owner_of(self, pid: int) -> subprocess.Popen | None:
        """The qcluster whose process group holds `pid`."""
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((p for p in self.processes if p.pid == group), None)

    def kill(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
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
        # The test is over: SIGKILL at once. A SIGTERM lets qcluster wait for its worker's task,
        # which here cost the full 20 s of kill()'s wait per cluster (--durations).
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(10)
        if self.pg_admin_url:
            self._psql(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")

    # --- domain helpers ---------------------------------------------------------------------

    def create_project(self, endpoint: str, username: str, password: str, **options) -> None:
        self.run(
            f"""
            from imagesync.models import Project, Registry
            project = Project.objects.create(name="p")
            registry = Registry(project=project, kind="other", name="dist", endpoint={endpoint!r},
                                username={username!r}, allow_insecure_http=True,
                                options={options!r})
            registry.set_secret({password!r})
            registry.save()
            result = registry.pk
            """
        )

    def request_sync(self) -> int:
        return self.run(
            """
            from imagesync.models import Project, SyncTask
            result = SyncTask.objects.request(Project.objects.get(name="p")).pk
            """
        )

    def task(self, pk: int) -> dict:
        return self.run(
            f"""
            from imagesync.models import SyncTask
            t = SyncTask.objects.get(pk={pk})
            result = {{"status": t.status, "done": t.repositories_done,
                      "total": t.repositories_total, "failed": t.repositories_failed,
                      "added": t.images_added, "reason": t.failure_reason,
                      "started": t.started_at, "finished": t.finished_at,
                      "results": {{r.repository_path: r.status for r in t.results.all()}},
                      "jobs": [[j.kind, j.status, j.attempt, j.worker]
                               for j in t.jobs.order_by("id")]}}
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

    def wait_for(self, pk: int, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        state = self.task(pk)
        while not predicate(state):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {state}"
            time.sleep(0.3)
            state = self.task(pk)
        return state
