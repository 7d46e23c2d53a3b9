"""A registry's request slots (imagesync/sync/limits.py) while this process's threads hand them
to each other: the registry's cap holds across processes, nothing stays locked when the
requests end, and another process waiting for a slot gets one while this one is busy."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from imagesync.sync import limits
from imagesync.sync.limits import FileSlots, RedisSlots

ROOT = Path(__file__).resolve().parent.parent


def _hammer(slots_of_each: list, threads_each: int, requests_each: int, hold: float):
    """Threads_each threads per slots object, each making requests_each "requests" of `hold`
    seconds; the most requests ever inside at once, across all of them."""
    inside, most, lock = [0], [0], threading.Lock()

    def work(slots):
        for _ in range(requests_each):
            with slots:
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(hold)
                with lock:
                    inside[0] -= 1

    threads = [
        threading.Thread(target=work, args=(slots,))
        for slots in slots_of_each
        for _ in range(threads_each)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return most[0]


def _all_free(paths: list[str]) -> bool:
    """Whether another open file (as another process would have) can lock every slot file."""
    for path in paths:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
    return True


def test_two_processes_handing_slots_over_never_exceed_the_cap(tmp_path):
    # Two FileSlots on the same files open their own descriptors, as two processes would.
    first, second = FileSlots(tmp_path / "slot", 3), FileSlots(tmp_path / "slot", 3)
    assert _hammer([first, second], threads_each=6, requests_each=25, hold=0.002) == 3
    assert _all_free(first.paths), "a slot file stayed locked after the last request"
    assert first._kept == [] and second._kept == []


def test_a_slot_is_handed_over_without_giving_back_its_file(tmp_path, monkeypatch):
    slots = FileSlots(tmp_path / "slot", 1)
    opened = []
    real_open = os.open
    monkeypatch.setattr(
        limits.os, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k)
    )
    left, lock = [80], threading.Lock()

    def work():
        while True:
            with lock:
                if not left[0]:
                    return
                left[0] -= 1
            with slots:
                time.sleep(0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 80 requests through one slot by 4 threads: while another thread waited, the file stayed
    # locked and went to it; it was given back only when nobody waited -- the last few
    # requests -- or after HAND_OVER_SECONDS.
    assert 1 <= len(opened) <= 6, len(opened)
    assert _all_free(slots.paths)


def test_another_process_gets_a_slot_while_this_one_keeps_them_busy(tmp_path):
    slots = FileSlots(tmp_path / "slot", 2)
    stop = threading.Event()
    done = [0]

    def busy():
        while not stop.is_set():
            with slots:
                time.sleep(0.003)
            done[0] += 1

    threads = [threading.Thread(target=busy) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        before = done[0]
        code = (
            "import sys, time; from imagesync.sync.limits import FileSlots\n"
            f"slots = FileSlots({str(tmp_path / 'slot')!r}, 2)\n"
            "with slots: pass\n"
            "print('in')\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        after = done[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert other.stdout.strip() == "in", other.stderr
    assert after > before + 50, "this process was not busy all the while"
    assert _all_free(slots.paths)


@pytest.fixture
def redis_server(redis_url, settings):
    import redis

    settings.REDIS_URL = redis_url  # where the slots' process keeps its "alive" key
    return redis.Redis.from_url(redis_url)


def test_redis_slots_handed_over_keep_the_cap_and_leave_nothing_held(redis_server):
    key = f"test:slots:{uuid.uuid4().hex}"
    first = RedisSlots(redis_server, key, 2)
    second = RedisSlots(redis_server, key, 2)
    try:
        assert _hammer([first, second], threads_each=5, requests_each=15, hold=0.002) == 2
        assert redis_server.zcard(key) == 0, "a slot stayed held after the last request"
    finally:
        redis_server.delete(key)


def test_the_alive_key_is_kept_where_the_slots_are(redis_server, redis_url, settings):
    """A process that first used another Redis database (a test worker's own, say) keeps its
    "alive" key in the slots' database once REDIS_URL points there: else its own slots look
    like a dead process's, are taken back, and more requests than the cap run at once."""
    parts = urlsplit(redis_url)
    database = int(parts.path.lstrip("/") or 0)
    settings.REDIS_URL = urlunsplit(parts._replace(path=f"/{(database + 1) % 16}"))
    limits._redis()  # the keep-alive starts in that other database
    settings.REDIS_URL = redis_url
    key = f"test:slots:{uuid.uuid4().hex}"
    first = RedisSlots(redis_server, key, 2)
    second = RedisSlots(redis_server, key, 2)
    try:
        assert _hammer([first, second], threads_each=5, requests_each=15, hold=0.002) == 2
    finally:
        redis_server.delete(key)
