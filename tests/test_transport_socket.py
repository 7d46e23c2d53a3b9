"""The transport's own request path, over a real socket: what it sends and what it gives back
are what plain requests would send and give back.

`Transport` skips work requests repeats on every request (the URL's parsing for a path built
from repository and tag names; the pool, proxy and TLS settings of a host; the cookie jar's
parsing of a response that sets no cookie). These tests hold it to requests itself, as the
oracle, against a local HTTP server (the `responses` mock replaces the very adapter code this
is about, so it cannot check it).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter

from imagesync.registries.base import ClientConfig, Transport, _Adapter, _Session


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        self.server.connections.add(self.client_address)
        if self.path.startswith("/moved"):
            self.send_response(307)
            self.send_header("Location", "/v2/lib/app/manifests/v1.0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200 if "missing" not in self.path else 404)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Docker-Content-Digest", "sha256:" + "ab" * 32)
        if "cookie" in self.path:
            self.send_header("Set-Cookie", "sid=s1; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(b'{"path": "%s"}' % self.path.encode())

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(b'{"path": "%s"}' % self.path.encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.seen, httpd.connections = [], set()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _transport(url: str) -> Transport:
    return Transport(ClientConfig(url=url, allow_insecure_http=True))


def _what_a_user_sees(response: requests.Response) -> tuple:
    return (
        response.status_code,
        response.reason,
        response.url,
        response.encoding,
        sorted((k.lower(), v) for k, v in response.headers.items() if k.lower() != "date"),
        response.content,
        dict(response.cookies),
        [(r.status_code, r.url) for r in response.history],
    )


PATHS = [
    "/v2/lib/app/manifests/v1.0",
    "/v2/lib/app/manifests/missing",
    "/v2/team_1/a.b-c/manifests/1.2.3-rc_1",
    "/moved/v2/lib/app",
    "/v2/lib/app/manifests/cookie",  # last: with a cookie kept, every request goes by requests
]


@pytest.mark.parametrize("direct", [True, False], ids=["direct lane", "requests' adapter"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_responses_over_a_socket_are_those_requests_gives(server, method, direct):
    httpd, url = server
    t = _transport(url)
    t.session.direct = direct
    plain = requests.Session()
    seen = httpd.seen
    for path in PATHS:
        before = len(seen)
        ours = t.request(method, path, ok=(200, 404), headers={"Accept": "application/json"})
        middle = len(seen)
        theirs = plain.request(method, url + path, headers={"Accept": "application/json"})
        assert _what_a_user_sees(ours) == _what_a_user_sees(theirs), path
        sent = [(m, p, {k: v for k, v in h.items() if k != "User-Agent"}) for m, p, h in seen]
        assert sent[before:middle] == sent[middle:], path  # what went on the wire
    assert len(seen) == 2 * (len(PATHS) + 1)  # the redirect's second request too
    assert t.session.cookies.get("sid") == "s1"  # the cookie is kept as requests keeps it
    assert bool(t.session.get_adapter(url).poolmanager.pools) != direct  # which path sent them


def test_one_connection_serves_a_series_of_requests_and_a_closed_pool_is_replaced(server):
    httpd, url = server
    t = _transport(url)
    t.session.direct = False  # requests' adapter and its pools (the lane's: test_transport_lane)
    for _ in range(5):
        assert t.request("HEAD", "/v2/lib/app/manifests/v1.0").status_code == 200
    assert len(httpd.connections) == 1  # the cached pool keeps the connection alive

    t.session.get_adapter(url).close()  # its pools are closed, not only forgotten
    assert t.request("GET", "/v2/lib/app/manifests/v1.0").json() == {
        "path": "/v2/lib/app/manifests/v1.0"
    }
    assert len(httpd.connections) == 2


@pytest.mark.parametrize(
    "url, proxies",
    [
        ("http://reg.example.com/v2/a/manifests/t", {}),
        ("http://reg.example.com/v2/a/manifests/t", {"http": "http://proxy.example:3128"}),
        ("https://reg.example.com/v2/a/manifests/t", {"http": "http://proxy.example:3128"}),
        ("https://reg.example.com/v2/a/manifests/t", {"https": "http://proxy.example:3128"}),
        ("http://reg.example.com/v2/a?n=1", {"all": "http://proxy.example:1080"}),
        ("http://reg.example.com/v2/", {"http://reg.example.com": "http://p.example:8080"}),
        ("http://other.example.com/v2/", {"http://reg.example.com": "http://p.example:8080"}),
    ],
)
def test_the_adapter_picks_the_url_and_proxy_requests_would(url, proxies):
    prepared = requests.Request("GET", url).prepare()
    ours, theirs = _Adapter(), HTTPAdapter()
    for _ in range(2):  # the second time from what the first one worked out
        assert ours.request_url(prepared, proxies) == theirs.request_url(prepared, proxies)
        pool = ours.get_connection_with_tls_context(prepared, True, proxies)
        expected = theirs.get_connection_with_tls_context(prepared, True, proxies)
        assert (type(pool), pool.host, pool.port, pool.proxy) == (
            type(expected),
            expected.host,
            expected.port,
            expected.proxy,
        )


@pytest.mark.parametrize("verify", [True, False])
def test_a_pool_gets_the_tls_settings_requests_gives_it(verify):
    prepared = requests.Request("GET", "https://reg.example.com/v2/").prepare()
    ours, theirs = _Adapter(), HTTPAdapter()
    for _ in range(2):
        pool = ours.get_connection_with_tls_context(prepared, verify)
        ours.cert_verify(pool, prepared.url, verify, None)
        expected = theirs.get_connection_with_tls_context(prepared, verify)
        theirs.cert_verify(expected, prepared.url, verify, None)
        assert (pool.cert_reqs, pool.ca_certs, pool.ca_cert_dir) == (
            expected.cert_reqs,
            expected.ca_certs,
            expected.ca_cert_dir,
        )


ORIGINS = [
    "http://127.0.0.1:5000",
    "https://reg.example.com",
    "https://REG.example.com",
    "http://[::1]:5000",
    "https://reg.example.com:0443",
    "https://xn--rg-1ia.example",
    "https://rég.example",
    "https://reg.example.com:",
]
PATH_CHARS = "ab/._-~%20?#;:@ éZ9"


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ORIGINS), st.text(PATH_CHARS, max_size=24))
def test_a_url_is_sent_unparsed_only_where_requests_would_send_it_unchanged(origin, path):
    url = f"{origin}/{path}"
    try:
        expected = requests.Request("GET", url).prepare().url
    except requests.exceptions.RequestException:
        expected = None
    if _Session()._is_prepared_url(url):
        assert expected == url


def test_a_registry_path_is_sent_unparsed():
    session = _Session()
    assert session._is_prepared_url("http://127.0.0.1:5000/v2/team/app.web_1/manifests/v1.2-rc")
    assert not session._is_prepared_url("http://127.0.0.1:5000/v2/app/../x")
    assert not session._is_prepared_url("https://REG.example.com/v2/")
