"""Start `bin/run` (or any command) for real and look at the processes below it via /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cmdline: str


def process_table() -> dict[int, Proc]:
    """Every live (not zombie) process of the machine."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, UnicodeDecodeError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            pid = int(entry.name)
            table[pid] = Proc(pid, int(fields[1]), cmdline)
    return table


def descendants(pid: int) -> list[Proc]:
    table = process_table()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [proc for proc in table.values() if proc.ppid == parent]
        found += children
        frontier += [child.pid for child in children]
    return found


def alive(pids: set[int]) -> set[int]:
    return pids & set(process_table())


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10):
    """(status, headers, body) of a GET; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


class ConsoleProcess:
    """`bin/run` on a free loopback port, with its own var/ directory and SQLite database (the
    embedded default), its output in `log`."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "bin-run.log"
        var = tmp / "var"
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
        }
        environment.update(
            BIND=f"127.0.0.1:{self.port}",
            IMAGESYNC_VAR_DIR=str(var),
            ADMIN_PASSWORD="serving-test-password-1",
            WEB_CONCURRENCY="2",
            Q_WORKERS="2",
            PYTHONUNBUFFERED="1",
        )
        environment.update(env)
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(
            [str(ROOT / "bin" / "run")],
            cwd=ROOT,
            env=environment,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def url(self, path: str) -> str:
        return self.base_url + path

    def wait_until_serving(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"bin/run ended early:\n{self.output()}")
            try:
                if http_get(self.url("/login/"), timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"bin/run did not serve within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> list[Proc]:
        return descendants(self.process.pid)

    def find(self, predicate) -> list[Proc]:
        return [proc for proc in self.processes() if predicate(proc)]

    def qcluster_main(self) -> Proc | None:
        """The qcluster process started by bin/worker (not one of qcluster's own children)."""
        table = {proc.pid: proc for proc in self.processes()}
        for proc in table.values():
            parent = table.get(proc.ppid)
            if "qcluster" in proc.cmdline and parent and "bin/worker" in parent.cmdline:
                return proc
        return None

    def gunicorn_master(self) -> Proc | None:
        for proc in self.processes():
            if "gunicorn" in proc.cmdline and proc.ppid == self.process.pid:
                return proc
        return None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM to bin/run; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._out.close()

    def kill_everything(self) -> None:
        """Last resort after a failed test: SIGKILL every process of bin/run's session (it has
        its own), again until none is left: a process started meanwhile (qcluster spawns its
        workers a moment after its start) would otherwise outlive the test as an orphan."""
        for _ in range(50):
            members = session_members(self.process.pid)
            if not members:
                break
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        self.process.wait(timeout=10)
        self._out.close()


def stat_fields() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command name) of every process: state
    first, then ppid, pgrp, session, ... (`man 5 proc`; field N there is index N - 3 here)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue


def session_members(session: int) -> list[int]:
    """Live processes of a session (orphans included, unlike a walk down from its leader)."""
    return [pid for pid, fields in stat_fields() if fields[0] != "Z" and int(fields[3]) == session]
