"""The direct lane (imagesync/registries/lane.py): a connection's plain GET and HEAD requests on
the console's own kept-alive connections, over a real socket.

Each test holds it to what a user of the console would notice: the same answers requests gives
(requests itself is the oracle where it can be), the same limits and error reasons, the same
proxies, ~/.netrc credentials and TLS checks, and connections that are reused and closed.
"""

from __future__ import annotations

import datetime
import gzip
import http.client
import io
import ipaddress
import random
import socket
import ssl
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imagesync.registries.base import ClientConfig, RegistryError, Transport
from imagesync.registries.lane import _Response, parse_headers

MANIFEST = b'{"schemaVersion": 2, "config": {"digest": "sha256:' + b"cd" * 32 + b'"}}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not any(name.lower() == "transfer-encoding" for name, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self) -> None:
        server = self.server
        server.seen.append((self.command, self.path, dict(self.headers)))
        server.connections.add(self.client_address)
        path = self.path
        if path.startswith("http://"):  # asked as a proxy
            self._send(200, b'{"proxied": true}', [("Content-Type", "application/json")])
        elif path.startswith("/elsewhere"):
            self._send(307, b"", [("Location", f"{server.other}/v2/lib/app/blobs/sha256:cd")])
        elif path.startswith("/moved"):
            self._send(302, b"", [("Location", "/v2/lib/app/manifests/v1.0")])
        elif path.startswith("/loop"):
            self._send(302, b"", [("Location", "/loop")])
        elif path.startswith("/twice"):
            self._send(200, b"{}", [("Link", "</a>; rel=a"), ("Link", "</b>; rel=b")])
        elif path.startswith("/gzip"):
            body = gzip.compress(MANIFEST) + gzip.compress(b" ")  # two members, as urllib3 reads
            self._send(200, body, [("Content-Encoding", "gzip")])
        elif path.startswith("/deflate"):
            raw = "raw" in path
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
            body = packer.compress(MANIFEST) + packer.flush()
            self._send(200, body, [("Content-Encoding", "deflate")])
        elif path.startswith("/bomb"):
            self._send(200, gzip.compress(b"\0" * 200_000), [("Content-Encoding", "gzip")])
        elif path.startswith("/big"):
            self._send(200, b"x" * int(path.rsplit("/", 1)[1]))
        elif path.startswith("/chunked"):
            size = int(path.rsplit("/", 1)[1])
            self._send(200, b"", [("Transfer-Encoding", "chunked")])
            if self.command != "HEAD":
                for start in range(0, size, 1000):
                    piece = b"x" * min(1000, size - start)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
        elif path.startswith("/short"):  # announces more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"cut":')
            self.close_connection = True
        elif path.startswith("/hangup"):  # answers, keeps the connection alive, then closes it
            self._send(200, MANIFEST)
            self.close_connection = True
        elif path.startswith("/slow"):
            server.release.wait(5)
            self._send(200, MANIFEST)
        else:
            digest = "sha256:" + "ab" * 32
            self._send(200, MANIFEST, [("Docker-Content-Digest", digest)])

    do_GET = do_HEAD = _answer

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def shutdown_request(self, request) -> None:
        super().shutdown_request(request)
        self.finished.set()  # this connection is closed on the server's side


def _serve(context: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, str]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen, httpd.connections, httpd.other = [], set(), ""
    httpd.finished, httpd.release = threading.Event(), threading.Event()
    scheme = "http"
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"{scheme}://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture
def server():
    httpd, url = _serve()
    other, other_url = _serve()
    httpd.other = other_url
    httpd.other_server = other
    yield httpd, url
    for each in (httpd, other):
        each.release.set()
        each.shutdown()
        each.server_close()


def _transport(url: str, **config) -> Transport:
    config.setdefault("allow_insecure_http", True)
    t = Transport(ClientConfig(url=url, **config))
    t._sleep = lambda seconds: None
    return t


def _on_the_lane(t: Transport) -> bool:
    """Whether the requests so far went on the lane: requests' adapter made no pool for them."""
    adapter = t.session.get_adapter("http://x/")
    return not adapter.poolmanager.pools and not adapter._pools


def test_a_manifest_is_fetched_on_the_lane_and_one_connection_serves_a_series(server):
    httpd, url = server
    t = _transport(url)
    for _ in range(5):
        head = t.request("HEAD", "/v2/lib/app/manifests/v1.0")
        got = t.request("GET", "/v2/lib/app/manifests/v1.0")
    assert head.headers["Docker-Content-Digest"] == "sha256:" + "ab" * 32
    assert head.content == b""
    assert got.json()["schemaVersion"] == 2 and got.url == url + "/v2/lib/app/manifests/v1.0"
    assert len(httpd.connections) == 1
    assert _on_the_lane(t)


def test_the_direct_http_option_off_sends_everything_through_requests(server):
    httpd, url = server
    t = _transport(url, options={"direct_http": False})
    assert t.request("GET", "/v2/lib/app/manifests/v1.0").json()["schemaVersion"] == 2
    assert not _on_the_lane(t)


@pytest.mark.parametrize(
    "path",
    [
        "/twice",  # a header sent twice: joined, as requests joins it
        "/gzip",  # content codings undone, gzip members one after another
        "/deflate",
        "/deflate-raw",
        "/chunked/5000",
        "/moved",
    ],
)
def test_answers_on_the_lane_are_those_requests_gives(server, path):
    httpd, url = server
    t = _transport(url)
    ours = t.request("GET", path)
    theirs = requests.get(url + path)
    assert _on_the_lane(t)
    assert (ours.status_code, ours.url, ours.content, ours.encoding) == (
        theirs.status_code,
        theirs.url,
        theirs.content,
        theirs.encoding,
    )
    mine = {k.lower(): v for k, v in ours.headers.items() if k.lower() != "date"}
    assert mine == {k.lower(): v for k, v in theirs.headers.items() if k.lower() != "date"}
    assert ours.links == theirs.links
    assert [(r.status_code, r.url) for r in ours.history] == [
        (r.status_code, r.url) for r in theirs.history
    ]


def test_a_redirect_to_another_host_does_not_carry_the_authorization_header(server):
    httpd, url = server
    t = _transport(url)
    got = t.request("GET", "/elsewhere", headers={"Authorization": "Bearer planted-token"})
    assert got.json()["schemaVersion"] == 2 and got.url.startswith(httpd.other)
    assert [r.status_code for r in got.history] == [307]
    assert httpd.seen[-1][2]["Authorization"] == "Bearer planted-token"
    assert "Authorization" not in httpd.other_server.seen[-1][2]
    assert _on_the_lane(t)


def test_endless_redirects_stop_with_a_clear_error(server):
    httpd, url = server
    with pytest.raises(requests.exceptions.TooManyRedirects):
        requests.get(url + "/loop")
    sent_by_requests = len(httpd.seen)
    t = _transport(url)
    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/loop", what="catalog")
    assert caught.value.code == "bad_response" and not caught.value.retryable
    assert "redirected the request too many times (catalog)" in caught.value.message
    assert len(httpd.seen) == 2 * sent_by_requests == 62  # requests' limit: 30 redirects


@pytest.mark.parametrize("path", ["/big/5000", "/chunked/5000", "/bomb"])
def test_a_body_over_the_cap_is_refused_sent_or_inflated(server, path):
    httpd, url = server
    t = _transport(url, options={"max_body_bytes": 4096})
    with pytest.raises(RegistryError) as caught:
        t.request("GET", path, what="manifest lib/app:v1.0")
    assert caught.value.code == "bad_response"
    assert "too large (manifest lib/app:v1.0)" in caught.value.message
    assert len(httpd.seen) == 1  # not retried
    for fits in ("/big/4096", "/chunked/4096"):
        assert (
            len(_transport(url, options={"max_body_bytes": 4096}).request("GET", fits).content)
            == 4096
        )


def test_a_body_cut_short_is_retried_and_then_reported_unreachable(server):
    httpd, url = server
    t = _transport(url, options={"max_retries": 2})
    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/short", what="tag list")
    assert caught.value.code == "unreachable" and caught.value.retryable
    assert len(httpd.seen) == 3


def test_a_connection_the_registry_closed_while_idle_is_not_reused(server):
    httpd, url = server
    t = _transport(url, options={"max_retries": 0})
    assert t.request("GET", "/hangup").status_code == 200
    assert httpd.finished.wait(5)  # the registry has closed its end
    # With no retries allowed, a request sent on the closed connection would fail.
    assert t.request("HEAD", "/v2/lib/app/manifests/v1.0").status_code == 200
    assert len(httpd.connections) == 2


def test_a_registry_that_does_not_answer_in_time_is_a_timeout(server):
    httpd, url = server
    t = _transport(url, options={"read_timeout": 0.3, "max_retries": 0})
    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/slow", what="catalog")
    assert caught.value.code == "timeout" and "did not answer in time (catalog)" in str(
        caught.value
    )


def test_a_registry_that_is_not_there_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    t = _transport(f"http://127.0.0.1:{port}", options={"max_retries": 1})
    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/", what="check")
    assert caught.value.code == "unreachable"
    assert f"Cannot reach 127.0.0.1:{port} (check)" in caught.value.message


def test_many_threads_share_the_lane_within_the_concurrency_cap(server):
    httpd, url = server
    t = _transport(url, options={"max_concurrency": 4})
    results = []

    def work():
        for _ in range(25):
            results.append(t.request("HEAD", "/v2/lib/app/manifests/v1.0").status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 200
    assert len(httpd.connections) <= 4
    t.close()
    assert not any(t.session.lane._idle.values())  # closed with the transport


def test_a_proxy_from_the_environment_is_used(server, monkeypatch):
    httpd, url = server
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    t = _transport("http://registry.invalid")
    assert t.request("GET", "/v2/").json() == {"proxied": True}
    assert httpd.seen[-1][1] == "http://registry.invalid/v2/"
    assert not _on_the_lane(t)


def test_a_netrc_entry_for_the_registry_is_sent(server, monkeypatch, tmp_path):
    httpd, url = server
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    t = _transport(url)
    t.request("GET", "/v2/lib/app/manifests/v1.0")
    assert httpd.seen[-1][2]["Authorization"] == requests.auth._basic_auth_str(
        "netrc-user", "netrc-pass"
    )


# --- TLS ---------------------------------------------------------------------------------------


def _certificate(tmp_path, ip: str) -> tuple[str, ssl.SSLContext]:
    """A self-signed certificate for `ip`: its PEM, and a server context that presents it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lane test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (tmp_path / "cert.pem").write_text(pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return pem, context


@pytest.fixture
def tls_server(tmp_path):
    made = {}

    def start(ip: str = "127.0.0.1"):
        pem, context = _certificate(tmp_path, ip)
        httpd, url = _serve(context)
        made["httpd"] = httpd
        return httpd, url, pem

    yield start
    if "httpd" in made:
        made["httpd"].shutdown()
        made["httpd"].server_close()


def test_https_with_the_registry_s_ca_bundle_is_served_on_the_lane(tls_server):
    httpd, url, pem = tls_server()
    t = _transport(url, ca_bundle=pem)
    for _ in range(3):
        assert t.request("GET", "/v2/lib/app/manifests/v1.0").json()["schemaVersion"] == 2
    assert len(httpd.connections) == 1 and _on_the_lane(t)


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.0.0.2"])
def test_an_untrusted_or_mismatched_certificate_is_a_tls_error_not_retried(tls_server, ip):
    httpd, url, pem = tls_server(ip)
    # Trusted by no bundle (127.0.0.1), or trusted but issued for another address (127.0.0.2).
    t = _transport(url, ca_bundle=pem if ip != "127.0.0.1" else "")
    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/")
    assert caught.value.code == "tls_error" and not caught.value.retryable
    assert httpd.seen == []


def test_tls_verification_off_talks_to_a_self_signed_registry(tls_server):
    httpd, url, pem = tls_server()
    t = _transport(url, verify_tls=False)
    assert t.request("HEAD", "/v2/lib/app/manifests/v1.0").status_code == 200
    assert _on_the_lane(t)


def test_a_request_asking_for_a_coding_the_lane_cannot_undo_goes_through_requests(server):
    httpd, url = server
    t = _transport(url)
    t.request("GET", "/v2/lib/app/manifests/v1.0", headers={"Accept-Encoding": "br"})
    assert httpd.seen[-1][2]["Accept-Encoding"] == "br"
    assert not _on_the_lane(t)
    t.request("GET", "/v2/lib/app/manifests/v1.0", headers={"Accept-Encoding": "gzip;q=1.0"})
    assert t.session.lane._idle  # that one went on the lane


# --- the lane's header parse against the standard library's ---------------------------------

HEADER_BLOCKS = [
    b"Content-Length: 424\r\nContent-Type: application/json\r\n\r\n",
    b"Docker-Content-Digest: sha256:" + b"ab" * 32 + b'\r\nEtag: "x"\r\n\r\n',
    b"X-Spaces:   padded  \r\nX-Tab:\tvalue\t\r\nX-Empty:\r\nX-Blank:   \r\n\r\n",
    b"Link: </a>; rel=a\r\nLink: </b>; rel=b\r\nlink: </c>\r\n\r\n",
    b"Bare-Newlines: yes\nOther: too\n\n",
    b"X-Latin: caf\xe9\r\nX-Utf8: \xe4\xb8\xad\r\n\r\n",
    b"X-Colon: a: b: c\r\n\r\n",
    b"\r\n",
    # Each of these goes through the email parser (the lane's parse falls back):
    b"X-Folded: one\r\n two\r\n\tthree\r\nNext: 1\r\n\r\n",
    b" Leading: continuation\r\nX: 1\r\n\r\n",
    b"No colon here\r\nX: 1\r\n\r\n",
    b": no name\r\nX: 1\r\n\r\n",
    b"From someone\r\nX: 1\r\n\r\n",
    b"X: 1\r\nFrom someone\r\nY: 2\r\n\r\n",
    b"Name With Space: 1\r\n\r\n",
    b"X-Stray: a\rb\r\nY: 2\r\n\r\n",
    b"X: 1\r\nTruncated: ",
    b"X: 1\r\n",
    b"",
]


def _state(message) -> dict:
    """Everything a message holds (its defects by kind and text: they have no equality)."""
    state = dict(vars(message))
    state["defects"] = [(type(d), str(d)) for d in message.defects]
    return state


def _stdlib_message(block: bytes):
    return http.client.parse_headers(io.BytesIO(block))


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_the_lane_parses_every_header_block_into_the_message_the_standard_library_builds(block):
    fast, stdlib = parse_headers(io.BytesIO(block)), _stdlib_message(block)
    assert _state(fast) == _state(stdlib)
    assert fast.items() == stdlib.items() and fast.get_payload() == stdlib.get_payload()


def test_random_header_blocks_parse_as_the_standard_library_parses_them():
    pieces = [b"X", b"Y-Z", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"From ", b"a", b"\xe9"]
    pieces += [b"\x00", b"\x0b", b"\x0c", b"\x1c", b"\x85"]  # not line breaks to the parser
    rng = random.Random(15)
    for _ in range(3000):
        block = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        block += rng.choice([b"\r\n\r\n", b"\n\n", b"\r\n", b""])  # or cut short
        fast, stdlib = parse_headers(io.BytesIO(block)), _stdlib_message(block)
        assert _state(fast) == _state(stdlib), block


RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\nContent-Length: 99\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nbody",
    b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\nbody",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\nX-Skipped: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 404   Not Found  \r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
]


class _FakeSocket:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str):
        return io.BytesIO(self.data)


def _read_response(response_class, data: bytes, method: str):
    response = response_class(_FakeSocket(data), method=method)
    try:
        response.begin()
    except Exception as exc:  # noqa: BLE001 - the same error from both is what counts
        return type(exc), str(exc)
    state = {
        name: getattr(response, name)
        for name in ("status", "reason", "version", "chunked", "chunk_left", "length")
    }
    state["will_close"], state["message"] = response.will_close, _state(response.msg)
    state["body"] = response.read()
    return state


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("data", RESPONSES)
def test_the_lane_reads_every_response_as_http_client_reads_it(data, method):
    assert _read_response(_Response, data, method) == _read_response(
        http.client.HTTPResponse, data, method
    )


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    ],
)
def test_a_malformed_response_fails_on_the_lane_as_in_http_client(data):
    failure = _read_response(_Response, data, "GET")
    assert failure == _read_response(http.client.HTTPResponse, data, "GET")
    assert isinstance(failure, tuple) and issubclass(failure[0], http.client.HTTPException)
