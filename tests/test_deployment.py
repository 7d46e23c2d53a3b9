"""docs/deployment.md is run as written: each block marked `<!-- tested: NAME -->` runs in bash
with `$CONF`, `/etc/systemd/`, `/etc/nginx/` and `/var/backups/` under a temporary directory, `systemctl`, `git` and `nginx`
replaced by stand-ins that record their arguments, and `sudo -u USER [--preserve-env]` running
the command as the test's user. The database is a throw-away PostgreSQL database created by the
guide's own block; the systemd units go through `systemd-analyze verify`; nginx runs for real
with the shipped site in front of `bin/run` and signs a user in over TLS.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support.processes import ConsoleProcess, free_port
from tests.support.tools import missing_tool

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "deployment.md"
# The test run's own settings, which the guide's machine must not inherit.
TEST_RUN_SETTINGS = {"DATABASE_URL", "REDIS_URL", "IMAGESYNC_TEST_REDIS_PER_WORKER"}
PG = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres"}

STAND_INS = {
    # Record the call; print nothing, succeed.
    "systemctl": 'echo "systemctl $*" >> "$CALLS"',
    "git": 'echo "git $*" >> "$CALLS"',
    "nginx": 'echo "nginx $*" >> "$CALLS"',
    # sudo -u USER [--preserve-env] COMMAND...: run COMMAND as ourselves.
    "sudo": textwrap.dedent(
        """\
        while [ $# -gt 0 ]; do
          case "$1" in -u) shift 2 ;; --preserve-env) shift ;; *) break ;; esac
        done
        echo "sudo $*" >> "$CALLS"
        exec "$@"
        """
    ),
}


def guide_blocks() -> dict[str, str]:
    text = GUIDE.read_text()
    found = re.findall(r"<!-- tested: ([\w-]+) -->\n```\w*\n(.*?)```", text, re.S)
    return dict(found)


class Machine:
    """A temporary stand-in for the root of a machine the guide is followed on."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.calls = tmp / "calls"
        self.calls.touch()
        bin_dir = tmp / "stand-ins"
        bin_dir.mkdir()
        for name, body in STAND_INS.items():
            path = bin_dir / name
            path.write_text(f"#!/usr/bin/env bash\n{body}")
            path.chmod(0o755)
        for directory in (
            "etc/systemd/system",
            "etc/nginx/sites-available",
            "etc/nginx/sites-enabled",
        ):
            (tmp / directory).mkdir(parents=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in TEST_RUN_SETTINGS},
            **PG,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "CALLS": str(self.calls),
            "APP": str(ROOT),
            "CONF": str(tmp / "etc" / "imagesync"),
            "ADMIN_PASSWORD": "deployment-test-password-1",
        }

    def run(self, name: str, replace: dict[str, str] | None = None, **env: str) -> str:
        script = guide_blocks()[name]
        for old, new in {
            "/etc/systemd/": f"{self.tmp}/etc/systemd/",
            "/etc/nginx/": f"{self.tmp}/etc/nginx/",
            "/var/backups/": f"{self.tmp}/var/backups/",
            **(replace or {}),
        }.items():
            script = script.replace(old, new)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**self.env, **env},
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"block {name!r} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def recorded(self) -> str:
        return self.calls.read_text()

    def settings(self) -> dict[str, str]:
        lines = (self.tmp / "etc" / "imagesync" / "env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    def edit_settings(self, **values: str) -> None:
        path = self.tmp / "etc" / "imagesync" / "env"
        text = path.read_text()
        for key, value in values.items():
            text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        path.write_text(text)

    def manage(self, *args: str, stdin: str = "") -> str:
        env = {**self.env, **self.settings()}
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "manage.py"), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql],
        env={**os.environ, **PG},
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def postgres():
    if (
        not shutil.which("psql")
        or subprocess.run(["pg_isready", "-h", PG["PGHOST"]], capture_output=True).returncode != 0
    ):
        missing_tool("PostgreSQL at 127.0.0.1:5432 is needed to follow the deployment guide")
    name = f"imagesync_doc_{uuid.uuid4().hex[:8]}"
    yield name
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"DROP ROLE IF EXISTS {name}")


def backup_made(tmp: Path) -> Path:
    """The one dated folder the guide's backup made (`$(date +%F)` when it ran: a test that
    runs across midnight must not look for today's)."""
    made = sorted((tmp / "var" / "backups" / "imagesync").iterdir())
    assert len(made) == 1 and made[0].is_dir(), made
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", made[0].name), made[0].name
    return made[0]


def test_the_guide_installs_backs_up_and_restores_on_postgresql(tmp_path, postgres):
    machine = Machine(tmp_path)
    machine.run("database", replace={"imagesync": postgres})
    machine.run("settings")
    settings = machine.settings()
    Fernet(settings["ENCRYPTION_KEY"].encode())  # a usable key, not the example's placeholder
    assert len(settings["SECRET_KEY"]) >= 50
    assert os.stat(tmp_path / "etc" / "imagesync" / "env").st_mode & 0o077 == 0
    machine.edit_settings(
        DATABASE_URL=f"postgres://{postgres}:change-me@127.0.0.1:5432/{postgres}",
        REDIS_URL="redis://127.0.0.1:6379/8",  # none of the test workers' (console/env.py)
        IMAGESYNC_VAR_DIR=str(tmp_path / "srv-var"),
    )
    machine.run("first-start")
    assert (tmp_path / "srv-var" / "static" / "staticfiles.json").exists()
    machine.manage(
        "registry",
        "add",
        "--project",
        "default",
        "--kind",
        "other",
        "--name",
        "hub",
        "--url",
        "https://registry.example.com",
        "--username",
        "bot",
        "--password-stdin",
        stdin="s3cret-token\n",
    )

    machine.run("backup")
    # The machine is lost: the database and the settings file with it.
    psql(f"DROP DATABASE {postgres} WITH (FORCE)")
    psql(f"CREATE DATABASE {postgres} OWNER {postgres}")
    shutil.rmtree(tmp_path / "etc" / "imagesync")

    machine.run("restore", replace={"2026-01-31": backup_made(tmp_path).name})
    secret = machine.manage(
        "shell",
        "-c",
        "from imagesync.models import Registry; print(Registry.objects.get(name='hub').get_secret())",
    )
    assert (
        secret.splitlines()[-1] == "s3cret-token"
    )  # the restored key decrypts the restored secret
    assert "systemctl stop imagesync-web imagesync-worker" in machine.recorded()
    assert "systemctl start imagesync-web imagesync-worker" in machine.recorded()

    machine.run("upgrade")
    assert "git pull --ff-only" in machine.recorded()
    assert "systemctl reload imagesync-web" in machine.recorded()


def test_the_guide_installs_systemd_units_that_systemd_accepts(tmp_path):
    if not shutil.which("systemd-analyze"):
        missing_tool("systemd-analyze (Debian systemd) is needed to check the units")
    machine = Machine(tmp_path)
    machine.run("systemd")  # its systemd-analyze verify is the real one
    units = sorted(p.name for p in (tmp_path / "etc" / "systemd" / "system").iterdir())
    assert units == ["imagesync-web.service", "imagesync-worker.service"]
    web = (tmp_path / "etc" / "systemd" / "system" / "imagesync-web.service").read_text()
    assert f"ExecStart={ROOT}/.venv/bin/gunicorn --config {ROOT}/deploy/gunicorn.conf.py" in web
    assert f"EnvironmentFile={tmp_path}/etc/imagesync/env" in web
    assert "systemctl enable --now imagesync-web imagesync-worker" in machine.recorded()


def test_the_guide_sets_redis_to_keep_every_queued_task(tmp_path):
    if not shutil.which("redis-server"):
        missing_tool("redis-server is needed to check the Redis settings")
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(guide_blocks()["redis"] + f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n")
    server = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
    try:

        def get(name):
            for _ in range(50):
                done = subprocess.run(
                    ["redis-cli", "-p", str(port), "CONFIG", "GET", name],
                    capture_output=True,
                    text=True,
                )
                if done.returncode == 0 and done.stdout.strip():
                    return done.stdout.split()[-1]
                subprocess.run(["sleep", "0.1"])
            raise AssertionError(f"redis-server on port {port} did not answer")

        assert get("maxmemory-policy") == "noeviction"
        assert get("appendonly") == "yes"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_embedded_default_backup_copies_the_database_and_both_keys(tmp_path):
    app = tmp_path / "app"
    (app / "var").mkdir(parents=True)
    with sqlite3.connect(app / "var" / "db.sqlite3") as db:
        db.execute("CREATE TABLE kept (value TEXT)")
        db.execute("INSERT INTO kept VALUES ('inventory')")
    (app / "var" / "secret_key").write_text("secret")
    (app / "var" / "encryption_key").write_text(Fernet.generate_key().decode())
    Machine(tmp_path).run("sqlite-backup", APP=str(app))
    backup = backup_made(tmp_path)
    with sqlite3.connect(backup / "db.sqlite3") as db:
        assert db.execute("SELECT value FROM kept").fetchall() == [("inventory",)]
    assert (backup / "encryption_key").read_text() == (app / "var" / "encryption_key").read_text()
    assert (backup / "secret_key").exists()


def test_nginx_with_the_shipped_site_serves_the_console_over_tls(tmp_path):
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        missing_tool("nginx (Debian nginx-light) is needed to check the site")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    Machine(tmp_path).run("nginx")  # installs the site under the temporary /etc
    site = (tmp_path / "etc" / "nginx" / "sites-enabled" / "imagesync").read_text()
    console = ConsoleProcess(
        tmp_path,
        HTTPS="true",
        BEHIND_PROXY="true",
        ALLOWED_HOSTS="console.example.com",
        CSRF_TRUSTED_ORIGINS="https://console.example.com",
    )
    http_port, https_port = free_port(), free_port()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=console.example.com",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    for old, new in {
        "listen [::]:80;": "",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{console.port};",
        "/etc/ssl/imagesync/fullchain.pem": str(tmp_path / "cert.pem"),
        "/etc/ssl/imagesync/privkey.pem": str(tmp_path / "key.pem"),
    }.items():
        assert old in site, f"the site no longer has {old!r}: update this test"
        site = site.replace(old, new)
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log stderr;\n"
        f"events {{}}\nhttp {{ access_log off; include {tmp_path}/site.conf; }}\n"
    )
    command = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    proxy = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        origin = f"https://console.example.com:{https_port}"
        curl = [
            "curl",
            "-sk",
            "--resolve",
            f"console.example.com:{https_port}:127.0.0.1",
            "--resolve",
            f"console.example.com:{http_port}:127.0.0.1",
            "-c",
            str(tmp_path / "jar"),
            "-b",
            str(tmp_path / "jar"),
        ]

        def fetch(*args):
            out = subprocess.run(
                [*curl, "-o", "-", "-w", "\n%{http_code} %{redirect_url}", *args],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            body, _, status = out.rpartition("\n")
            return body, status

        deadline = time.monotonic() + 180
        while not fetch(f"{origin}/login/")[1].startswith("200"):
            assert console.process.poll() is None, console.output()
            assert time.monotonic() < deadline, console.output()
            time.sleep(0.5)
        _, status = fetch(f"http://console.example.com:{http_port}/login/")
        assert status == "301 https://console.example.com/login/"
        page, status = fetch(f"{origin}/login/")
        assert status.startswith("200"), page
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
        _, status = fetch(
            "-e",
            f"{origin}/login/",
            "-d",
            f"csrfmiddlewaretoken={token}",
            "-d",
            "username=admin",
            "-d",
            "password=serving-test-password-1",
            f"{origin}/login/",
        )
        # Signed in: Django saw HTTPS through X-Forwarded-Proto (no redirect loop, CSRF ok).
        assert status.startswith("302 https://console.example.com"), status
        assert "login" not in status
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        console.kill_everything()
