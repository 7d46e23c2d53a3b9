"""A fault-injecting HTTP proxy on loopback, between a registry client and a real registry.

    proxy = FaultProxy(reg.url, upstream_auth=(reg.username, reg.password)).start()
    proxy.url                                   # http://127.0.0.1:PORT, give it to the client
    proxy.add(Rule("status", path=r"/tags/list", status=503, times=2))
    proxy.add(Rule("reset", path=r"/v2/team/api/"))          # every matching request
    proxy.add(Rule("timeout", path=r"/manifests/", delay=2.0, probability=0.5))
    proxy.add(Rule("vanish", after=20))         # the 21st request makes the registry vanish
    proxy.clear(); proxy.restore()              # faults off, listening again
    proxy.count(r"/tags/list")                  # requests seen (faulted ones included)
    proxy.stop()

Faults (`Rule.fault`):

* ``status``    answer `status` (500, 502, 503, 429, ...) with an OCI error body, and a
  `Retry-After` header when `retry_after` is set;
* ``reset``     close the connection abruptly (TCP RST, no HTTP answer at all);
* ``timeout``   sleep `delay` seconds (past the client's read timeout), then close;
* ``truncate``  forward, then send only the first half of the body under the full
  Content-Length and close (the client sees the connection break mid-body);
* ``cut``       forward, send the first half of the body with a matching Content-Length
  (a well-framed answer whose JSON is cut short);
* ``malformed`` forward, replace the body with bytes that are not JSON (same length header);
* ``vanish``    stop listening: this and every later connection is refused or reset until
  `restore()`.
* ``redirect``  answer `307` to the same request under `/redirected` on this proxy, which
  forwards it there with no rule applied (blobs served from object storage or a CDN).

Token auth: with `token_auth=True` the proxy answers unauthenticated /v2/ requests with
`401 WWW-Authenticate: Bearer realm=<proxy>/token`, serves that token endpoint itself
(checking the client's Basic credentials against `upstream_auth`), and forwards authorized
requests to the registry with the upstream Basic credentials. Tokens really live for
`token_ttl` seconds but the endpoint claims `token_expires_in` (and with `token_max_uses` it
is dropped after that many requests), so a token expires mid-sync while the client still
believes it valid; an expired token gets `401 error="invalid_token"`.

`latency` adds a delay before every forwarded request (a slow registry).
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests

HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "authorization",
    "accept-encoding",
}
FAULTS = ("status", "reset", "timeout", "truncate", "cut", "malformed", "vanish", "redirect")
REDIRECTED = "/redirected"  # where a `redirect` fault sends a request (see the docstring)


@dataclass
class Rule:
    """When a request matches `path` (regex searched in path+query) and `method`, skip the
    first `after` matches, then fire on up to `times` matches (None: forever) with
    `probability`."""

    fault: str
    path: str = ""
    method: str | None = None
    times: int | None = None
    after: int = 0
    probability: float = 1.0
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        assert self.fault in FAULTS, self.fault
        self._re = re.compile(self.path)

    def fires(self, method: str, target: str, rng: random.Random) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if not self._re.search(target):
            return False
        self.matched += 1
        if self.matched <= self.after:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.probability < 1.0 and rng.random() >= self.probability:
            return False
        self.fired += 1
        return True


@dataclass(frozen=True)
class Seen:
    """One request the proxy received and what it did with it."""

    method: str
    target: str  # path and query
    outcome: str  # "forwarded:<status>", "token", "challenge", or the fault name

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class _Token:
    value: str
    expires: float
    uses: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address) -> None:  # quiet: resets are on purpose
        pass


class FaultProxy:
    """See the module docstring."""

    def __init__(
        self,
        upstream: str,
        *,
        upstream_auth: tuple[str, str] | None = None,
        token_auth: bool = False,
        token_ttl: float = 300.0,
        token_expires_in: int | None = None,
        token_max_uses: int | None = None,
        seed: int = 1234,
    ):
        self.upstream = upstream.rstrip("/")
        self.upstream_auth = upstream_auth
        self.token_auth = token_auth
        self.token_ttl = token_ttl
        self.token_expires_in = token_expires_in
        self.token_max_uses = token_max_uses
        self.latency = 0.0
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.port = 0
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._vanished = False
        self._local = threading.local()

    # --- control --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        handler = _make_handler(self)
        self._server = _Server(("127.0.0.1", self.port), handler)
        self.port = self._server.server_address[1]
        self._vanished = False
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fault-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def add(self, *rules: Rule) -> FaultProxy:
        with self._lock:
            self.rules.extend(rules)
        return self

    def clear(self) -> None:
        """No more faults (a vanished proxy stays away until `restore()`)."""
        with self._lock:
            self.rules.clear()
        self.latency = 0.0

    def vanish(self) -> None:
        """Stop listening now: new connections are refused, open ones reset."""
        with self._lock:
            if self._vanished:
                return
            self._vanished = True
        threading.Thread(target=self._close_listener, daemon=True).start()

    def _close_listener(self) -> None:
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()

    def restore(self) -> None:
        """Listen again on the same port, with no faults."""
        self.clear()
        if self._vanished or self._server is None:
            deadline = time.monotonic() + 5
            while self._server is not None and self._thread and self._thread.is_alive():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            self._server = None
            for _attempt in range(50):
                try:
                    self.start()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError(f"could not listen on port {self.port} again")

    @property
    def vanished(self) -> bool:
        return self._vanished

    def count(self, path: str = "", outcome: str = "") -> int:
        """Requests seen whose target matches `path` (regex) and whose outcome starts with
        `outcome`."""
        pattern = re.compile(path)
        with self._lock:
            return sum(
                1 for s in self.seen if pattern.search(s.target) and s.outcome.startswith(outcome)
            )

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- per request ----------------------------------------------------------------------

    def _record(self, method: str, target: str, outcome: str) -> None:
        with self._lock:
            self.seen.append(Seen(method, target, outcome))

    def _pick(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.fires(method, target, self._rng):
                    return rule
        return None

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _issue_token(self) -> dict:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Token(token, time.monotonic() + self.token_ttl)
        claimed = self.token_expires_in
        if claimed is None:
            claimed = max(1, int(self.token_ttl))
        return {"token": token, "access_token": token, "expires_in": claimed}

    def _token_state(self, header: str) -> str:
        """ "ok", "missing" or "expired" for an Authorization header."""
        if not header.lower().startswith("bearer "):
            return "missing"
        with self._lock:
            token = self._tokens.get(header[7:].strip())
            if token is None:
                return "expired"
            token.uses += 1
            used_up = self.token_max_uses is not None and token.uses > self.token_max_uses
        return "ok" if token.expires > time.monotonic() and not used_up else "expired"

    def _basic_ok(self, header: str) -> bool:
        if not self.upstream_auth:
            return True
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user, password) == self.upstream_auth


def _make_handler(proxy: FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def do_PATCH(self) -> None:
            self._handle()

        # --- helpers ----------------------------------------------------------------------

        def _reset(self) -> None:
            """Close the connection with a TCP RST and no answer."""
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            except OSError:
                pass
            self.close_connection = True

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if "Content-Type" not in (headers or {}):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _read_request_body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length and length.isdigit():
                return self.rfile.read(int(length))
            return b""

        # --- the request ------------------------------------------------------------------

        def _handle(self) -> None:
            method, target = self.command, self.path
            if proxy.vanished:
                proxy._record(method, target, "vanish")
                self._reset()
                return
            body_in = self._read_request_body()
            if proxy.token_auth and urlsplit(target).path == "/token":
                if not proxy._basic_ok(self.headers.get("Authorization", "")):
                    proxy._record(method, target, "token:refused")
                    self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                    return
                proxy._record(method, target, "token")
                self._send(200, json.dumps(proxy._issue_token()).encode())
                return

            moved = target.startswith(REDIRECTED + "/")
            if moved:
                target = target[len(REDIRECTED) :]
            rule = None if moved else proxy._pick(method, target)
            if rule is not None:
                proxy._record(method, target, rule.fault)
                if rule.fault == "redirect":
                    self._send(307, b"", {"Location": REDIRECTED + target})
                    return
                if rule.fault == "vanish":
                    proxy.vanish()
                    self._reset()
                    return
                if rule.fault == "reset":
                    self._reset()
                    return
                if rule.fault == "timeout":
                    time.sleep(rule.delay or 5.0)
                    self._reset()
                    return
                if rule.fault == "status":
                    headers = {}
                    if rule.retry_after is not None:
                        headers["Retry-After"] = rule.retry_after
                    code = "TOOMANYREQUESTS" if rule.status == 429 else "UNAVAILABLE"
                    payload = {"errors": [{"code": code, "message": "injected fault"}]}
                    self._send(rule.status, json.dumps(payload).encode(), headers)
                    return

            if proxy.token_auth:
                state = proxy._token_state(self.headers.get("Authorization", ""))
                if state != "ok":
                    challenge = f'Bearer realm="{proxy.url}/token",service="fault-proxy"'
                    if state == "expired":
                        challenge += ',error="invalid_token"'
                    proxy._record(method, target, f"challenge:{state}")
                    self._send(
                        401,
                        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                        {"WWW-Authenticate": challenge},
                    )
                    return

            if proxy.latency:
                time.sleep(proxy.latency)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            if not proxy.token_auth and self.headers.get("Authorization"):
                headers["Authorization"] = self.headers["Authorization"]
            # Token auth: the proxy authenticates upstream; else the client's header goes through.
            auth = proxy.upstream_auth if proxy.token_auth else None
            try:
                upstream = proxy._session().request(
                    method,
                    proxy.upstream + target,
                    headers=headers,
                    data=body_in or None,
                    auth=auth,
                    allow_redirects=False,
                    timeout=30,
                )
            except requests.RequestException:
                proxy._record(method, target, "upstream-error")
                self._send(502, b'{"errors":[{"code":"UNAVAILABLE"}]}')
                return
            body = upstream.content
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            if proxy.token_auth:  # the client must only ever see the proxy's Bearer challenge
                out.pop("WWW-Authenticate", None)
            fault = rule.fault if rule is not None else ""
            proxy._record(method, target, fault or f"forwarded:{upstream.status_code}")
            if fault in ("truncate", "cut", "malformed") and method != "HEAD" and body:
                half = body[: max(1, len(body) // 2)]
                if fault == "malformed":
                    half = b"<html>" + b"\x00\xff not json" * (len(body) // 16 + 1)
                    half = half[: len(body)]
                declared = len(body) if fault == "truncate" else len(half)
                self.send_response(upstream.status_code)
                for key, value in out.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(declared))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(half)
                self.wfile.flush()
                self.close_connection = True
                if fault == "truncate":
                    self._reset()
                return
            self.send_response(upstream.status_code)
            for key, value in out.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)

        def finish(self) -> None:
            try:
                super().finish()
            except OSError:
                pass

    return Handler


@dataclass
class ProxyCounts:
    """A snapshot of what a proxy saw, for messages in assertions."""

    outcomes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, proxy: FaultProxy) -> ProxyCounts:
        counts: dict[str, int] = {}
        for seen in list(proxy.seen):
            counts[seen.outcome] = counts.get(seen.outcome, 0) + 1
        return cls(counts)
