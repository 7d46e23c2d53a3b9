"""Pipelined requests (imagesync/registries/lane.py `Lane.send_many`, `Transport.request_many`,
the OCI client's `_pipelined`): several GETs and HEADs on one connection before their answers
come back, over a real socket and against a real Distribution registry.

What a user would notice: the same answers and the same images as one request at a time, each
request sent once and byte for byte as before, the registry never serving more than
`max_concurrency` connections at once, and a server that does not pipeline well costing time,
never an image.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import random
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from requests.structures import CaseInsensitiveDict

from imagesync.registries.base import ClientConfig, Transport
from imagesync.registries.lane import Lane, _Reader, _Response
from imagesync.registries.oci import OciClient
from tests.support.counting_proxy import CountingProxy
from tests.support.fault_proxy import FaultProxy, Rule
from tests.support.registry_seed import seed
from tests.test_transport_lane import RESPONSES, _certificate, _serve, _state

HEADERS = CaseInsensitiveDict({"User-Agent": "t", "Accept": "*/*", "Accept-Encoding": "gzip"})
TIMEOUT = (2.0, 2.0)


# --- reading answers one after another from one stream ----------------------------------------


class _Pieces:
    """A socket whose bytes arrive in pieces of random sizes (1 to 40 bytes)."""

    def __init__(self, data: bytes, seed_: int) -> None:
        self.data, self.random = data, random.Random(seed_)

    def recv(self, _size: int) -> bytes:
        piece = self.data[: self.random.randint(1, 40)]
        self.data = self.data[len(piece) :]
        return piece


class _Kept(io.BytesIO):
    def close(self) -> None:  # a response closes its file when done: the next one reads on
        pass


class _Shared:
    """The oracle: http.client reading each answer from one file that never reads ahead."""

    def __init__(self, data: bytes) -> None:
        self.file = _Kept(data)

    def makefile(self, _mode: str) -> _Kept:
        return self.file


def _answers(response_class, sock, method: str) -> list:
    """Each answer's state, one after another, until one fails or ends the connection."""
    found = []
    for _ in range(4):
        response = response_class(sock, method=method)
        try:
            response.begin()
        except Exception as exc:  # noqa: BLE001 - the same error from both is what counts
            found.append((type(exc), str(exc)))
            break
        state = {
            name: getattr(response, name)
            for name in ("status", "reason", "version", "chunked", "length", "will_close")
        }
        state["message"], state["body"] = _state(response.msg), response.read()
        found.append(state)
        if state["will_close"]:
            break
    return found


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("data", RESPONSES)
def test_answers_pipelined_on_one_stream_read_as_http_client_reads_them(data, method):
    before = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    after = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"
    stream = before + data + after
    expected = _answers(http.client.HTTPResponse, _Shared(stream), method)
    assert len(expected) >= 2
    for seed_ in range(5):
        assert _answers(_Response, _Reader(_Pieces(stream, seed_)), method) == expected


# --- a scripted server on a raw socket ------------------------------------------------------------


class _Script:
    """A server that reads request heads and answers them as told; it records every head it
    got, per connection, and how many heads it had before its first answer on each."""

    def __init__(
        self,
        *,
        wait_for: int = 1,
        close_after: int = 0,
        cut_after: int = 0,
        hang_after: int = 0,
        big: str = "",
        cookie: str = "",
    ) -> None:
        self.wait_for, self.close_after, self.cut_after = wait_for, close_after, cut_after
        self.hang_after, self.big, self.cookie = hang_after, big, cookie
        self.heads: list[list[bytes]] = []  # per connection
        self.before_first_answer: list[int] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client may reset it: that is its right
            self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        heads: list[bytes] = []
        self.heads.append(heads)
        buffer, answered = b"", 0
        conn.settimeout(1.0)
        while not self.stop.is_set():
            while b"\r\n\r\n" in buffer:
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                heads.append(head + b"\r\n\r\n")
            waiting = answered == 0 and len(heads) < self.wait_for
            if answered < len(heads) and not waiting:
                if answered == 0:
                    self.before_first_answer.append(len(heads))
                if self.hang_after and answered >= self.hang_after:
                    self.stop.wait(5)
                    return
                if self.cut_after and answered >= self.cut_after:
                    self._close_gently(conn)  # requests unanswered, no warning
                    return
                answered += 1
                last = answered == self.close_after
                conn.sendall(self._answer(heads[answered - 1], last))
                if last:
                    self._close_gently(conn)
                    return
                continue
            try:
                data = conn.recv(65536)
            except TimeoutError:
                if waiting:
                    self.wait_for = 0  # it will not send more before an answer: answer
                    continue
                return
            if not data:
                return
            buffer += data

    @staticmethod
    def _close_gently(conn: socket.socket) -> None:
        """Close as Go's and nginx's servers do: the sending side first, then read what the
        client still sends, so that its unread requests do not turn the close into a reset
        (which could discard answers the client has not read yet)."""
        conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def _answer(self, head: bytes, last: bool) -> bytes:
        method, path = head.split(b" ")[:2]
        body = path * (1000 if self.big and path.endswith(self.big.encode()) else 1)
        lines = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body)]
        if self.cookie and path.endswith(self.cookie.encode()):
            lines.append(b"Set-Cookie: session=abc; Path=/")
        if last:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if method == b"HEAD" else body)


@pytest.fixture
def script():
    made: list[_Script] = []

    def make(**how) -> _Script:
        made.append(_Script(**how))
        return made[-1]

    yield make
    for each in made:
        each.close()


def _asked(url: str, count: int) -> list[tuple[str, str]]:
    return [("HEAD" if i % 3 else "GET", f"{url}/v2/app/manifests/t{i}") for i in range(count)]


def test_pipelined_requests_go_before_the_answers_byte_for_byte_as_one_by_one(script):
    one_by_one, pipelined = script(), script(wait_for=8)
    asked = _asked(one_by_one.url, 12)
    lane = Lane(4)
    alone = [lane.send(m, u, HEADERS, TIMEOUT, True, None) for m, u in asked]
    together = lane.send_many(_asked(pipelined.url, 12), HEADERS, TIMEOUT, True, None, depth=8)
    # The server had all eight heads before it answered the first: they went pipelined.
    assert pipelined.before_first_answer == [8]
    assert one_by_one.before_first_answer == [1]
    assert len(pipelined.heads) == 1  # one connection for all twelve
    strip = lambda h: h.replace(pipelined.url[7:].encode(), one_by_one.url[7:].encode())  # noqa: E731
    assert [strip(h) for h in pipelined.heads[0]] == one_by_one.heads[0]
    assert [(r.status_code, r.content) for r in together] == [
        (r.status_code, r.content) for r in alone
    ]
    assert together[1].content == b""  # a HEAD's answer has no body
    assert together[0].content == b"/v2/app/manifests/t0"


def test_a_server_closing_cleanly_gets_the_rest_on_a_new_connection(script):
    server = script(close_after=3)  # as nginx after `keepalive_requests`: Connection: close
    asked = [("GET", f"{server.url}/v2/app/manifests/t{i}") for i in range(10)]
    found = Lane(4).send_many(asked, HEADERS, TIMEOUT, True, None, depth=4)
    assert [r.content for r in found] == [f"/v2/app/manifests/t{i}".encode() for i in range(10)]
    # Three answers a connection; what the server did not answer went again on the next one.
    firsts = [heads[0].split(b" ")[1] for heads in server.heads]
    assert firsts == [
        b"/v2/app/manifests/t0",
        b"/v2/app/manifests/t3",
        b"/v2/app/manifests/t6",
        b"/v2/app/manifests/t9",
    ]


def test_a_server_cutting_a_pipelined_connection_is_asked_one_by_one_from_then_on(script):
    server = script(cut_after=1)
    lane = Lane(4)
    found = lane.send_many(_asked(server.url, 6), HEADERS, TIMEOUT, True, None, depth=4)
    assert found[0] is not None and found[0].content == b"/v2/app/manifests/t0"
    assert found[1:] == [None] * 5  # left to the caller, which sends them one by one
    again = lane.send_many(_asked(server.url, 6), HEADERS, TIMEOUT, True, None, depth=4)
    assert again == [None] * 6
    assert len(server.heads) == 1  # no second pipelined connection
    # One by one, the same server answers.
    answer = lane.send("GET", f"{server.url}/v2/app/manifests/t1", HEADERS, TIMEOUT, True, None)
    assert answer.content == b"/v2/app/manifests/t1"


def test_a_server_that_stops_answering_pipelined_requests_costs_one_timeout(script):
    server = script(hang_after=1)
    lane = Lane(4)
    started = time.monotonic()
    found = lane.send_many(_asked(server.url, 5), HEADERS, (2.0, 0.5), True, None, depth=4)
    assert time.monotonic() - started < 4
    assert found[0] is not None and found[1:] == [None] * 4
    assert (
        lane.send_many(_asked(server.url, 5), HEADERS, TIMEOUT, True, None, depth=4) == [None] * 5
    )


def test_an_answer_too_large_is_left_to_the_caller_and_pipelining_goes_on(script):
    server = script(big="t3")
    lane = Lane(4)
    asked = [("GET", f"{server.url}/v2/app/manifests/t{i}") for i in range(6)]
    found = lane.send_many(asked, HEADERS, TIMEOUT, True, 1000, depth=4)
    assert [r is not None for r in found] == [True, True, True, False, False, False]
    found = lane.send_many(asked[4:], HEADERS, TIMEOUT, True, 1000, depth=4)
    assert [r.content for r in found] == [b"/v2/app/manifests/t4", b"/v2/app/manifests/t5"]
    assert len(server.heads) == 2  # the connection with the large answer was not kept


def test_a_cookie_set_midway_sends_the_later_requests_again_with_it(script):
    server = script(cookie="t2")
    transport = Transport(ClientConfig(url=server.url, allow_insecure_http=True))
    found = transport.request_many([("GET", f"v2/app/manifests/t{i}") for i in range(5)])
    assert [r is not None for r in found] == [True, True, True, False, False]
    assert transport.session.cookies.get("session") == "abc"
    transport.close()


def test_pipelining_off_or_not_possible_sends_nothing(script):
    server = script()
    for options in ({"pipeline_depth": 1}, {"direct_http": False}):
        transport = Transport(
            ClientConfig(url=server.url, allow_insecure_http=True, options=options)
        )
        assert transport.request_many([("HEAD", "v2/a/manifests/1")] * 3) == [None] * 3
        transport.close()
    assert server.heads == []


# --- against a real registry --------------------------------------------------------------------


@pytest.mark.registry
@pytest.mark.parametrize("previous", [None, {}], ids=["tags resolved by HEAD", "new tags by GET"])
def test_a_listing_pipelined_is_the_listing_one_by_one_with_each_request_sent_once(
    fresh_registry, previous
):
    seeded = seed(fresh_registry, repos=3, tags=12, prefix="pipe", via="storage")

    pipelined_paths: set[str] = set()

    def listing(**options):
        config = fresh_registry.client_config(max_concurrency=2, **options)
        mark = fresh_registry.log_mark()
        with OciClient(config) as client:
            asked_many = client.transport.request_many

            def spy(asked, headers=None):
                answers = asked_many(asked, headers)
                for (_method, path), answer in zip(asked, answers, strict=True):
                    if answer is not None and answer.status_code == 200:
                        pipelined_paths.add("/" + path)
                return answers

            client.transport.request_many = spy
            found = {
                repo.path: {
                    i.tag: (i.digest, i.platforms, i.size, i.created)
                    for i in client.list_images(repo, previous=previous)
                }
                for repo in client.list_repositories()
            }
        return found, fresh_registry.served(since=mark)

    pipelined, sent = listing()
    alone, sent_alone = listing(pipeline_depth=1)
    assert pipelined == alone
    assert {p: {t: row[0] for t, row in tags.items()} for p, tags in pipelined.items()} == (
        seeded.images
    )
    assert all(row[1] and row[3] for tags in pipelined.values() for row in tags.values())
    answered = sorted((r.method, r.uri) for r in sent if r.status == 200)
    assert len(answered) == len(set(answered))  # nothing asked twice
    # The same requests as one by one: a manifest request per tag (and a GET per digest after
    # a HEAD), a config blob per image.
    assert answered == sorted((r.method, r.uri) for r in sent_alone if r.status == 200)
    assert sum("/blobs/" in uri for _, uri in answered) == 36
    # Every manifest and config blob was answered pipelined (none left to one by one), the
    # manifests by digest of the tags first seen by HEAD among them.
    assert {uri for _, uri in answered if "/manifests/" in uri or "/blobs/" in uri} == (
        pipelined_paths
    )
    assert sum("/manifests/sha256:" in uri for uri in pipelined_paths) == (
        36 if previous is None else 0
    )


@pytest.mark.registry
def test_pipelined_requests_never_keep_more_connections_busy_than_max_concurrency(
    fresh_registry,
):
    seeded = seed(fresh_registry, repos=2, tags=24, prefix="far", via="storage")
    proxy = CountingProxy("127.0.0.1", urlsplit(fresh_registry.url).port, latency=0.05).start()
    try:
        config = fresh_registry.client_config(max_concurrency=2)
        config.url = proxy.url
        with OciClient(config) as client:
            found = {
                repo.path: {i.tag: i.digest for i in client.list_images(repo)}
                for repo in client.list_repositories()
            }
    finally:
        proxy.stop()
    assert found == seeded.images
    assert proxy.max_busy_connections <= 2
    assert proxy.max_in_flight > 2  # requests went before the earlier ones' answers


# --- over TLS and through every kind of body --------------------------------------------------

MIXED = [
    ("GET", "v2/lib/app/manifests/v1.0"),
    ("HEAD", "v2/lib/app/manifests/v1.0"),
    ("GET", "gzip/m"),
    ("GET", "deflate/raw"),
    ("GET", "chunked/5000"),
    ("HEAD", "chunked/5000"),
    ("GET", "big/100000"),
    ("GET", "twice/links"),
]


def _seen(response) -> tuple:
    names = ("Content-Type", "Content-Length", "Docker-Content-Digest", "Link", "Content-Encoding")
    return response.status_code, response.content, [response.headers.get(n) for n in names]


@pytest.fixture
def lane_server(tmp_path):
    """tests/test_transport_lane.py's server (every kind of body), over http or https."""
    made = []

    def start(scheme: str):
        pem, context = _certificate(tmp_path, "127.0.0.1") if scheme == "https" else ("", None)
        httpd, url = _serve(context)
        made.append(httpd)
        return httpd, url, pem

    yield start
    for httpd in made:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_kind_of_answer_pipelined_is_the_answer_one_at_a_time(scheme, lane_server):
    httpd, url, pem = lane_server(scheme)
    transport = Transport(ClientConfig(url=url, allow_insecure_http=True, ca_bundle=pem))
    together = transport.request_many(MIXED)
    assert len(httpd.connections) == 1  # one connection, the answers read in turn
    alone = [transport.request(method, path) for method, path in MIXED]
    assert [_seen(r) for r in together] == [_seen(r) for r in alone]
    assert together[2].content.startswith(b'{"schemaVersion"')  # gzip undone
    assert len(together[6].content) == 100000
    transport.close()


@pytest.mark.registry
def test_config_blobs_served_elsewhere_are_no_longer_asked_for_ahead(fresh_registry):
    seeded = seed(fresh_registry, repos=3, tags=12, prefix="cdn", via="storage")
    proxy = FaultProxy(fresh_registry.url).start()
    proxy.add(Rule("redirect", path=r"^/v2/.*/blobs/"))
    try:
        config = fresh_registry.client_config(max_concurrency=2)
        config.url = proxy.url
        with OciClient(config) as client:
            found = {
                repo.path: {
                    i.tag: (i.digest, i.platforms) for i in client.list_images(repo, {}, {})
                }
                for repo in client.list_repositories()
            }
    finally:
        proxy.stop()
    assert {p: {t: d for t, (d, _) in tags.items()} for p, tags in found.items()} == seeded.images
    assert all(platforms for tags in found.values() for _, platforms in tags.values())
    # The first repository's twelve configs were asked for ahead, redirected, and asked again
    # one by one (following the redirect); the other repositories' only one by one.
    redirected = [s for s in proxy.seen if s.outcome == "redirect"]
    assert len(redirected) == 36 + 12
