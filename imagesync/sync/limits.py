"""Per-registry limits that hold across every worker process: at most `max_concurrency`
requests at once and at most `requests_per_second`, however many processes sync. A slot is
held around one request, or around one connection's pipelined requests
(`Transport.request_many`), which the registry answers one at a time: either way the registry
works on at most `max_concurrency` requests at once.

With REDIS_URL set (several processes, possibly on several machines, share one Redis) the
limits live in Redis; without it (the embedded default: every process on one machine) they are
lock files under var/locks, whose locks the kernel releases when a process dies. Either way a
slot held by a process that was killed is given back: a Redis slot names its process, which
keeps a short-lived "alive" key fresh while it runs, and a slot whose process's key expired is
taken back within ALIVE_SECONDS; a file lock ends with its process.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings

POLL_SECONDS = 0.005  # between attempts to take a slot while all are taken
LEASE_SECONDS = 3600  # a Redis slot is given back after this long in any case
ALIVE_SECONDS = 6  # a process that stopped refreshing its "alive" key this long is dead
HAND_OVER_SECONDS = 1.0  # a slot handed between this process's threads is given back after


def shared_limits(registry_id: int, max_concurrency: int, requests_per_second: float | None):
    """(slots, limiter) for one registry: `slots` is a context manager held around each
    request, `limiter.wait()` is called before each request."""
    if settings.REDIS_URL:
        client = _redis()
        return (
            RedisSlots(client, f"imagesync:registry:{registry_id}:slots", max_concurrency),
            RedisRateLimiter(client, f"imagesync:registry:{registry_id}:next", requests_per_second),
        )
    directory = Path(settings.VAR_DIR) / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    return (
        FileSlots(directory / f"registry-{registry_id}-slot", max_concurrency),
        FileRateLimiter(directory / f"registry-{registry_id}-rate", requests_per_second),
    )


_redis_client = None
_redis_lock = threading.Lock()
_process_id = ""  # this process's name in the slots it holds, with the pid it was made for
_redis_url = ""  # where this process's "alive" key is kept: the slots' server and database


def _redis():
    global _redis_client, _process_id, _redis_url
    with _redis_lock:
        url = settings.REDIS_URL
        if (
            _redis_client is None
            or not _process_id.endswith(f":{os.getpid()}")
            or url != _redis_url  # (tests point REDIS_URL elsewhere)
        ):
            import redis

            _redis_client = redis.Redis.from_url(url)
            _redis_url = url
            _process_id = f"{uuid.uuid4().hex}:{os.getpid()}"
            # Alive before its first slot, or another process could take that slot back.
            _redis_client.set(f"imagesync:alive:{_process_id}", 1, ex=ALIVE_SECONDS)
            threading.Thread(
                target=_keep_alive, args=(_redis_client, _process_id), daemon=True
            ).start()
        return _redis_client


def _keep_alive(client, process_id: str) -> None:
    """Refresh this process's "alive" key until the process ends."""
    while True:
        try:
            client.set(f"imagesync:alive:{process_id}", 1, ex=ALIVE_SECONDS)
        except Exception:  # Redis away for a moment: the requests fail on their own
            pass
        time.sleep(ALIVE_SECONDS / 3)


# Take a slot: drop expired leases and slots of processes that are no longer alive, then add
# ours if fewer than the limit are held. Redis runs a script atomically, and TIME is Redis's
# clock, the same for every machine.
_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
local held = redis.call('ZRANGE', KEYS[1], 0, -1)
if #held >= tonumber(ARGV[1]) then
  for _, member in ipairs(held) do
    local owner = string.match(member, '^([^/]+)/')
    if owner and redis.call('EXISTS', 'imagesync:alive:' .. owner) == 0 then
      redis.call('ZREM', KEYS[1], member)
    end
  end
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
"""

# The start time of the caller's request: requests are spaced `interval` apart (token spacing).
_NEXT_START = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local start = math.max(t, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(start + tonumber(ARGV[1])), 'EX', 3600)
return tostring(start - t)
"""


class _HandOver:
    """The local side of a cross-process slot (`FileSlots`, `RedisSlots`): the threads of this
    process first wait for one of `limit` local permits (woken as soon as one is given back, no
    polling), and a thread that ends a request while another thread of this process waits for
    a slot hands its slot over as it is -- the file still locked, the Redis member still held
    -- instead of giving it back and taking it again. Each give-back and take is a system call
    or a round trip, and each lets another thread take the GIL for up to its switch interval:
    in a sync of 10,000 tags these were a third of the request threads' samples. A slot is
    held at most HAND_OVER_SECONDS from its taking before it is given back, and then this
    process takes no new slot for two polls, so that another process waiting for one gets its
    turn (it polls every POLL_SECONDS); a slot nobody here waits for is given back at once."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._permits = threading.BoundedSemaphore(self.limit)
        self._lock = threading.Lock()
        self._wanted = 0  # threads of this process in __enter__, not holding a slot yet
        self._kept: list = []  # slots handed over, waiting for one of those threads
        self._held = threading.local()
        self._pause_until = 0.0  # no new slot before (monotonic): another process's turn

    def __enter__(self):
        with self._lock:
            self._wanted += 1
        try:
            self._permits.acquire()
            try:
                slot = self._take()
            except BaseException:
                self._permits.release()
                raise
        finally:
            with self._lock:
                self._wanted -= 1
                unwanted = self._kept[self._wanted :]
                del self._kept[self._wanted :]
            for each in unwanted:  # handed over to a thread that took another slot
                self._give_back(each)
        self._held.slot = slot
        return self

    def __exit__(self, *exc_info) -> None:
        slot = self._held.slot
        self._held.slot = None
        now = time.monotonic()
        with self._lock:
            keep = len(self._kept) < self._wanted
            if keep and now - slot[-1] >= HAND_OVER_SECONDS:
                keep = False
                self._pause_until = now + 2 * POLL_SECONDS
            if keep:
                self._kept.append(slot)
        try:
            if not keep:
                self._give_back(slot)
        finally:
            self._permits.release()

    def _take(self):
        """A slot, as a tuple whose last item is the monotonic time it was taken: a kept one,
        else a new one (polling while other processes hold them all)."""
        while True:
            with self._lock:
                if self._kept:
                    return self._kept.pop()
            if time.monotonic() >= self._pause_until:
                slot = self._try_new()
                if slot is not None:
                    return slot
            time.sleep(POLL_SECONDS)

    def _try_new(self):
        raise NotImplementedError

    def _give_back(self, slot) -> None:
        raise NotImplementedError


class RedisSlots(_HandOver):
    """`limit` members of a Redis sorted set, handed over between this process's threads
    (`_HandOver`): only slots held by other processes are ever polled for."""

    def __init__(self, client, key: str, limit: int) -> None:
        super().__init__(limit)
        self.client, self.key = client, key
        self._acquire = client.register_script(_ACQUIRE)

    def _try_new(self):
        _redis()  # (re)starts the keep-alive of this process, e.g. after a fork
        token = f"{_process_id}/{uuid.uuid4().hex}"
        if self._acquire(keys=[self.key], args=[self.limit, LEASE_SECONDS, token]):
            return (token, time.monotonic())
        return None

    def _give_back(self, slot) -> None:
        self.client.zrem(self.key, slot[0])


class RedisRateLimiter:
    def __init__(self, client, key: str, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.key = key
        self._next_start = client.register_script(_NEXT_START) if self.interval else None

    def wait(self) -> None:
        if not self.interval:
            return
        delay = float(self._next_start(keys=[self.key], args=[self.interval]))
        if delay > 0:
            time.sleep(delay)


class FileSlots(_HandOver):
    """`limit` lock files; holding a request slot is holding an exclusive lock on one. Slots
    are handed over between this process's threads (`_HandOver`), and a thread tries first
    the file given back last: lock files are only polled for while other processes hold
    them."""

    def __init__(self, prefix: Path, limit: int) -> None:
        super().__init__(limit)
        self.paths = [f"{prefix}-{i}" for i in range(self.limit)]
        self._free = list(range(len(self.paths)))  # files no thread of this process holds

    def _try_new(self):
        with self._lock:
            candidates = list(self._free)
        for index in candidates:
            with self._lock:
                if index not in self._free:
                    continue
                self._free.remove(index)
            fd = os.open(self.paths[index], os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process holds it
                os.close(fd)
                with self._lock:
                    self._free.append(index)
                continue
            return (index, fd, time.monotonic())
        return None

    def _give_back(self, slot) -> None:
        index, fd, _taken = slot
        os.close(fd)  # closing the descriptor releases its lock
        with self._lock:
            self._free.insert(0, index)


class FileRateLimiter:
    """The next permitted start time in a file, read and written under an exclusive lock."""

    def __init__(self, path: Path, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.path = path

    def wait(self) -> None:
        if not self.interval:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 64, 0).decode().strip()
            now = time.time()
            start = max(now, float(raw) if raw else 0.0)
            payload = f"{start + self.interval:.6f}".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload, 0)
        finally:
            os.close(fd)
        if start > now:
            time.sleep(start - now)
