"""An HTTP/1.1 proxy on loopback that delays each request and each response (a registry far
away) and counts the requests in flight through it, for the scale-out test and benchmark.

    proxy = CountingProxy("127.0.0.1", registry_port, latency=0.1).start()
    proxy.url                   # http://127.0.0.1:PORT, give it to the client
    proxy.max_in_flight         # the most requests it ever held at once
    proxy.max_busy_connections  # the most connections with a request in flight at once
    proxy.requests              # requests relayed
    proxy.span                  # seconds from the first request to the last response
    proxy.mean_in_flight        # requests held on average over that span
    proxy.mean_busy_connections # connections with a request in flight, on average over it
    proxy.stop()

Each direction of a connection is a delay line, as a network is: a request goes upstream
`latency` after its head and body arrived, and a response goes back `latency` after it came
from upstream, whatever else is on the way. So requests a client pipelines (sends before the
earlier ones are answered) travel together, and the registry answers them one after another
on its connection, as across a real network.

A request is in flight from the moment its head arrives until its response has been sent
back: a window inside the one in which the client holds its request slot. A connection is
busy while any of its requests is in flight; the registry works on at most one request of a
connection at a time, so the most busy connections bound what the registry itself works on at
once. asyncio relays bytes without a thread per connection, so hundreds of delayed requests
cost the machine little CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque


class CountingProxy:
    def __init__(self, upstream_host: str, upstream_port: int, latency: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency = latency
        self.in_flight = 0
        self.max_in_flight = 0
        self.busy_connections = 0
        self.max_busy_connections = 0
        self.requests = 0
        self.busy = 0.0  # seconds of requests in flight, summed over the requests
        self.connection_busy = 0.0  # seconds of connections busy, summed over the connections
        self.first_at: float | None = None  # when the first request since the reset came in
        self.last_at: float | None = None  # when the last request's response went out
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CountingProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        future.result(timeout=10)
        return self

    @property
    def span(self) -> float:
        """Seconds from the first request since the reset to the last response."""
        if self.first_at is None or self.last_at is None:
            return 0.0
        return max(0.0, self.last_at - self.first_at)

    @property
    def mean_in_flight(self) -> float:
        return self.busy / self.span if self.span else 0.0

    @property
    def mean_busy_connections(self) -> float:
        return self.connection_busy / self.span if self.span else 0.0

    def reset_counts(self) -> None:
        self.max_in_flight = self.in_flight
        self.max_busy_connections = self.busy_connections
        self.requests = 0
        self.busy = self.connection_busy = 0.0
        self.first_at = self.last_at = None

    def stop(self) -> None:
        async def close():
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, client_r, client_w) -> None:
        upstream_w = None
        outstanding: deque[float] = deque()  # when each request in flight here arrived
        busy_since = [0.0]  # when this connection's requests in flight last went from none
        tasks: list[asyncio.Task] = []
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
            methods: asyncio.Queue = asyncio.Queue()  # each request's method, in order
            upward: asyncio.Queue = asyncio.Queue()  # (due, bytes, None) to the registry
            back: asyncio.Queue = asyncio.Queue()  # (due, bytes, callback) to the client
            tasks = [
                asyncio.ensure_future(
                    self._requests(client_r, upward, methods, outstanding, busy_since)
                ),
                asyncio.ensure_future(self._deliver(upward, upstream_w)),
                asyncio.ensure_future(
                    self._responses(upstream_r, methods, back, outstanding, busy_since)
                ),
                asyncio.ensure_future(self._deliver(back, client_w)),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except OSError:
            return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()
            if outstanding:  # cut off with requests unanswered: they are in flight no more
                self.in_flight -= len(outstanding)
                self.busy_connections -= 1
                self.connection_busy += time.monotonic() - busy_since[0]
                outstanding.clear()

    async def _requests(self, reader, upward, methods, outstanding, busy_since) -> None:
        """Each request from the client: counted, and sent on `latency` after it arrived."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(asyncio.IncompleteReadError, OSError):
            while (head := await _read_head(reader)) is not None:
                body = await reader.readexactly(_content_length(head))
                started = time.monotonic()
                if self.first_at is None:
                    self.first_at = started
                if not outstanding:
                    busy_since[0] = started
                    self.busy_connections += 1
                    self.max_busy_connections = max(
                        self.max_busy_connections, self.busy_connections
                    )
                outstanding.append(started)
                self.in_flight += 1
                self.requests += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                methods.put_nowait(head.split(b" ", 1)[0].upper())
                upward.put_nowait((loop.time() + self.latency, head + body, None))

    async def _responses(self, reader, methods, back, outstanding, busy_since) -> None:
        """Each response from the registry, sent back `latency` after it came."""
        loop = asyncio.get_running_loop()

        def answered() -> None:
            started = outstanding.popleft()
            self.in_flight -= 1
            self.last_at = time.monotonic()
            self.busy += self.last_at - started
            if not outstanding:
                self.busy_connections -= 1
                self.connection_busy += self.last_at - busy_since[0]

        with contextlib.suppress(asyncio.IncompleteReadError, OSError):
            while True:
                response = await _read_response(reader, await methods.get())
                back.put_nowait((loop.time() + self.latency, response, answered))

    @staticmethod
    async def _deliver(queue, writer) -> None:
        """Write each item when it is due, in order; then call its callback."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while True:
                due, data, done = await queue.get()
                if (delay := due - loop.time()) > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
                if done is not None:
                    done()


async def _read_head(reader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def _read_response(reader, method: bytes) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        return head
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        return head + await _read_chunked(reader)
    return head + await reader.readexactly(_content_length(head))


async def _read_chunked(reader) -> bytes:
    parts = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";")[0], 16)
        parts.append(line)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return b"".join(parts)
