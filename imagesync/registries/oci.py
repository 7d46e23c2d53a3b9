"""Client for any OCI Distribution / Docker Registry HTTP API v2 service (repository type "other").

Distribution, Docker Hub, GHCR, Quay, GitLab, Nexus, ... all speak the same v2 API (the OCI
Distribution Specification):

* repositories come from `/v2/_catalog` (paged with `n` + relative `Link` headers), or from the
  `repositories` option for registries that have no catalog (Docker Hub);
* tags come from `/v2/<name>/tags/list` (paged the same way);
* a tag the inventory already has (named in `previous`, see `list_images`) is resolved to its
  digest with one manifest `HEAD` (cheap, and not a "pull" on Docker Hub): an unchanged tag costs
  one request. A tag new to the inventory is fetched with one manifest `GET` by tag, which gives
  digest, media type and body at once (a `HEAD` first would only add a request, since a new
  tag's manifest is almost always needed). Details of a digest never seen before: the manifest
  (already in hand for a new tag, else one `GET` by digest), plus one small config blob `GET`
  for a single-platform manifest (architecture, OS, created time). Layer blobs are never
  downloaded.
* those manifest requests, and the config blobs of new images, go pipelined
  (`Transport.request_many`, `pipeline_depth`): up to `max_concurrency` connections, each with
  up to `pipeline_depth` requests sent before their answers are back. The registry answers a
  connection's requests one at a time, so it works on no more of them at once than before;
  across a network the round trip between an answer and the next request goes away. The
  requests are the ones listed above, each sent once; an answer that is not a plain 200 (a
  redirect, an error, a 401) and a request left unanswered are asked again one by one, with
  the usual retries, challenges and error reasons.

A digest is immutable, so what was learned about it is cached by the client and shared between
repositories: a base image pushed into fifty repositories is fetched once. Config blobs are
cached the same way by their own digest. The client keeps the last CACHE_SIZE of each (the sync
keeps every digest of a registry in its own compact map and passes it as `known`, learning a
repository's as soon as it is listed: the client's cache serves the repositories listed at the
same time, and a config fetched ahead until its manifest's details are read), and at most
TAGS_IN_FLIGHT tags of a repository are queued at once, so a client's memory does not grow with
the registry or with a repository of 100,000 tags.

Options (`ClientConfig.options`), besides the Transport ones (max_concurrency, ...):
`catalog_page_size` (default 1000), `tags_page_size` (default 1000), `repositories` (list of
repository paths that replaces the catalog), `resolve_new_tags_with_get` (default true; false
resolves every tag with a `HEAD` first and GETs only digests never seen: one request more per
new image, but on Docker Hub a manifest `GET` counts against the pull rate limit and a `HEAD`
does not, so set it false for rate-limited registries).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from imagesync.reasons import (
    AUTH_FAILED,
    BAD_RESPONSE,
    NOT_FOUND,
    PERMISSION_DENIED,
    RATE_LIMITED,
    UNSUPPORTED,
)
from imagesync.registries import base, manifests
from imagesync.registries.base import ImageInfo, RegistryClient, RegistryError, RepositoryInfo
from imagesync.registries.manifests import DIGEST_RE, MANIFEST_ACCEPT, ConfigFacts

CATALOG_SCOPE = "registry:catalog:*"
DEFAULT_PAGE_SIZE = 1000
FALLBACK_PAGE_SIZE = 100
MAX_PAGES = 100_000  # a registry that links pages forever is broken, not big
CACHE_SIZE = 16_384  # digests' details (and config blobs' facts) a client keeps (~0.4 KB each)
TAGS_IN_FLIGHT = 256  # tags of one repository queued for the request threads at once


# --- WWW-Authenticate -------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One parsed `WWW-Authenticate` challenge."""

    scheme: str  # lower case: "bearer" or "basic"
    params: Mapping[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        return self.params.get("scope", "")


_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str | None) -> list[Challenge]:
    """Parse a WWW-Authenticate header (RFC 7235): one or more challenges, each a scheme and
    comma-separated `key=value` or `key="quoted, value"` parameters. Never raises: a header we
    cannot read yields the challenges read so far."""
    text = header or ""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(text):
        while pos < len(text) and text[pos] in ", \t":
            pos += 1
        match = _SCHEME_RE.match(text, pos)
        if not match:
            break
        scheme = match.group(1).lower()
        pos = match.end()
        params: dict[str, str] = {}
        while pos < len(text):
            param = _PARAM_RE.match(text, pos)
            if not param:
                break
            key, value = param.group(1).lower(), param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[key] = value
            pos = param.end()
            if pos < len(text) and text[pos] == ",":
                pos += 1
        challenges.append(Challenge(scheme, params))
    return challenges


def pick_challenge(header: str | None) -> Challenge | None:
    """The challenge we answer: Bearer when offered, else Basic."""
    challenges = parse_challenges(header)
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


# --- client ---------------------------------------------------------------------------------


@dataclass
class _Once:
    """What `OciClient._once` knows: the values fetched (the last `size`, least recently used
    first) and the fetches under way (one Future per key, dropped once it is done)."""

    size: int
    values: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    pending: dict[str, Future] = field(default_factory=dict)

    def keep(self, key: str, value: Any) -> None:
        self.values[key] = value
        if len(self.values) > self.size:
            self.values.popitem(last=False)


@dataclass(slots=True)
class _Answer:
    """What `OciClient._pipelined` learned of a tag: its digest and media type (the manifest
    answer's Content-Type), and, once the manifest is in hand, its body, the Content-Type it
    came with when asked by digest (`_fetch_details` reads it; "" for a GET by tag, as there)
    and its JSON."""

    digest: str
    media_type: str
    body: bytes | None = None
    sent_type: str = ""
    document: Any = None


def registry_code(error: RegistryError) -> str:
    """The registry's own error code (e.g. "MANIFEST_UNKNOWN") behind a RegistryError, if any."""
    return getattr(error, "registry_code", "")


class OciClient(RegistryClient):
    """Lists repositories and images of an OCI / Docker Registry v2 service."""

    kind = "other"
    repository_types = ("other",)

    def __init__(self, config: base.ClientConfig, transport: base.Transport | None = None):
        super().__init__(config, transport)
        self._auth_lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._digest_lock = threading.Lock()
        self._digests = _Once(CACHE_SIZE)
        self._configs = _Once(CACHE_SIZE)
        self._executor: ThreadPoolExecutor | None = None
        self._new_tags_by_get = config.flag("resolve_new_tags_with_get", True)
        self._blobs_redirected = False  # config blobs are not asked for ahead (_configs_ahead)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        super().close()

    # --- public interface ---------------------------------------------------------------

    def _check(self) -> str:
        """GET /v2/ with credentials: does this endpoint speak the v2 API and accept us?"""
        try:
            self._call("GET", "v2/", scope="", what="API version check")
        except RegistryError as exc:
            if exc.code != NOT_FOUND:
                raise
            message = "The endpoint does not serve the Docker Registry v2 API."
            raise RegistryError(UNSUPPORTED, message) from None
        return ""

    def _list_repositories(self, types: set[str]) -> list[RepositoryInfo]:
        """Every repository: the `repositories` option when set, else the whole catalog."""
        paths = [p.strip("/") for p in self.config.names("repositories") if p.strip("/")]
        paths = paths or self._catalog()
        return [RepositoryInfo.from_path("other", p) for p in dict.fromkeys(paths)]

    def _list_images(
        self, repository: RepositoryInfo, known: base.Known, previous: Mapping[str, str] | None
    ) -> list[ImageInfo]:
        """Every tag of one repository with its digest and details; complete or raises.

        `previous` (tag -> digest stored by the last sync) says which tags are new: those are
        fetched with one manifest GET each instead of HEAD + GET (see the module docstring);
        the others get a HEAD. None means the caller does not know: every tag gets a HEAD
        first, as with `resolve_new_tags_with_get` false."""
        path = repository.path
        tags = self._tags(path)
        base.listing_size(len(tags))  # may wait while other listings hold too many images
        by_get = previous is not None and self._new_tags_by_get
        old_tags = previous or {}
        executor = self._pool()
        # Each block of tags is asked for pipelined first (`_pipelined`: most answers come
        # back there). Then one task per tag resolves what is left and, when its digest is
        # new, fetches the details right away: no barrier between the HEADs and the GETs, so
        # the workers stay busy. At most TAGS_IN_FLIGHT are queued at a time (a Future each),
        # collected in the tags' order. A tag answered ahead whose details need no request is
        # done here, without a task.
        queued: deque[Future] = deque()
        images: list[ImageInfo] = []
        collected = 0  # tags whose Future was collected, in order

        def collect(future: Future) -> None:
            nonlocal collected
            result, tag = future.result(), tags[collected]
            collected += 1
            if result is None:  # the tag was deleted while we listed
                return
            digest, media_type, info = result
            image = ImageInfo.of(tag, digest, info)  # plain v2 does not tell push times
            image.media_type = image.media_type or media_type
            images.append(image)

        try:
            for start in range(0, len(tags), TAGS_IN_FLIGHT):
                block = tags[start : start + TAGS_IN_FLIGHT]
                by_gets = [by_get and tag not in old_tags for tag in block]
                ahead = self._pipelined(path, block, by_gets, known)
                for tag, get, answer in zip(block, by_gets, ahead, strict=True):
                    if answer is not None and (answer.body is not None or answer.digest in known):
                        done: Future = Future()
                        try:
                            done.set_result(self._image_of(path, tag, known, get, answer))
                        except Exception as exc:  # noqa: BLE001 - raised in the tags' order
                            done.set_exception(exc)
                        queued.append(done)
                    else:
                        queued.append(
                            executor.submit(self._image_of, path, tag, known, get, answer)
                        )
                    if len(queued) >= TAGS_IN_FLIGHT:
                        collect(queued.popleft())
            while queued:
                collect(queued.popleft())
        except BaseException:
            for future in queued:  # the listing has failed: do not keep asking the registry
                future.cancel()
            raise
        return images

    # --- listings -----------------------------------------------------------------------

    def _catalog(self) -> list[str]:
        size = self.config.number("catalog_page_size", DEFAULT_PAGE_SIZE)
        try:
            return self._paged("v2/_catalog", size, "repositories", CATALOG_SCOPE, "catalog")
        except RegistryError as exc:
            if exc.status == 400 and registry_code(exc) == "PAGINATION_NUMBER_INVALID":
                if size > FALLBACK_PAGE_SIZE:
                    return self._paged(
                        "v2/_catalog", FALLBACK_PAGE_SIZE, "repositories", CATALOG_SCOPE, "catalog"
                    )
            raise

    def _tags(self, path: str) -> list[str]:
        size = self.config.number("tags_page_size", DEFAULT_PAGE_SIZE)
        tags = self._paged(
            f"v2/{quote(path, safe='/')}/tags/list",
            size,
            "tags",
            self._pull_scope(path),
            f"tags of {path}",
        )
        return list(dict.fromkeys(tags))

    def _paged(self, path: str, size: int, key: str, scope: str, what: str) -> list[str]:
        """Follow `Link: <...>; rel="next"` (relative URLs, resolved against the page URL)
        until there is none. Every page must be well formed or the whole listing fails."""
        items: list[str] = []
        url: str | None = self.transport.url(path)
        params: dict[str, Any] | None = {"n": size}
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= MAX_PAGES:
                raise RegistryError(BAD_RESPONSE, f"The registry links pages in a loop ({what}).")
            seen.add(url)
            response = self._call("GET", url, scope=scope, what=what, params=params)
            page, _body = base.json_items(response, what, key, str, null=True)
            items.extend(page)
            link = response.links.get("next", {}).get("url")
            url = urljoin(response.url or url, link) if link else None
            if url is not None and not self._same_origin(url):
                # Our credentials go with every page request: never follow a Link elsewhere.
                raise RegistryError(
                    BAD_RESPONSE, f"The registry linked the next page to another host ({what})."
                )
            params = None  # the Link carries the cursor and page size
        return items

    # --- tags and digests ---------------------------------------------------------------

    def _image_of(
        self,
        path: str,
        tag: str,
        known: Mapping[str, base.DigestDetails],
        by_get: bool = False,
        answer: _Answer | None = None,
    ) -> tuple[str, str, base.DigestDetails] | None:
        """A tag's digest, media type and details; `answer` is what `_pipelined` found."""
        if answer is None:
            resolved = self._get_tag(path, tag) if by_get else self._resolve_tag(path, tag)
            if resolved is None:
                return None
            answer = _Answer(*resolved)
        info = known.get(answer.digest)
        if info is None:
            info = self._details(path, answer.digest, answer)
        return answer.digest, answer.media_type, info

    # --- pipelined requests -------------------------------------------------------------

    def _pipelined(
        self,
        path: str,
        tags: list[str],
        by_gets: list[bool],
        known: Mapping[str, base.DigestDetails],
    ) -> list[_Answer | None]:
        """Ask for the tags' manifests pipelined (`Transport.request_many`): a GET where
        `by_gets` says so, a HEAD otherwise, with what `_get_tag` and `_resolve_tag` send.
        Each tag's answer when it is a plain 200 that tells the digest, else None: `_image_of`
        then asks again one by one, which handles every other answer. What the details of new
        digests need comes pipelined too: the manifest of a digest first seen by HEAD (`_by_
        digest`), and the config blobs (`_configs_ahead`)."""
        if self.transport.pipeline_depth < 2 or len(tags) < 2:
            return [None] * len(tags)
        headers = {"Accept": MANIFEST_ACCEPT}
        authorization = self._authorization(self._pull_scope(path))
        if authorization:
            headers["Authorization"] = authorization
        prefix = f"v2/{quote(path, safe='/')}/manifests/"
        asked = [
            ("GET" if get else "HEAD", prefix + quote(tag, safe=""))
            for tag, get in zip(tags, by_gets, strict=True)
        ]
        found: list[_Answer | None] = []
        for (method, _url), response in zip(asked, self._spread(asked, headers), strict=True):
            if response is None or response.status_code != 200:
                found.append(None)
            elif method == "GET":
                found.append(_Answer(*self._digest_of(response)))
            else:
                digest = response.headers.get("Docker-Content-Digest", "").strip()
                media_type = manifests.media_type(response.headers.get("Content-Type"))
                found.append(_Answer(digest, media_type) if DIGEST_RE.match(digest) else None)
        new = [a for a in found if a is not None and a.digest not in known]
        with self._digest_lock:
            new = [a for a in new if a.digest not in self._digests.values]
        self._by_digest(path, [a for a in new if a.body is None], headers)
        self._configs_ahead(path, [a for a in new if a.body is not None], authorization)
        return found

    def _by_digest(self, path: str, answers: list[_Answer], headers: Mapping[str, str]) -> None:
        """GET the manifests of new digests first seen by HEAD, pipelined, once per digest, as
        `_fetch_details` asks for them, into their answers. A manifest that does not come back
        as a plain 200 matching its digest is left to `_fetch_details`."""
        wanted: dict[str, list[_Answer]] = {}
        for answer in answers:
            wanted.setdefault(answer.digest, []).append(answer)
        if len(wanted) < 2:
            return
        prefix = f"v2/{quote(path, safe='/')}/manifests/"
        asked = [("GET", prefix + digest) for digest in wanted]
        for (digest, same), response in zip(
            wanted.items(), self._spread(asked, headers), strict=True
        ):
            if response is None or response.status_code != 200:
                continue
            body = response.content
            if digest.startswith("sha256:") and hashlib.sha256(body).hexdigest() != digest[7:]:
                continue  # `_fetch_details` asks again and reports it
            for answer in same:
                answer.body = body
                answer.sent_type = response.headers.get("Content-Type") or ""

    def _configs_ahead(self, path: str, answers: list[_Answer], authorization: str | None) -> None:
        """Parse the new manifests in `answers` (kept there for their details) and fetch their
        config blobs not yet known, pipelined, into the cache `_config_facts` fills. A blob
        that does not come back as a plain 200 with a config is left to `_config_facts`."""
        wanted: dict[str, None] = {}
        for answer in answers:
            try:
                answer.document = base.decode_json(answer.body, f"manifest {path}@{answer.digest}")
            except RegistryError:
                continue  # `_details` reports it
            document = answer.document
            config = document.get("config") if isinstance(document, dict) else None
            if isinstance(config, dict) and "manifests" not in document:
                digest = manifests.config_to_read(config)
                if digest:
                    wanted[digest] = None
        with self._digest_lock:
            wanted = {d: None for d in wanted if d not in self._configs.values}
        if len(wanted) < 2 or self._blobs_redirected:
            return
        prefix = f"v2/{quote(path, safe='/')}/blobs/"
        asked = [("GET", prefix + digest) for digest in wanted]
        headers = {"Authorization": authorization} if authorization else {}
        for digest, blob in zip(wanted, self._spread(asked, headers), strict=True):
            if blob is not None and blob.is_redirect:
                # Blobs are served elsewhere (object storage, a CDN): each one asked ahead
                # would be asked twice. `_config_facts` follows the redirects from now on.
                self._blobs_redirected = True
            if blob is None or blob.status_code != 200:
                continue
            try:
                facts = manifests.config_facts(
                    base.json_body(blob, f"image config {path}@{digest}")
                )
            except RegistryError:
                continue
            with self._digest_lock:
                self._configs.keep(digest, facts)

    def _spread(
        self, asked: list[tuple[str, str]], headers: Mapping[str, str]
    ) -> list[requests.Response | None]:
        """`Transport.request_many` for `asked`, spread over up to max_concurrency
        connections when there are enough requests to fill more than one (at least two
        pipelines' depth each): the answers in the order asked."""
        transport = self.transport
        parts = max(1, min(transport.max_concurrency, len(asked) // (2 * transport.pipeline_depth)))
        if parts == 1:
            return transport.request_many(asked, headers)
        size = -(-len(asked) // parts)
        chunks = [asked[start : start + size] for start in range(0, len(asked), size)]
        others = [self._pool().submit(transport.request_many, c, headers) for c in chunks[1:]]
        answers = transport.request_many(chunks[0], headers)
        for future in others:
            answers += future.result()
        return answers

    def _get_tag(self, path: str, tag: str) -> tuple[str, str, bytes] | None:
        """A new tag in one request: GET its manifest, digest from Docker-Content-Digest (or
        the sha256 of the body). None when the tag disappeared since the tag listing."""
        url = f"v2/{quote(path, safe='/')}/manifests/{quote(tag, safe='')}"
        what = f"manifest {path}:{tag}"
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            response = self._call(
                "GET", url, scope=self._pull_scope(path), what=what, headers=headers
            )
        except RegistryError as exc:
            if exc.status == 404 and registry_code(exc) == "MANIFEST_UNKNOWN":
                return None
            raise
        return self._digest_of(response)

    @staticmethod
    def _digest_of(response: requests.Response) -> tuple[str, str, bytes]:
        body = response.content
        digest = response.headers.get("Docker-Content-Digest", "").strip()
        if not DIGEST_RE.match(digest):
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return digest, manifests.media_type(response.headers.get("Content-Type")), body

    def _resolve_tag(self, path: str, tag: str) -> tuple[str, str, bytes | None] | None:
        """Tag -> (digest, media type, manifest body if we had to GET it). None when the tag
        disappeared between the tag listing and now."""
        url = f"v2/{quote(path, safe='/')}/manifests/{quote(tag, safe='')}"
        what = f"manifest {path}:{tag}"
        scope = self._pull_scope(path)
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            response = self._call("HEAD", url, scope=scope, what=what, headers=headers)
        except RegistryError as exc:
            if exc.status != 404:
                raise
            # HEAD has no body to tell "tag deleted meanwhile" from "repository gone": ask.
            try:
                self._call("GET", url, scope=scope, what=what, headers=headers)
            except RegistryError as again:
                if again.status == 404 and registry_code(again) == "MANIFEST_UNKNOWN":
                    return None
                raise
            response = None
        digest = response.headers.get("Docker-Content-Digest", "").strip() if response else ""
        if response is not None and DIGEST_RE.match(digest):
            return digest, manifests.media_type(response.headers.get("Content-Type")), None
        # Older registries omit the digest on HEAD: GET the manifest and hash it ourselves.
        return self._digest_of(self._call("GET", url, scope=scope, what=what, headers=headers))

    def _details(self, path: str, digest: str, answer: _Answer | None = None) -> base.DigestDetails:
        """Details of a digest, fetched at most once per client; `answer` may hold its
        manifest already."""
        return self._once(self._digests, digest, lambda: self._fetch_details(path, digest, answer))

    def _once(self, cache: _Once, key: str, fetch: Any) -> Any:
        """`fetch()` once per key while the cache keeps its value: concurrent askers for the
        same key wait for the first one; a failed fetch is retried by the next asker."""
        while True:
            with self._digest_lock:
                if key in cache.values:
                    cache.values.move_to_end(key)
                    return cache.values[key]
                future = cache.pending.get(key)
                owner = future is None
                if owner:
                    future = cache.pending[key] = Future()
            if owner:
                break
            try:
                return future.result()
            except RegistryError:
                continue  # the fetch failed and was forgotten: this asker tries again
        try:
            value = fetch()
        except BaseException as exc:
            with self._digest_lock:
                del cache.pending[key]
            future.set_exception(exc)
            raise
        with self._digest_lock:
            del cache.pending[key]
            cache.keep(key, value)
        future.set_result(value)
        return value

    def _fetch_details(self, path: str, digest: str, answer: _Answer | None) -> base.DigestDetails:
        what = f"manifest {path}@{digest}"
        body, sent_type, document = None, "", None
        if answer is not None:
            body, sent_type, document = answer.body, answer.sent_type, answer.document
        if body is None:
            response = self._call(
                "GET",
                f"v2/{quote(path, safe='/')}/manifests/{digest}",
                scope=self._pull_scope(path),
                what=what,
                headers={"Accept": MANIFEST_ACCEPT},
            )
            body = response.content
            sent_type = response.headers.get("Content-Type") or ""
            if digest.startswith("sha256:") and hashlib.sha256(body).hexdigest() != digest[7:]:
                raise RegistryError(
                    BAD_RESPONSE, f"The manifest does not match its digest ({what})."
                )

        def read_config(config: str) -> ConfigFacts:
            return self._once(self._configs, config, lambda: self._config_facts(path, config))

        if document is None:
            document = base.decode_json(body, what)
        return manifests.details(document, sent_type, what, read_config)

    def _config_facts(self, path: str, config_digest: str) -> ConfigFacts:
        """Platform and created time from a small image config blob."""
        what = f"image config {path}@{config_digest}"
        blob = self._call(
            "GET",
            f"v2/{quote(path, safe='/')}/blobs/{config_digest}",
            scope=self._pull_scope(path),
            what=what,
        )
        return manifests.config_facts(base.json_body(blob, what))

    # --- HTTP and auth ------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        with self._digest_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.transport.max_concurrency, thread_name_prefix="oci"
                )
            return self._executor

    def _same_origin(self, url: str) -> bool:
        ours, other = urlsplit(self.transport.base_url), urlsplit(url)
        return (ours.scheme.lower(), ours.netloc.lower()) == (
            other.scheme.lower(),
            other.netloc.lower(),
        )

    @staticmethod
    def _pull_scope(path: str) -> str:
        return f"repository:{path}:pull"

    def _call(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        what: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        """One authenticated request: answers a 401 challenge once (new token, or Basic), and
        turns any non-200 answer into a RegistryError with a stable code."""
        sent = dict(headers or {})
        authorization = self._authorization(scope)
        if authorization:
            sent["Authorization"] = authorization
        response = self.transport.request(method, path, what=what, headers=sent, params=params)
        if response.status_code == 401:
            challenge = pick_challenge(response.headers.get("WWW-Authenticate"))
            retry_with = self._answer(challenge, scope, authorization) if challenge else None
            if retry_with:
                sent["Authorization"] = retry_with
                response = self.transport.request(
                    method, path, what=what, headers=sent, params=params
                )
        if response.status_code == 401 and sent.get("Authorization"):
            final = pick_challenge(response.headers.get("WWW-Authenticate"))
            if final is not None and final.params.get("error") == "insufficient_scope":
                # Authenticated fine, but these credentials may not read this (RFC 6750 §3.1).
                error = RegistryError(
                    PERMISSION_DENIED,
                    f"Permission denied from {self.transport.host} ({what}).",
                    status=401,
                )
                error.registry_code = "DENIED"
                raise error
        if response.status_code != 200:
            raise self._error(response, what)
        return response

    def _authorization(self, scope: str) -> str | None:
        """The Authorization header for a scope under the last challenge seen (none before)."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._basic()
        key = (challenge.realm, challenge.service, scope)
        with self._auth_lock:
            cached = self._tokens.get(key)
        if cached and cached[1] > self._now():
            return f"Bearer {cached[0]}"
        return self._fetch_token(challenge, scope)

    def _answer(self, challenge: Challenge, scope: str, sent: str | None) -> str | None:
        """How to retry after a 401 carrying `challenge`, or None when retrying cannot help."""
        self._challenge = challenge
        if challenge.scheme == "basic":
            basic = self._basic()
            return basic if basic and basic != sent else None
        if challenge.scheme != "bearer" or not challenge.realm:
            return None
        with self._auth_lock:
            self._tokens.pop((challenge.realm, challenge.service, scope), None)
        return self._fetch_token(challenge, scope)

    def _basic(self) -> str | None:
        if not self.config.username and not self.config.secret:
            return None
        raw = f"{self.config.username}:{self.config.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def _fetch_token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.realm
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(BAD_RESPONSE, "The registry named an invalid token service.")
        if parts.scheme == "http" and not self.config.allow_insecure_http:
            raise RegistryError(
                UNSUPPORTED, "The registry's token service uses plain http://; refusing to use it."
            )
        params: list[tuple[str, str]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        scopes = [s for s in dict.fromkeys([scope, challenge.scope]) if s]
        params += [("scope", s) for s in scopes]
        headers = {}
        basic = self._basic()
        if basic:
            headers["Authorization"] = basic
        response = self.transport.request(
            "GET", realm, what="token", headers=headers, params=params
        )
        if response.status_code != 200:
            if response.status_code in (401, 403):
                raise RegistryError(
                    AUTH_FAILED,
                    f"The token service of {self.transport.host} refused the credentials: "
                    "check the username and secret.",
                    status=response.status_code,
                )
            raise base.error_for_status(response, "token", self.transport.host)
        body = base.json_body(response, "token")
        token = None
        if isinstance(body, dict):
            token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(BAD_RESPONSE, "The token service sent no token.")
        expires_in = body.get("expires_in")
        if (
            not isinstance(expires_in, int | float)
            or isinstance(expires_in, bool)
            or expires_in <= 0
        ):
            expires_in = 60
        # Renew a little early so a token does not expire between our check and its use.
        lifetime = max(1.0, float(expires_in) - min(10.0, float(expires_in) / 10))
        with self._auth_lock:
            self._tokens[(realm, challenge.service, scope)] = (token, self._now() + lifetime)
        return f"Bearer {token}"

    def _error(self, response: requests.Response, what: str) -> RegistryError:
        """A RegistryError for a non-200 answer, preferring the OCI error body's code."""
        codes: list[str] = []
        detail = ""
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = None
            errors = body.get("errors") if isinstance(body, dict) else None
            if isinstance(errors, list):
                for item in errors:
                    if isinstance(item, dict) and isinstance(item.get("code"), str):
                        codes.append(item["code"].upper())
                        if not detail and isinstance(item.get("message"), str):
                            detail = item["message"]
        by_status = base.error_for_status(response, what, self.transport.host)
        for code in codes:
            if code in self.vendor_codes:
                mapped = self.vendor_codes[code]
                message = (
                    by_status.message if mapped == by_status.code else self._message(mapped, what)
                )
                error = RegistryError(
                    mapped,
                    self._with_detail(message, code, detail),
                    retryable=mapped == RATE_LIMITED or by_status.retryable,
                    status=response.status_code,
                )
                error.registry_code = code
                return error
        if codes:
            by_status.message = self._with_detail(by_status.message, codes[0], detail)
            by_status.args = (by_status.message,)
            by_status.registry_code = codes[0]
        return by_status

    def _message(self, code: str, what: str) -> str:
        host = self.transport.host
        return {
            AUTH_FAILED: (
                f"Authentication failed from {host} ({what}): check the username and secret."
            ),
            PERMISSION_DENIED: f"Permission denied from {host} ({what}).",
            NOT_FOUND: f"Not found from {host} ({what}).",
            RATE_LIMITED: f"Rate limited by {host} ({what}).",
            UNSUPPORTED: f"The registry does not support this request ({what}).",
        }[code]

    def _with_detail(self, message: str, code: str, detail: str) -> str:
        text = f"{message} [{code}"
        detail = " ".join(self.scrub(detail).split())[:200]
        if detail and "***" not in detail:  # a detail that echoed credentials says nothing useful
            text += f": {detail}"
        return text + "]"

    def secret_forms(self) -> list[str]:
        tokens = [token for token, _expiry in list(self._tokens.values())]
        return [*super().secret_forms(), *tokens]
