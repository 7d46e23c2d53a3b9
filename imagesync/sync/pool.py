"""The worker threads of one run, and the guard around their database work."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection

_sqlite_lock = threading.RLock()


@contextlib.contextmanager
def db_guard() -> Iterator[None]:
    """Serialize database work of the sync threads on SQLite (one writer at a time anyway, and
    the shared-cache test database raises instead of waiting); no-op on PostgreSQL."""
    if connection.vendor == "sqlite":
        with _sqlite_lock:
            yield
    else:
        yield


class WorkerPool:
    """`size` threads that call `handle(item)` for each submitted item and report what it
    returned; use as a context manager (the threads stop and close their database connections
    on exit)."""

    def __init__(self, size: int, name: str, handle: Callable[[Any], Any]) -> None:
        self._work: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._handle = handle
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, size))
        ]
        self.size = len(self._threads)

    def __enter__(self) -> WorkerPool:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join()

    def submit(self, item: Any) -> None:
        self._work.put(item)

    def report(self, value: Any) -> None:
        """From inside `handle`: a result before the one it returns (a thread that goes on
        with more work of its own reports each piece as it is done)."""
        self._done.put(value)

    def result(self, timeout: float) -> Any | None:
        """The next result, or None when none arrived within `timeout` seconds."""
        try:
            return self._done.get(timeout=timeout)
        except queue.Empty:
            return None

    def ready(self) -> list[Any]:
        """The results that arrived already, without waiting."""
        found = []
        while True:
            try:
                found.append(self._done.get_nowait())
            except queue.Empty:
                return found

    def _loop(self) -> None:
        try:
            while (item := self._work.get()) is not None:
                self._done.put(self._handle(item))
        finally:
            connection.close()  # each thread has its own connection: do not leak it
