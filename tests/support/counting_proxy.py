"""An HTTP/1.1 proxy on loopback that delays each request and each response (a registry far
away) and counts the requests in flight through it, for the scale-out test and benchmark.

    proxy = CountingProxy("127.0.0.1", registry_port, latency=0.1).start()
    proxy.url             # http://127.0.0.1:PORT, give it to the client
    proxy.max_in_flight   # the most requests it ever held at once
    proxy.requests        # requests relayed
    proxy.span            # seconds from the first request to the last response
    proxy.mean_in_flight  # requests held on average over that span
    proxy.stop()

A request is in flight from the moment its head arrives until its response has been sent
back: a window inside the one in which the client holds its request slot, so the most seen
here bounds what the registry itself sees. asyncio relays bytes without a thread per
connection, so hundreds of delayed requests cost the machine little CPU.
"""

from __future__ import annotations

import asyncio
import threading
import time


class CountingProxy:
    def __init__(self, upstream_host: str, upstream_port: int, latency: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency = latency
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.busy = 0.0  # seconds of requests in flight, summed over the requests
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

    def reset_counts(self) -> None:
        self.max_in_flight = self.in_flight
        self.requests = 0
        self.busy = 0.0
        self.first_at = self.last_at = None

    def stop(self) -> None:
        async def close():
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, client_r, client_w) -> None:
        upstream_r = upstream_w = None
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
            while True:
                head = await _read_head(client_r)
                if head is None:
                    return
                method = head.split(b" ", 1)[0].upper()
                body = await client_r.readexactly(_content_length(head))
                self.in_flight += 1
                self.requests += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                started = time.monotonic()
                if self.first_at is None:
                    self.first_at = started
                try:
                    await asyncio.sleep(self.latency)
                    upstream_w.write(head + body)
                    await upstream_w.drain()
                    response = await _read_response(upstream_r, method)
                    await asyncio.sleep(self.latency)
                    client_w.write(response)
                    await client_w.drain()
                finally:
                    self.in_flight -= 1
                    self.last_at = time.monotonic()
                    self.busy += self.last_at - started
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()


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
