"""`bin/run` as a user starts it: gunicorn serves the console, whitenoise the static files,
supervisord restarts a process that dies, and SIGTERM (or Ctrl-C) leaves nothing behind.

Each test starts the real `bin/run` on a free loopback port with its own var/ directory and
SQLite database (the embedded default) and looks at its processes through /proc.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.support.processes import (
    ConsoleProcess,
    alive,
    descendants,
    http_get,
    session_members,
)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    running = ConsoleProcess(tmp_path_factory.mktemp("serving"))
    try:
        running.wait_until_serving()
        yield running
    finally:
        running.kill_everything()


def wait_for(condition, timeout: float, what: str, console: ConsoleProcess):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s; bin/run's log:\n{console.output()}")


def test_it_serves_the_sign_in_page_through_gunicorn(console):
    status, headers, body = http_get(console.url("/login/"))
    assert status == 200
    assert headers["Server"] == "gunicorn"
    assert b'name="password"' in body
    # gunicorn writes the access log line after sending the answer, and supervisord passes it
    # on a moment later: wait for it rather than read the log at once.
    line = r'"GET /login/ HTTP/1.1" 200'
    wait_for(lambda: re.search(line, console.output()), 10, "no access log line", console)


def test_static_files_have_hashed_names_and_far_future_cache_headers(console):
    page = http_get(console.url("/login/"))[2].decode()
    stylesheet = re.search(r'href="(/static/imagesync/css/console\.[0-9a-f]{12}\.css)"', page)
    assert stylesheet, "the page does not link the stylesheet by a content-hashed name"
    status, headers, body = http_get(console.url(stylesheet[1]), {"Accept-Encoding": "gzip"})
    assert status == 200
    assert "immutable" in headers["Cache-Control"]
    max_age = int(re.search(r"max-age=(\d+)", headers["Cache-Control"])[1])
    assert max_age >= 365 * 24 * 3600
    assert headers["Content-Encoding"] == "gzip"
    assert body[:2] == b"\x1f\x8b"


def test_a_killed_worker_is_restarted_without_orphans_while_the_web_keeps_serving(console):
    main = wait_for(console.qcluster_main, 60, "no qcluster running", console)
    # The sentinel, pusher, monitor and the two worker processes below the main process.
    below = wait_for(
        lambda: len(descendants(main.pid)) >= 5 and descendants(main.pid),
        60,
        "qcluster did not start its processes",
        console,
    )
    old_cluster = {proc.pid for proc in below} | {main.pid}

    os.kill(main.pid, signal.SIGKILL)
    answers = []

    def restarted():
        answers.append(http_get(console.url("/login/"))[0])
        # The old cluster's children are forked from its main (same command line) and are
        # re-parented to bin/run when it dies: until they are gone one of them can look like
        # a qcluster main. Only a process that was not in the old cluster counts.
        new = console.qcluster_main()
        return new if new and new.pid not in old_cluster and not alive(old_cluster) else None

    new_main = wait_for(restarted, 60, "the worker was not restarted cleanly", console)
    assert set(answers) == {200}, "the console stopped serving while the worker restarted"
    assert new_main.pid not in old_cluster
    log = console.output()
    assert f"qcluster (pid {main.pid}) was killed by SIGKILL" in log
    assert "exited: worker" in log and "spawned: 'worker'" in log


def test_a_killed_web_server_is_restarted(console):
    master = wait_for(console.gunicorn_master, 30, "no gunicorn running", console)
    old_web = {proc.pid for proc in console.processes() if proc.ppid == master.pid}
    os.kill(master.pid, signal.SIGKILL)

    def serving_again():
        new = console.gunicorn_master()
        try:
            ok = http_get(console.url("/login/"), timeout=5)[0] == 200
        except OSError:
            ok = False
        return new if new and new.pid != master.pid and ok else None

    wait_for(serving_again, 60, "the web server was not restarted", console)
    # gunicorn's own workers notice their master is gone and leave.
    wait_for(lambda: not alive(old_web), 30, "the old web processes are still there", console)
    assert "exited: web" in console.output()


def test_sigterm_stops_every_process_it_started(tmp_path):
    running = ConsoleProcess(tmp_path)
    try:
        running.wait_until_serving()
        wait_for(running.qcluster_main, 60, "no qcluster running", running)

        # supervisord's programs, gunicorn's and qcluster's processes (qcluster starts its
        # children a moment after its main process, later still on a busy machine)
        def all_started() -> set[int] | None:
            pids = {proc.pid for proc in running.processes()}
            return pids if len(pids) >= 8 else None

        started = wait_for(all_started, 60, "fewer than 8 processes running", running)

        session = running.process.pid  # bin/run runs in a session of its own
        assert running.stop(timeout=60) == 0
        wait_for(lambda: not alive(started), 10, "processes were left behind", running)
        # Nor any orphan started after the count (an orphan is no descendant any more).
        assert session_members(session) == []
        with pytest.raises(OSError):
            http_get(running.url("/login/"), timeout=2)
    finally:
        running.kill_everything()
