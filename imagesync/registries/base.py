"""The one small interface every registry client implements, and the HTTP transport they share.

Clients take a plain `ClientConfig` and yield plain dataclasses; they never import models, so
tests need nothing but `responses` (or a real registry).
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from imagesync.reasons import (
    AUTH_FAILED,
    BAD_RESPONSE,
    NOT_FOUND,
    PERMISSION_DENIED,
    RATE_LIMITED,
    TIMEOUT,
    TLS_ERROR,
    UNREACHABLE,
    UNSUPPORTED,
)
from imagesync.reasons import CLIENT_CODES as ERROR_CODES
from imagesync.registries.lane import BodyTooLarge, Lane

logger = logging.getLogger(__name__)


class RegistryError(Exception):
    """The one error type of all clients: a stable `code`, a human `message`, and whether
    retrying later can help."""

    def __init__(
        self, code: str, message: str, *, retryable: bool = False, status: int | None = None
    ):
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class RepositoryInfo:
    """One repository as the registry reports it."""

    type: str  # one of the six repository types (imagesync.models.RepositoryType values)
    path: str  # what `docker pull <host>/<path>` uses, e.g. "team/api"
    namespace: str = ""  # first component of path ("" when the path has one component)
    name: str = ""  # path without the namespace
    extra: Mapping[str, Any] = field(
        default_factory=dict
    )  # e.g. {"instance_id": ...} to list it again
    # Pulls the registry counts for the whole repository (Harbor, SWR), None when it does not.
    pull_count: int | None = None

    @classmethod
    def from_path(
        cls, type: str, path: str, *, pull_count: int | None = None, **extra: Any
    ) -> RepositoryInfo:
        namespace, _, rest = path.partition("/")
        if not rest:
            namespace, rest = "", path
        return cls(
            type=type,
            path=path,
            namespace=namespace,
            name=rest,
            extra=dict(extra),
            pull_count=pull_count,
        )


@dataclass(slots=True)
class DigestDetails:
    """What a manifest digest tells, learned once: a digest is immutable."""

    media_type: str = ""
    size: int | None = None
    platforms: tuple[str, ...] = ()  # "os/arch[/variant]"
    multi_arch: bool = False
    created: datetime | None = None


@dataclass(slots=True)
class ImageInfo:
    """One tag of a repository. Slotted: a listing of 100,000 tags holds as many (144 bytes
    each instead of 192 with an attribute dictionary, before the strings and times)."""

    tag: str
    digest: str
    media_type: str = ""
    size: int | None = None
    platforms: tuple[str, ...] = ()
    multi_arch: bool = False
    created: datetime | None = None  # image created time (from the config)
    updated: datetime | None = None  # registry push/update time
    # Usage, where the registry reports it (see imagesync.usage): when the image was last
    # pulled, how many pulls the registry counts, which figure that is (pull_source, "" when
    # the listing says nothing of use) and whether "no pull time" means never pulled.
    last_pulled: datetime | None = None
    pull_count: int | None = None
    pull_source: str = ""
    pull_known: bool = False
    tagged: bool = True  # False: an artifact no tag names, served by digest (tag is "")

    def details(self) -> DigestDetails:
        return DigestDetails(
            self.media_type, self.size, self.platforms, self.multi_arch, self.created
        )

    @classmethod
    def of(
        cls, tag: str, digest: str, details: DigestDetails, updated: datetime | None = None
    ) -> ImageInfo:
        """One tag of a digest whose details are known."""
        return cls(
            tag,
            digest,
            details.media_type,
            details.size,
            tuple(details.platforms),
            details.multi_arch,
            details.created,
            updated,
        )


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    code: str = ""
    message: str = ""


@dataclass
class ClientConfig:
    url: str
    username: str = ""
    secret: str = ""
    verify_tls: bool = True
    ca_bundle: str = ""  # PEM text; written to a temporary file for requests
    allow_insecure_http: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the secret, not even one written into the URL
        url = self.url
        parts = urlsplit(url)
        if parts.password is not None:
            netloc = parts.netloc.rpartition("@")[2]
            url = parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()
        return f"ClientConfig(url={url!r}, username={self.username!r}, secret=***)"

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def flag(self, name: str, default: bool) -> bool:
        """A yes/no option, given as a bool or as text (`--option key=false`)."""
        value = self.options.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, str):
            return value.strip().lower() not in ("0", "false", "no", "off")
        return bool(value)

    def names(self, name: str) -> list[str]:
        """An option naming several things, as a list or as text separated by commas or
        spaces (no project, key, namespace or repository name contains either)."""
        value = self.options.get(name) or []
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        return [str(item).strip() for item in value if str(item).strip()]

    def number(self, name: str, default: int) -> int:
        """A positive whole-number option; a value an admin mistyped falls back to the default."""
        return as_count(self.options.get(name)) or default


def as_count(value: Any) -> int | None:
    """A size, total or count as a registry (or an option) sends it: a non-negative integer or
    its digits as text; None for anything else (missing, negative, bool, float, words, and
    digits no count has: "²", or more than 30 of them, which int() refuses past 4,300)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 30:
            return int(text)
    return None


def parse_time(value: Any) -> datetime | None:
    """Parse the RFC 3339 / ISO 8601 times registries send; None for missing or zero times."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("0001-01-01"):
        return None
    try:
        # Python 3.11 reads the usual forms as they come ("Z", 3 or 9 fractional digits), in
        # one call: a sync parses two to four times per image (push and pull times). Anything
        # else takes the normalizing path below (tests/test_parse_time.py: same results).
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return _parse_time_normalized(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_time_normalized(text: str) -> datetime | None:
    """parse_time of a stripped, non-zero time that fromisoformat refuses as it is."""
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    # Python 3.11 fromisoformat handles up to 6 fractional digits; trim nanoseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(itertools.takewhile(str.isdigit, tail))
        rest = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{rest}" if digits else head + rest
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class RateLimiter:
    """A simple shared requests-per-second limiter (token spacing)."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            time.sleep(delay)


RETRY_STATUSES = {429, 502, 503, 504}
# Requests a connection may have sent and not yet had answered (`pipeline_depth`; 1: none
# pipelined). The registry still serves a connection's requests one at a time.
PIPELINE_DEPTH = 8


# What Transport.request may pass for a request that `_Session.send_plainly` sends directly.
_PLAIN_KWARGS = frozenset({"headers", "params", "timeout", "verify", "allow_redirects"})


# A URL whose path has nothing requests' prepare_url would change (see _is_prepared_url).
_PLAIN_URL = re.compile(r"(https?://[^/?#\\\s@]+)(/[A-Za-z0-9._~/:-]*)")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")


_UNSET = object()

# requests' own HTTPAdapter.send: while it is in place, the direct lane may answer for it.
_REQUESTS_SEND = HTTPAdapter.send


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """No auth (no ~/.netrc entry for the host): the request as it is."""
    return request


class _Session(requests.Session):
    """A requests Session that reads the environment's proxy and CA bundle settings once per
    host instead of on every request.

    requests walks the whole process environment twice per request to find proxies
    (`merge_environment_settings`); at a few thousand requests per sync that was a fifth of the
    client's CPU time per request. The settings are the same for every request to one host, so
    they are cached for the life of the session (one sync). Redirects still resolve proxies for
    their own target, as before."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple, dict[str, Any]] = {}
        self._netrc: dict[tuple, Any] = {}
        self._origins: dict[str, bool] = {}
        self._direct: dict[tuple, Any] = {}
        self.lane = Lane(pool_size=10)
        self.direct = True  # False: every request through requests' adapter

    def close(self) -> None:  # noqa: D102
        super().close()
        self.lane.close()

    def prepare_request(self, request):  # noqa: D102
        # requests looks for a ~/.netrc entry on every request that carries no auth of its
        # own (two stat calls, a tenth of a sync's request CPU): look once per host.
        if not request.auth and not self.auth:
            request.auth = self._auth_of(request.url)
        return super().prepare_request(request)

    def send_plainly(
        self, method: str, url: str, kwargs: dict, max_body: int | None = None
    ) -> requests.Response:
        """`request(method, url, stream=True, **kwargs)`, the same request on the wire, without
        the per-request merging of session state that is not there: with no cookies, session
        auth, session params or hooks, and only headers, params, timeout, verify and
        allow_redirects asked for, a GET or HEAD is prepared from its parts and sent on the
        direct lane (imagesync/registries/lane.py: its body read, refused above `max_body`)
        where that applies, else given to the adapter directly (a quarter less CPU per
        request than requests' own path: a re-sync is mostly HEADs). Anything else goes
        through `request`; its body is left to read."""
        if (
            method not in ("GET", "HEAD")
            or not kwargs.keys() <= _PLAIN_KWARGS
            or self.cookies
            or self.auth
            or self.params
            or any(self.hooks.values())
        ):
            return self.request(method, url, stream=True, **kwargs)
        params = kwargs.get("params")
        if params is None and self._is_prepared_url(url):
            prepared_url = url
        else:
            probe = requests.PreparedRequest()
            probe.prepare_url(url, params)
            prepared_url = probe.url
        headers = self._merged_headers(kwargs.get("headers"))
        verify = self._direct_verify(prepared_url, kwargs.get("verify"), headers)
        if verify is not None:
            return self._send_direct(method, prepared_url, headers, kwargs, verify, max_body)
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        prepared.url = prepared_url
        prepared.prepare_headers(headers)
        prepared.prepare_body(None, None)
        prepared.prepare_auth(self._auth_of(prepared.url), prepared.url)
        prepared.prepare_hooks({})
        settings = self.merge_environment_settings(
            prepared.url, {}, True, kwargs.get("verify"), None
        )
        sent = {"timeout": kwargs.get("timeout"), **settings}
        response = self.get_adapter(prepared.url).send(prepared, **sent)
        if "set-cookie" in response.headers:  # as Session.send: the jar keeps them
            requests.cookies.extract_cookies_to_jar(self.cookies, prepared, response.raw)
        if kwargs.get("allow_redirects", True) and response.is_redirect:
            prepared._cookies = requests.cookies.RequestsCookieJar()  # what prepare made
            history = [response, *self.resolve_redirects(response, prepared, **sent)]
            response = history.pop()
            response.history = history
        return response

    def send_many_plainly(
        self,
        requests_: list[tuple[str, str]],
        headers: Mapping[str, str] | None,
        timeout: Any,
        verify: Any,
        max_body: int | None,
        depth: int,
        before_each: Any = None,
    ) -> list[requests.Response | None] | None:
        """GETs and HEADs of one origin, each as `send_plainly` would send it with these
        headers, pipelined on the direct lane (`Lane.send_many`): the answers in order, None
        for each left unanswered. A redirect is not followed (the caller sends it again the
        usual way). None when the lane cannot send them exactly as requests would."""
        if (
            not requests_
            or self.cookies
            or self.auth
            or self.params
            or any(self.hooks.values())
            or any(method not in ("GET", "HEAD") for method, _url in requests_)
        ):
            return None
        origin = _PLAIN_URL.fullmatch(requests_[0][1])
        if origin is None or not all(
            self._is_prepared_url(url) and url.startswith(origin[1] + "/")
            for _method, url in requests_
        ):
            return None
        merged = self._merged_headers(headers)
        verify = self._direct_verify(requests_[0][1], verify, merged)
        if verify is None:
            return None
        found = self.lane.send_many(
            requests_, merged, timeout, verify, max_body, depth, before_each
        )
        for index, response in enumerate(found):
            if response is not None and "set-cookie" in response.headers:
                # Later requests went without this cookie: they go again, the usual way.
                self._keep_cookies(requests_[index][0], requests_[index][1], merged, response)
                found[index + 1 :] = [None] * (len(found) - index - 1)
                break
        return found

    def _merged_headers(self, asked: Mapping[str, str] | None) -> CaseInsensitiveDict:
        """The session's headers with a request's own, as requests merges them: a None value
        drops the header, and the request's own are checked as requests checks them."""
        headers = CaseInsensitiveDict(self.headers)
        if asked:
            headers.update(asked)
            for item in list(headers.items()):
                if item[1] is None:
                    del headers[item[0]]
                elif item[0] in asked:
                    requests.utils.check_header_validity(item)
        return headers

    def _direct_verify(self, url: str, verify: Any, headers: CaseInsensitiveDict) -> Any:
        """requests' TLS verification for a request the direct lane can send exactly as
        requests would (None when it cannot): an http or https URL without credentials in
        it, no ~/.netrc entry for its host, no proxy for it, no client certificate, only
        content codings the lane decodes, and requests' own adapter for it."""
        if HTTPAdapter.send is not _REQUESTS_SEND or not self.direct:
            return None  # a test double (responses) answers in place of the adapter
        end = url.find("/", url.find("://") + 3)
        origin = url if end < 0 else url[:end]
        key = (origin, verify if isinstance(verify, bool | str | None) else _UNSET)
        found = self._direct.get(key, _UNSET)
        if found is _UNSET:
            found = self._direct[key] = self._lane_settings(origin, verify)
        if found is None or not self.lane.decodes(headers.get("Accept-Encoding")):
            return None
        return found

    def _lane_settings(self, origin: str, verify: Any) -> Any:
        scheme, _, netloc = origin.partition("://")
        url = origin + "/"
        if scheme not in ("http", "https") or "@" in netloc or not isinstance(verify, bool | str):
            return None
        if self._auth_of(url) not in (None, _no_auth):
            return None
        if not isinstance(self.get_adapter(url), _Adapter):
            return None
        settings = self.merge_environment_settings(url, {}, True, verify, None)
        if settings["cert"] is not None or requests.utils.select_proxy(url, settings["proxies"]):
            return None
        return settings["verify"]

    def _send_direct(
        self,
        method: str,
        url: str,
        headers: CaseInsensitiveDict,
        kwargs: dict,
        verify: Any,
        max_body: int | None,
    ) -> requests.Response:
        """Send on the direct lane and follow redirects as requests' `resolve_redirects`
        would for a GET or HEAD (the method kept, the Authorization header dropped when the
        host changes, at most `max_redirects`), the lane serving each hop its target
        qualifies for and requests the rest."""
        timeout = kwargs.get("timeout")
        history: list[requests.Response] = []
        while True:
            response = self.lane.send(method, url, headers, timeout, verify, max_body)
            if "set-cookie" in response.headers:  # as Session.send: the jar keeps them
                self._keep_cookies(method, url, headers, response)
            if not (kwargs.get("allow_redirects", True) and response.is_redirect):
                break
            history.append(response)
            if len(history) > self.max_redirects:
                raise requests.exceptions.TooManyRedirects(
                    f"Exceeded {self.max_redirects} redirects.", response=response
                )
            target = self._redirect_url(url, response)
            if "Authorization" in headers and self.should_strip_auth(url, target):
                headers = CaseInsensitiveDict(headers)
                del headers["Authorization"]
            url = target
            verify = (
                None if self.cookies else self._direct_verify(url, kwargs.get("verify"), headers)
            )
            if verify is None:  # requests from here on, as it would go on
                rest = {**kwargs, "headers": dict(headers), "params": None}
                response = self.send_plainly(method, url, rest)
                history.extend(response.history)
                break
        response.history = history
        return response

    def _redirect_url(self, url: str, response: requests.Response) -> str:
        """Where a redirect leads, worked out as requests' `resolve_redirects` does."""
        location = self.get_redirect_target(response)
        previous = urlsplit(url)
        if location.startswith("//"):
            location = f"{previous.scheme}:{location}"
        parts = urlsplit(location)
        if parts.fragment == "" and previous.fragment:
            parts = parts._replace(fragment=previous.fragment)
        location = parts.geturl()
        if not parts.netloc:
            location = urljoin(url, requests.utils.requote_uri(location))
        else:
            location = requests.utils.requote_uri(location)
        probe = requests.PreparedRequest()
        probe.prepare_url(location, None)
        return probe.url

    def _keep_cookies(
        self, method: str, url: str, headers: CaseInsensitiveDict, response: requests.Response
    ) -> None:
        request = requests.PreparedRequest()
        request.method, request.url, request.headers = method, url, headers
        requests.cookies.extract_cookies_to_jar(response.cookies, request, response.raw)
        requests.cookies.extract_cookies_to_jar(self.cookies, request, response.raw)

    def _is_prepared_url(self, url: str) -> bool:
        """Whether requests' `prepare_url` would give `url` back as it is, known without its
        parsing (a tenth of a HEAD's CPU here): the scheme and host as prepare_url writes
        them (checked once per origin), and a path of unreserved characters, colons and slashes
        without a dot segment, as every registry path this code builds from a repository
        and a tag name is. Anything else (a query, a percent sign, any other character) is
        left to prepare_url."""
        match = _PLAIN_URL.fullmatch(url)
        if match is None:
            return False
        origin, path = match.groups()
        plain = self._origins.get(origin)
        if plain is None:
            probe = requests.PreparedRequest()
            try:
                probe.prepare_url(origin + "/", None)
            except requests.exceptions.RequestException:
                probe.url = None
            plain = self._origins[origin] = probe.url == origin + "/"
        return plain and not _DOT_SEGMENT.search(path)

    def _auth_of(self, url: str):
        """The auth requests would give a request to `url` that carries none: the host's
        ~/.netrc entry (looked up once per host), else `_no_auth`; None where requests is
        left to decide (no environment settings, or a user:password@ in the URL and no
        entry: it takes that)."""
        if not self.trust_env:
            return None
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._netrc:
            self._netrc[key] = requests.utils.get_netrc_auth(url) or _no_auth
        found = self._netrc[key]
        return None if found is _no_auth and "@" in parts.netloc else found

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # noqa: D102
        if proxies or not isinstance(verify, bool | str | None):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert if cert is None else str(cert))
        settings = self._environment.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._environment[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}


class _Adapter(HTTPAdapter):
    """An HTTPAdapter that works out, once per host and settings, what requests works out for
    every request: the pool (its key with an `isdir` call on the CA bundle's path, a system
    call and a GIL hand-off), whether a proxy applies, and the pool's TLS settings (two more
    file checks on https). They depend only on the URL's scheme and
    host, the TLS settings and the proxies, the same for every request of a sync. A response
    without cookies is built without the cookie jar's parsing. Together a third of the
    adapter's CPU per request; `send` itself is requests' own, so its error mapping is too,
    and a test double that replaces `HTTPAdapter.send` (responses) still answers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple, Any] = {}
        self._proxies: dict[tuple, str | None] = {}

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):  # noqa: D102
        parts = urlsplit(request.url)
        key = (
            parts.scheme,
            parts.netloc,
            verify,
            cert if cert is None else str(cert),
            tuple(proxies.items()) if proxies else (),
        )
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # not yet, or closed since
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._pools[key] = pool
        return pool

    def close(self) -> None:  # noqa: D102
        # urllib3's manager forgets its pools without closing them: close the ones kept here.
        pools, self._pools = list(self._pools.values()), {}
        super().close()
        for pool in pools:
            pool.close()

    def cert_verify(self, conn, url, verify, cert):  # noqa: D102
        # requests sets the pool's TLS attributes from these on every request: same values.
        done = (url[:5].lower() == "https", verify, cert if cert is None else str(cert))
        if getattr(conn, "_imagesync_tls", None) != done:
            super().cert_verify(conn, url, verify, cert)
            conn._imagesync_tls = done

    def request_url(self, request, proxies):  # noqa: D102
        if self._proxy_of(request.url, proxies) is None:
            return request.path_url  # what requests sends when no proxy applies
        return super().request_url(request, proxies)

    def _proxy_of(self, url: str, proxies: dict | None) -> str | None:
        if not proxies:
            return None
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, tuple(proxies.items()))
        found = self._proxies.get(key, _UNSET)
        if found is _UNSET:
            found = self._proxies[key] = requests.utils.select_proxy(url, proxies)
        return found

    def build_response(self, req, resp):  # noqa: D102
        if "set-cookie" in resp.headers:
            return super().build_response(req, resp)
        # requests' build_response without the cookie jar's parsing of a response that sets
        # no cookie (it would leave the jar empty).
        response = requests.Response()
        response.status_code = resp.status
        response.headers = requests.structures.CaseInsensitiveDict(resp.headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url
        response.request = req
        response.connection = self
        return response


class Transport:
    """All HTTP of one registry connection: pooled session, timeouts, retries with backoff and
    jitter honouring Retry-After within a budget, a cap on concurrent requests, an optional
    requests-per-second limit, TLS options and a cap on response body size."""

    def __init__(self, config: ClientConfig):
        self.config = config
        opts = config.options
        self.base_url = config.url.rstrip("/")
        scheme = urlsplit(self.base_url).scheme.lower()
        if scheme not in ("http", "https"):
            raise RegistryError(
                UNSUPPORTED, "The registry URL must start with https:// (or http://)."
            )
        if scheme == "http" and not config.allow_insecure_http:
            raise RegistryError(
                UNSUPPORTED,
                "The registry URL uses plain http://; "
                "allow insecure HTTP for this registry to use it.",
            )
        self.connect_timeout = float(opts.get("connect_timeout", 5))
        self.read_timeout = float(opts.get("read_timeout", 30))
        self.max_retries = int(opts.get("max_retries", 4))
        self.retry_budget = float(opts.get("retry_budget", 60))  # seconds of waiting, per request
        self.backoff_base = float(opts.get("backoff_base", 0.5))
        self.backoff_max = float(opts.get("backoff_max", 20))
        self.max_body_bytes = int(opts.get("max_body_bytes", 64 * 1024 * 1024))
        self.max_concurrency = max(1, int(opts.get("max_concurrency", 8)))
        self.pipeline_depth = max(1, int(opts.get("pipeline_depth", PIPELINE_DEPTH)))
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        rps = opts.get("requests_per_second")
        self._limiter = RateLimiter(float(rps) if rps else None)
        self.session = _Session()
        self.session.direct = bool(opts.get("direct_http", True))
        self.session.lane.pool_size = self.max_concurrency + 2
        adapter = _Adapter(pool_connections=4, pool_maxsize=self.max_concurrency + 2, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self._ca_file = None
        if not config.verify_tls:
            self.verify: bool | str = False
        elif config.ca_bundle.strip():
            import tempfile

            self._ca_file = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
            self._ca_file.write(config.ca_bundle)
            self._ca_file.flush()
            self.verify = self._ca_file.name
        else:
            self.verify = True
        self.request_count = 0
        self._count_lock = threading.Lock()
        self._sleep = time.sleep

    def share_limits(self, slots: Any, limiter: Any) -> None:
        """Hold `slots` (a context manager) around each request and call `limiter.wait()`
        before each, instead of this connection's own cap and rate limit: the sync engine
        passes limits shared by every worker process (imagesync/sync/limits.py)."""
        self._slots = slots
        self._limiter = limiter

    def close(self) -> None:
        self.session.close()
        if self._ca_file is not None:
            import os

            self._ca_file.close()
            try:
                os.unlink(self._ca_file.name)
            except OSError:
                pass
            self._ca_file = None

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * (2**attempt)) * random.uniform(0.5, 1.0)

    def request(
        self,
        method: str,
        path: str,
        *,
        ok: Iterable[int] = (200,),
        what: str = "",
        stream_cap: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request with retries. Returns the response when its status is in `ok` or
        is any other non-retryable status (the caller maps it); raises RegistryError for
        network failures and for retryable statuses that exhaust the budget."""
        url = self.url(path)
        kwargs.setdefault("timeout", (self.connect_timeout, self.read_timeout))
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("allow_redirects", True)
        ok = set(ok)
        waited = 0.0
        attempt = 0
        label = what or "the registry"
        while True:
            outcome = self._attempt(method, url, label, kwargs)
            retry_in = None
            if isinstance(outcome, RegistryError):
                error = outcome
            elif outcome.status_code in ok or outcome.status_code not in RETRY_STATUSES:
                return outcome
            else:
                error = self._retryable_status(outcome, label)
                retry_in = parse_retry_after(outcome.headers.get("Retry-After"))
            delay = retry_in if retry_in is not None else self._backoff(attempt)
            attempt += 1
            if attempt > self.max_retries or waited + delay > self.retry_budget:
                raise error from None
            waited += delay
            self._sleep(delay)

    def request_many(
        self, requests_: list[tuple[str, str]], headers: Mapping[str, str] | None = None
    ) -> list[requests.Response | None]:
        """(method, path) GETs and HEADs of this registry pipelined on one connection, which
        holds one request slot throughout (the registry answers a connection's requests one
        at a time): the answers in order, bodies read, redirects not followed, no retries.
        None for each request left unanswered, and for all of them when pipelining does not
        apply (`pipeline_depth` 1, one request, a proxy, a test double): the caller sends
        those, and anything but the answer it wants, again through `request`."""
        if self.pipeline_depth < 2 or len(requests_) < 2:
            return [None] * len(requests_)
        sent = [(method, self.url(path)) for method, path in requests_]

        def before_each() -> None:
            self._limiter.wait()
            with self._count_lock:
                self.request_count += 1

        try:
            with self._slots:
                found = self.session.send_many_plainly(
                    sent,
                    headers,
                    (self.connect_timeout, self.read_timeout),
                    self.verify,
                    self.max_body_bytes,
                    self.pipeline_depth,
                    before_each,
                )
        except requests.exceptions.RequestException:  # a header requests refuses
            found = None
        return found if found is not None else [None] * len(requests_)

    def _attempt(
        self, method: str, url: str, label: str, kwargs: dict
    ) -> requests.Response | RegistryError:
        """One request within the concurrency cap: the response with its body read, or a
        retryable RegistryError for a timeout or a failed connection; raises RegistryError for
        failures that retrying cannot help."""
        self._limiter.wait()
        try:
            with self._slots:
                with self._count_lock:
                    self.request_count += 1
                response = self.session.send_plainly(method, url, kwargs, self.max_body_bytes)
                try:
                    if response._content_consumed:
                        pass  # the direct lane read it, within the cap
                    elif method.upper() == "HEAD":
                        # A HEAD's Content-Length describes a body that is not sent. Reading
                        # its empty body closes http.client's response before the connection
                        # goes back to the pool: otherwise another thread's request on that
                        # connection could fail with ResponseNotReady while this Response is
                        # still alive (~1% of the HEADs of a re-sync, each a retry after a
                        # backoff sleep of 0.25-0.5 s).
                        response.raw.drain_conn()
                        response._content = b""
                        response._content_consumed = True
                    else:
                        self._read_capped(response, label)
                finally:
                    response.close()
        except BodyTooLarge:
            message = f"{self.host} sent a response too large ({label})."
            raise RegistryError(BAD_RESPONSE, message) from None
        except requests.exceptions.SSLError:
            raise RegistryError(
                TLS_ERROR, f"TLS verification failed talking to {self.host}.", retryable=False
            ) from None
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
            message = f"{self.host} did not answer in time ({label})."
            return RegistryError(TIMEOUT, message, retryable=True)
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
            message = f"Cannot reach {self.host} ({label}): connection failed."
            return RegistryError(UNREACHABLE, message, retryable=True)
        except requests.exceptions.InvalidURL:
            raise RegistryError(UNSUPPORTED, "The registry URL is not valid.") from None
        except requests.exceptions.TooManyRedirects:
            message = f"{self.host} redirected the request too many times ({label})."
            raise RegistryError(BAD_RESPONSE, message) from None
        except requests.exceptions.RequestException:
            raise RegistryError(
                UNREACHABLE, f"Request to {self.host} failed ({label}).", retryable=True
            ) from None
        return response

    def _retryable_status(self, response: requests.Response, label: str) -> RegistryError:
        status = response.status_code
        if status == 429:
            message = f"{self.host} is rate limiting requests (HTTP 429, {label})."
            return RegistryError(RATE_LIMITED, message, retryable=True, status=429)
        message = f"{self.host} answered HTTP {status} ({label})."
        return RegistryError(UNREACHABLE, message, retryable=True, status=status)

    def _read_capped(self, response: requests.Response, label: str) -> None:
        """Read the body into response._content, refusing bodies above the cap."""
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            raise RegistryError(BAD_RESPONSE, f"{self.host} sent a response too large ({label}).")
        chunks = []
        total = 0
        try:
            stream = list(self._chunks(response))
        except requests.exceptions.ConnectionError as exc:
            # requests reports a read timeout inside the body as a ConnectionError.
            if any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args):
                raise requests.exceptions.ReadTimeout(str(exc)) from None
            raise
        for chunk in stream:
            total += len(chunk)
            if total > self.max_body_bytes:
                raise RegistryError(
                    BAD_RESPONSE, f"{self.host} sent a response too large ({label})."
                )
            chunks.append(chunk)
        response._content = b"".join(chunks)
        response._content_consumed = True

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        total = 0
        for chunk in response.iter_content(65536):
            total += len(chunk)
            yield chunk
            if total > self.max_body_bytes:
                return  # the caller refuses it; stop reading an endless body here

    @property
    def host(self) -> str:
        parts = urlsplit(self.base_url)
        # hostname/port only: a URL with user:secret@ must never put its secret in a message.
        try:
            port = parts.port
        except ValueError:
            port = None
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{port}" if port else (host or "the registry")


def json_body(response: requests.Response, what: str) -> Any:
    """Decode a JSON body or raise bad_response (truncated or malformed JSON)."""
    return decode_json(response.content, what)


def json_items(
    response: requests.Response, what: str, key: str = "", item: type = dict, null: bool = False
) -> tuple[list[Any], Any]:
    """The items of one listing page, and the decoded body: the body itself, or the list under
    `key` in it; `null` says that a missing, null or empty list means no items. Anything else,
    or an item that is not an `item`, is a bad_response: a page we cannot read must fail the
    listing, never shorten it."""
    body = json_body(response, what)
    items = body
    if key:
        items = body.get(key) if isinstance(body, dict) else "not an object"
    if items is None and null:
        items = []
    if not isinstance(items, list) or not all(isinstance(i, item) for i in items):
        raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected answer ({what}).")
    return items, body


def decode_json(body: bytes | str, what: str) -> Any:
    """Decode a JSON document already in hand, or raise bad_response."""
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: RecursionError
        raise RegistryError(BAD_RESPONSE, f"The registry sent malformed JSON ({what}).") from None


def error_for_status(response: requests.Response, what: str, host: str = "") -> RegistryError:
    """Map an unexpected HTTP status to a RegistryError with a stable code."""
    status = response.status_code
    where = f" from {host}" if host else ""
    if status == 401:
        return RegistryError(
            AUTH_FAILED,
            f"Authentication failed{where} ({what}): check the username and secret.",
            status=status,
        )
    if status == 403:
        return RegistryError(
            PERMISSION_DENIED, f"Permission denied{where} ({what}).", status=status
        )
    if status == 404:
        return RegistryError(NOT_FOUND, f"Not found{where} ({what}).", status=status)
    if status == 429:
        return RegistryError(
            RATE_LIMITED, f"Rate limited{where} ({what}).", retryable=True, status=status
        )
    if status in (405, 501):
        return RegistryError(
            UNSUPPORTED, f"The registry does not support this request ({what}).", status=status
        )
    if status >= 500:
        return RegistryError(
            UNREACHABLE,
            f"The registry answered HTTP {status}{where} ({what}).",
            retryable=True,
            status=status,
        )
    return RegistryError(BAD_RESPONSE, f"Unexpected HTTP {status}{where} ({what}).", status=status)


# The error codes of the Distribution spec (the `errors[].code` of a Docker / OCI error body,
# which Artifactory's Docker API also sends) -> our stable codes.
DISTRIBUTION_CODES: Mapping[str, str] = {
    "UNAUTHORIZED": AUTH_FAILED,
    "DENIED": PERMISSION_DENIED,
    "NAME_UNKNOWN": NOT_FOUND,
    "MANIFEST_UNKNOWN": NOT_FOUND,
    "BLOB_UNKNOWN": NOT_FOUND,
    "TOOMANYREQUESTS": RATE_LIMITED,
    "UNSUPPORTED": UNSUPPORTED,
}


class Listing(list):
    """What `list_images` returns: the tagged images (a plain list of ImageInfo), plus the
    untagged images the registry reports (`untagged`, one per digest no tag names) and, when
    the registry's usage data could not be read, why (`usage_missing`: (reason code,
    message)); the inventory is synchronized either way."""

    def __init__(self, images: Iterable[ImageInfo] = ()):
        super().__init__(images)
        self.untagged: list[ImageInfo] = []
        self.usage_missing: tuple[str, str] | None = None


_sizing = threading.local()
SizeHook = Callable[[int], None]  # told a listing's size before it is read whole (listing_size)


@contextmanager
def sizing_listings(callback: SizeHook) -> Iterator[None]:
    """While this block runs, `listing_size` in this thread calls `callback` (the sync engine
    raises the repository's share of its listing budget: imagesync.sync.budget)."""
    before = getattr(_sizing, "callback", None)
    _sizing.callback = callback
    try:
        yield
    finally:
        _sizing.callback = before


def listing_size(images: int) -> None:
    """A client calls this from `_list_images`, in the caller's thread, as soon as it knows how
    many images the listing it builds will hold, before it builds it (the OCI client: after
    the tag list; Harbor and SWR: the total of the first page). It may wait there while other listings hold too many (see
    imagesync.sync.budget); outside a sync it does nothing."""
    callback = getattr(_sizing, "callback", None)
    if callback is not None:
        callback(images)


# The console's own requests say who they are, so that a registry's pull notifications of
# them can be told from real pulls (imagesync.usage.is_console_agent).
USER_AGENT = "imagesync-console/0.1"

# What `list_images` is told: digests already learned, and the inventory's tag -> digest.
Known = Mapping[str, DigestDetails]
Previous = Mapping[str, str] | None


class RegistryClient:
    """Base class of all registry clients.

    Subclasses set `kind` and `repository_types` and implement `_check`, `_list_repositories`
    and `_list_images`; the public methods here give every client the same contract. Listings
    are complete or raise RegistryError: a partial listing is never returned, so the sync
    engine never prunes on one.
    """

    kind: ClassVar[str] = ""
    repository_types: ClassVar[tuple[str, ...]] = ()
    # The registry's own `errors[].code` -> our stable code, where the HTTP status alone would
    # say less (e.g. a 400 that is really "not found").
    vendor_codes: ClassVar[Mapping[str, str]] = DISTRIBUTION_CODES

    def __init__(self, config: ClientConfig, transport: Transport | None = None):
        self.config = config
        self.transport = transport or Transport(config)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def max_concurrency(self) -> int:
        return self.transport.max_concurrency

    def secret_forms(self) -> list[str]:
        """Every form in which our credentials could come back in a registry's answer: the
        secret, URL-encoded, the Basic authorization value (base64 of user:secret), and
        whatever a subclass adds (bearer tokens, session tokens)."""
        secret = self.config.secret
        if not secret:
            return []
        basic = base64.b64encode(f"{self.config.username}:{secret}".encode()).decode()
        return [basic, secret, quote(secret, safe="")]

    def scrub(self, text: str) -> str:
        """`text` with every form of our credentials replaced by ***."""
        for form in sorted(set(self.secret_forms()), key=len, reverse=True):
            if form and len(form) >= 4:
                text = text.replace(form, "***")
        return text

    def check(self) -> CheckResult:
        """Check the connection and credentials; never raises, whatever the registry sends."""
        try:
            return CheckResult(True, "", self._check())
        except RegistryError as exc:
            return CheckResult(False, exc.code, self.scrub(exc.message))
        except Exception:
            logger.warning("%s check failed unexpectedly", self.kind, exc_info=True)
            return CheckResult(False, BAD_RESPONSE, "The registry answered in an unexpected way.")

    def list_repositories(self, types: Iterable[str] | None = None) -> Iterator[RepositoryInfo]:
        """Every repository of the given types (default: all this client serves). Collected in
        full before the first is yielded, so a failure never leaves half a listing."""
        wanted = set(self.repository_types)
        if types is not None:
            wanted &= set(types)
        if wanted:
            yield from list(self._list_repositories(wanted))

    def list_images(
        self, repository: RepositoryInfo, known: Known | None = None, previous: Previous = None
    ) -> list[ImageInfo]:
        """Every tag of one repository. `known` maps digests already learned (from earlier
        syncs or other tags) to their details, so they are not fetched again.

        `previous` maps each tag the inventory holds for this repository to its stored digest
        (None: not known; {}: the inventory holds no tag of it, so every tag is new). Every
        client accepts it; one whose cost per tag depends on whether the tag is new uses it
        (the OCI client resolves a known tag with a cheap HEAD and fetches a new one in one
        GET), the others ignore it because their listing carries every tag's digest anyway."""
        found = self._list_images(repository, known or {}, previous)
        return found if isinstance(found, Listing) else Listing(found)

    def _check(self) -> str:
        """What to tell the user when the connection works; raises RegistryError when not."""
        raise NotImplementedError

    def _list_repositories(self, types: set[str]) -> Iterable[RepositoryInfo]:
        raise NotImplementedError

    def _list_images(
        self, repository: RepositoryInfo, known: Known, previous: Previous
    ) -> list[ImageInfo]:
        raise NotImplementedError

    def _error(self, response: requests.Response, what: str) -> RegistryError:
        """A RegistryError for a failed answer: the code from the HTTP status, refined by the
        first `errors[].code` of the body (`vendor_codes`); the registry's message, scrubbed,
        is kept because it often says which permission is missing."""
        error = error_for_status(response, what, self.transport.host)
        try:
            first = response.json()["errors"][0]
            vendor = str(first.get("code") or "")
            detail = self.scrub(str(first.get("message") or ""))[:200]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return error
        code = self.vendor_codes.get(vendor.upper(), error.code)
        message = error.message if code == error.code else f"{error.message} [{vendor}]"
        if detail:
            message = f"{message}: {detail}"
        return RegistryError(code, message, retryable=error.retryable, status=error.status)
