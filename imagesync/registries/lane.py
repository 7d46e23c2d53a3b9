"""The direct lane: a registry connection's plain GET and HEAD requests, sent on pooled
`http.client` connections without requests' and urllib3's layers in between.

Why: a re-sync is mostly `HEAD`s and a first sync `GET`s of small manifests. Per request,
against a local registry, requests' path (already trimmed by `_Session` and `_Adapter`) cost
346-370 µs of CPU and `http.client` alone 158-161 µs: the layers cost more than the request.
At 2 cores shared with the registry and the database, that CPU is the sync's pace.

What goes on the wire is what requests sends: the same request line, the same headers (the
session's merged with the request's, in requests' order; `Host` written by `http.client`, as
under urllib3) and no body. What comes back is a `requests.Response` with its body read (and
decoded, for gzip and deflate), the headers as requests gives them, the URL, the reason, the
cookies and the redirect history. Failures raise the requests exception requests would raise
for them, so one mapping (`Transport._attempt`) serves both paths.

The lane serves only what it can serve exactly: `_Session.send_plainly` sends a request here
only when no proxy applies, no ~/.netrc entry or URL credentials give auth, the session holds
no cookies, auth, params or hooks, and requests' own adapter is in place (a test double such
as `responses`, which replaces `HTTPAdapter.send`, still answers every request). A redirect
is followed here while its target qualifies too, and by requests from there when it does not.

Pipelining (`Lane.send_many`): many GETs or HEADs of one origin on one connection, up to
`depth` sent before their answers come back (HTTP/1.1 pipelining, RFC 9112 §9.3.2). The server
still answers them one after another, in order, so it never works on more than one of them at
a time per connection; what pipelining removes is the round trip between an answer and the next
request, which is most of a request's time across a network (at 20 ms each way, 40 ms of a
44 ms HEAD). Each request goes out byte for byte as `send` would write it. Anything unusual
(a connection cut, a timeout, an answer too large, garbage) leaves that request and the ones
after it unanswered, and the caller sends those one by one, the usual way; a server that
closes a connection cleanly (`Connection: close`, as nginx does after `keepalive_requests`)
gets the rest on a new connection. A server that breaks a connection with several requests
outstanding is not sent pipelined requests again by this lane.
"""

from __future__ import annotations

import email.parser
import http.client
import os
import re
import select
import socket
import ssl
import threading
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_encoding_from_headers
from urllib3.util.ssl_ import create_urllib3_context

# The content codings the lane decodes, as urllib3 does (its other ones need packages that
# requests asks for only when they are installed; `Lane.decodes` tells which are asked for).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

READ_CHUNK = 65536

# How a pipelined connection ended (Lane._pipeline).
_DONE, _CLOSED, _FAILED, _BROKE = "done", "closed", "failed", "broke"

# A header line the email parser would store as it came: a field name (printable ASCII but
# the colon), the colon, the value on this one line (no CR or LF inside), the line's end.
_PLAIN_HEADER = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)\r?\n")


class BodyTooLarge(Exception):
    """A response body above the cap the lane was given; its connection is closed."""


class Lane:
    """Kept-alive `http.client` connections per (scheme, host, port, TLS verification), at
    most `pool_size` idle ones each; thread-safe."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self._decodable: dict[str | None, bool] = {}
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._contexts: dict[Any, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._serial: set[tuple] = set()  # origins that broke a pipelined connection

    def close(self) -> None:
        """Close every idle connection; one in use is closed when it comes back."""
        with self._lock:
            idle, self._idle = self._idle, {}
            self._generation += 1
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def decodes(self, accept_encoding: str | None) -> bool:
        """Whether every content coding a request asks for is one the lane decodes."""
        found = self._decodable.get(accept_encoding)
        if found is None:
            codings = [""]
            if accept_encoding is not None:
                codings = [
                    part.split(";")[0].strip().lower() for part in accept_encoding.split(",")
                ]
            found = all(coding in _WBITS or coding in ("identity", "") for coding in codings)
            self._decodable[accept_encoding] = found
        return found

    def send(
        self,
        method: str,
        url: str,
        headers: CaseInsensitiveDict,
        timeout: Any,
        verify: bool | str,
        max_body: int | None,
    ) -> requests.Response:
        """One request and its answer, the body read (raises BodyTooLarge above
        `max_body`). `url` is a prepared URL (as requests' prepare_url writes it) of an http or
        https origin; `verify` is requests' (True, False or a CA bundle's path)."""
        scheme, _, rest = url.partition("://")
        netloc, slash, path = rest.partition("/")
        path, _, _fragment = (slash + path).partition("#")
        host, port = _host_port(netloc, scheme)
        key = (scheme, host, port, verify)
        connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout,) * 2
        generation = self._generation
        connection = self._take(key)
        if connection is None:
            connection = self._connect(scheme, host, port, verify, connect_timeout, read_timeout)
        try:
            raw, body = self._exchange(connection, method, path or "/", headers, max_body)
        except BaseException:
            connection.close()
            raise
        if raw.will_close or generation != self._generation:
            connection.close()
        else:
            self._give_back(key, connection)
        return _response(raw, body, url)

    def send_many(
        self,
        requests_: Sequence[tuple[str, str]],
        headers: CaseInsensitiveDict,
        timeout: Any,
        verify: bool | str,
        max_body: int | None,
        depth: int,
        before_each: Callable[[], None] | None = None,
    ) -> list[requests.Response | None]:
        """(method, URL) pairs of one origin (prepared URLs, GET or HEAD), the same headers
        for each, pipelined on one connection with at most `depth` awaiting their answers;
        the answers in the same order, each as `send` gives it (a redirect is not followed
        here). None stands for a request left unanswered: see the module docstring. Never
        raises for the network or the server; `before_each()` is called before each request
        is written (the rate limit), and what it raises is raised."""
        results: list[requests.Response | None] = [None] * len(requests_)
        if not requests_:
            return results
        scheme, _, rest = requests_[0][1].partition("://")
        host, port = _host_port(rest.partition("/")[0], scheme)
        key = (scheme, host, port, verify)
        if key in self._serial:
            return results
        connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout,) * 2
        start = 0
        while start < len(requests_):
            generation = self._generation
            connection = self._take(key)
            try:
                if connection is None:
                    connection = self._connect(
                        scheme, host, port, verify, connect_timeout, read_timeout
                    )
                answered, state = self._pipeline(
                    connection, requests_, start, headers, max_body, depth, before_each, results
                )
            except requests.exceptions.RequestException:  # could not connect: the caller's
                answered, state = start, _FAILED
            except BaseException:
                if connection is not None:
                    connection.close()
                raise
            if state == _DONE and generation == self._generation:
                self._give_back(key, connection)
            elif connection is not None:
                connection.close()
            if state == _BROKE:
                with self._lock:
                    self._serial.add(key)
            if state != _CLOSED or answered == start:
                break
            start = answered  # closed cleanly by the server: the rest on a new connection
        return results

    def _pipeline(
        self,
        connection: http.client.HTTPConnection,
        requests_: Sequence[tuple[str, str]],
        start: int,
        headers: CaseInsensitiveDict,
        max_body: int | None,
        depth: int,
        before_each: Callable[[], None] | None,
        results: list,
    ) -> tuple[int, str]:
        """Pipeline requests_[start:] on `connection`, filling `results`. Returns the index
        after the last request answered, and how the connection ended: _DONE (every request
        sent was answered, nothing more came: it can be kept), _CLOSED (the server closed it
        cleanly after an answer), _FAILED (this request or its answer failed), _BROKE (it
        failed with more than one request outstanding: the server may not pipeline)."""
        recorder = _Recorder(connection)
        reader = _Reader(connection.sock)
        sent: deque[int] = deque()
        following = answered = start
        limit = len(requests_)
        try:
            while answered < limit:
                batch = []
                while following < limit and len(sent) < depth:
                    method, url = requests_[following]
                    try:
                        batch.append(recorder.record(method, _path_of(url), headers))
                    except (ValueError, http.client.HTTPException):
                        limit = following  # refused here: the caller's path reports it
                        break
                    if before_each is not None:
                        before_each()
                    sent.append(following)
                    following += 1
                if batch:
                    connection.sock.sendall(b"".join(batch))
                if not sent:
                    break
                index = sent[0]
                method, url = requests_[index]
                raw = _Response(reader, method=method)
                raw.begin()
                body = _read(raw, max_body)
                sent.popleft()
                results[index] = _response(raw, body, url)
                answered = index + 1
                if raw.will_close:
                    return answered, _CLOSED
        except (BodyTooLarge, requests.exceptions.RequestException):  # too large, or garbled
            return answered, _FAILED
        except (OSError, http.client.HTTPException, ValueError):
            return answered, _BROKE if len(sent) > 1 else _FAILED
        return answered, _FAILED if reader.buffered else _DONE

    def _take(self, key: tuple) -> http.client.HTTPConnection | None:
        """An idle connection the server has not closed, as urllib3 checks before reusing one:
        a kept-alive connection with something to read (its end, or bytes nobody asked for)
        is closed instead."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
            if connection is None or not _readable(connection.sock):
                return connection
            connection.close()

    def _give_back(self, key: tuple, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.pool_size:
                idle.append(connection)
                return
        connection.close()

    def _connect(
        self,
        scheme: str,
        host: str,
        port: int,
        verify: bool | str,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> http.client.HTTPConnection:
        if scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=self._context(verify)
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        connection.response_class = _Response
        try:
            connection.connect()
        except ssl.SSLError as exc:
            connection.close()
            raise requests.exceptions.SSLError(str(exc)) from None
        except TimeoutError:
            connection.close()
            raise requests.exceptions.ConnectTimeout(f"Connecting to {host} timed out.") from None
        except (OSError, UnicodeError) as exc:  # refused, unreachable, unknown name
            connection.close()
            raise requests.exceptions.ConnectionError(str(exc)) from None
        connection.sock.settimeout(read_timeout)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as urllib3
        return connection

    def _context(self, verify: bool | str) -> ssl.SSLContext:
        """urllib3's TLS context for requests' `verify`: its defaults, the CA bundle (a file or
        a directory, as requests tells them apart) and the host name checked."""
        context = self._contexts.get(verify)
        if context is None:
            if verify is False:
                context = create_urllib3_context(cert_reqs=ssl.CERT_NONE)
                context.check_hostname = False
            else:
                context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
                context.check_hostname = True
                where = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
                if os.path.isdir(where):
                    context.load_verify_locations(capath=where)
                else:
                    context.load_verify_locations(cafile=where)
            context.set_alpn_protocols(["http/1.1"])
            self._contexts[verify] = context
        return context

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        headers: CaseInsensitiveDict,
        max_body: int | None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send the request and read the whole answer; a failure raises the requests exception
        requests would raise for it."""
        try:
            connection.putrequest(method, path, skip_accept_encoding="accept-encoding" in headers)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            raw = connection.getresponse()
        except ValueError as exc:  # a header or path http.client refuses to send
            raise requests.exceptions.InvalidHeader(str(exc)) from None
        except ssl.SSLError as exc:
            raise requests.exceptions.SSLError(str(exc)) from None
        except TimeoutError:
            raise requests.exceptions.ReadTimeout("The registry did not answer in time.") from None
        except (OSError, http.client.HTTPException) as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from None
        try:
            return raw, _read(raw, max_body)
        except BodyTooLarge:
            raise
        except TimeoutError:
            raise requests.exceptions.ReadTimeout("The registry did not answer in time.") from None
        except (OSError, http.client.HTTPException) as exc:  # cut short: IncompleteRead
            raise requests.exceptions.ChunkedEncodingError(str(exc)) from None


class _Recorder(http.client.HTTPConnection):
    """The bytes `http.client` would write for a request on `connection` (the same request
    line, Host and Accept-Encoding headers, checks and refusals), kept instead of sent."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        super().__init__(connection.host, connection.port)
        self.default_port = connection.default_port
        self._written: list[bytes] = []

    def send(self, data: bytes) -> None:  # noqa: D102
        self._written.append(data)

    def record(self, method: str, path: str, headers: CaseInsensitiveDict) -> bytes:
        self._HTTPConnection__state = http.client._CS_IDLE
        self._written.clear()
        self.putrequest(method, path, skip_accept_encoding="accept-encoding" in headers)
        for name, value in headers.items():
            self.putheader(name, value)
        self.endheaders()
        return b"".join(self._written)


class _Reader:
    """A connection's incoming bytes, read by one answer after another: what `HTTPResponse`
    reads through `fp`, with what was received beyond one answer kept for the next. Closing
    it (as a response does when it is done) closes nothing."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._eof = False

    def makefile(self, _mode: str) -> _Reader:  # HTTPResponse(sock) takes its fp from here
        return self

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._sock.recv(READ_CHUNK)
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                size = end + 1
                break
            if 0 <= limit <= len(self._buffer) or not self._fill():
                size = len(self._buffer)
                break
        return self._take(size if limit < 0 else min(size, limit))

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(min(size, len(self._buffer)))

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def close(self) -> None:
        pass


def _path_of(url: str) -> str:
    """The request target of a prepared URL, as `send` writes it."""
    rest = url.partition("://")[2]
    slash, path = rest.partition("/")[1:]
    return (slash + path).partition("#")[0] or "/"


class _Response(http.client.HTTPResponse):
    """`http.client`'s response with a cheaper header parse (`parse_headers`): `begin` is the
    standard library's (Python 3.11, without its debug prints) with that one call changed.
    The email package took ~25 µs to parse a registry's seven plain header lines."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:  # read until a non-100 response
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)  # skip the 100 response's header
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = parse_headers(self.fp)
        transfer_encoding = self.headers.get("transfer-encoding")
        if transfer_encoding and transfer_encoding.lower() == "chunked":
            self.chunked = True
            self.chunk_left = None
        else:
            self.chunked = False
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:  # a nonsensical negative length is ignored
                    self.length = None
        if (
            status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED)
            or 100 <= status < 200
            or self._method == "HEAD"
        ):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # no length and kept alive: the body ends at the close


def parse_headers(fp: Any) -> http.client.HTTPMessage:
    """`http.client.parse_headers(fp)`: the same lines read (with its limits on their length
    and number) and the same message built. When every line is a plain `Name: value` the
    message is filled directly, as the email parser would fill it; anything else (a folded
    line, a line without a name, a stray CR, a truncated block) goes through the email
    parser, as in the standard library."""
    lines = http.client._read_headers(fp)  # the last: the blank line, or b"" at the end
    message = http.client.HTTPMessage()
    for line in lines[:-1]:
        match = _PLAIN_HEADER.fullmatch(line.decode("iso-8859-1"))
        if match is None:
            break
        message.set_raw(match[1], match[2])
    else:
        message.set_payload("")
        return message
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)


def _host_port(netloc: str, scheme: str) -> tuple[str, int]:
    host, port = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, port = netloc[1:end], netloc[end + 2 :]
    elif ":" in netloc:
        host, _, port = netloc.rpartition(":")
    return host, int(port) if port else (443 if scheme == "https" else 80)


def _read(raw: http.client.HTTPResponse, max_body: int | None) -> bytes:
    """The whole body, refusing one longer than `max_body` (announced or sent), decoded."""
    length = raw.length
    if max_body is not None and length is not None and length > max_body:
        raise BodyTooLarge
    if length is not None or raw._method == "HEAD":
        body = raw.read()  # a short body raises IncompleteRead
    else:  # chunked, or until the server closes: in pieces, never past the cap
        pieces, total = [], 0
        while piece := raw.read(READ_CHUNK):
            total += len(piece)
            if max_body is not None and total > max_body:
                raise BodyTooLarge
            pieces.append(piece)
        body = b"".join(pieces)
    coding = raw.getheader("Content-Encoding")
    if body and coding:
        body = _decoded(body, coding, max_body)
    return body


def _decoded(body: bytes, coding: str, max_body: int | None) -> bytes:
    """`body` with its content codings undone, last applied first, as urllib3 does; a coding
    the lane does not know leaves the body as it came (urllib3 leaves it too)."""
    codings = [part.strip().lower() for part in coding.split(",")]
    codings = [part for part in codings if part not in ("identity", "")]
    if not all(part in _WBITS for part in codings):
        return body
    for part in reversed(codings):
        try:
            body = _inflate(body, part, max_body)
        except zlib.error as exc:
            raise requests.exceptions.ContentDecodingError(
                f"Received response with content-encoding: {part}, but failed to decode it."
            ) from exc
    return body


def _inflate(body: bytes, coding: str, max_body: int | None) -> bytes:
    limit = 0 if max_body is None else max_body + 1
    if coding != "deflate":  # gzip: one member after another
        return _inflated(body, _WBITS[coding], limit, members=True)
    try:  # zlib-wrapped, as the standard says; raw deflate, as some servers send
        return _inflated(body, zlib.MAX_WBITS, limit, members=False)
    except zlib.error:
        return _inflated(body, -zlib.MAX_WBITS, limit, members=False)


def _inflated(body: bytes, wbits: int, limit: int, members: bool) -> bytes:
    """Inflate `body`, at most `limit` bytes of it (0: no limit) before BodyTooLarge."""
    pieces, total = [], 0
    while True:
        decoder = zlib.decompressobj(wbits)
        piece = decoder.decompress(body, limit - total if limit else 0)
        total += len(piece)
        if limit and total >= limit:
            raise BodyTooLarge
        pieces.append(piece)
        body = decoder.unused_data
        if not (members and body and decoder.eof):
            return b"".join(pieces)


def _readable(sock: socket.socket | None) -> bool:
    """Whether an idle socket has something to read (or is gone): then it cannot be reused."""
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _response(raw: http.client.HTTPResponse, body: bytes, url: str) -> requests.Response:
    """The requests.Response requests would build for this answer, its body already read."""
    headers: CaseInsensitiveDict = CaseInsensitiveDict()
    for name, value in raw.msg.items():
        seen = headers.get(name)
        headers[name] = value if seen is None else f"{seen}, {value}"
    response = requests.Response()
    response.status_code = raw.status
    response.headers = headers
    response.encoding = get_encoding_from_headers(headers)
    response.reason = raw.reason
    response.url = url
    response._content = body
    response._content_consumed = True
    response.raw = _Raw(raw.msg)
    return response


class _Raw:
    """What a lane response keeps of its answer (requests keeps urllib3's response there):
    the headers' message, which requests' cookie extraction reads, and nothing to release."""

    def __init__(self, msg: http.client.HTTPMessage) -> None:
        self._original_response = self
        self.msg = msg

    def close(self) -> None:
        pass
