"""JFrog Artifactory client: Docker repositories, their images and tags through AQL.

A Repository in our model is one image path inside one Artifactory repository key
(`<repo-key>/<image>`, what `docker pull <host>/<repo-key>/<image>` uses with the
repository-path method). One AQL query per repository key finds every manifest of every image
and tag at once; it is cached for the client's lifetime so listing fifty images of a key costs
one AQL call. AQL has no sizes or platforms, so (option `fetch_manifests`, default on) each new
digest's manifest — and for single images the small config blob, never a layer — is read
through the Docker API. See reference/registry-apis.md section 3.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urljoin

import requests

from imagesync.registries.base import (
    AUTH_FAILED,
    BAD_RESPONSE,
    NOT_FOUND,
    PERMISSION_DENIED,
    UNSUPPORTED,
    CheckResult,
    ClientConfig,
    DigestDetails,
    ImageInfo,
    Platform,
    RegistryClient,
    RegistryError,
    RepositoryInfo,
    Transport,
    error_for_status,
    json_body,
    parse_time,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
MANIFEST_NAMES = ("manifest.json", "list.manifest.json")
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # an image config is a few KiB; anything huge is not one

# Docker-API error codes (the /api/docker/... path answers in Docker format).
DOCKER_CODES = {
    "UNAUTHORIZED": AUTH_FAILED,
    "DENIED": PERMISSION_DENIED,
    "NAME_UNKNOWN": NOT_FOUND,
    "MANIFEST_UNKNOWN": NOT_FOUND,
    "BLOB_UNKNOWN": NOT_FOUND,
}

AUTH_MODES = ("basic", "token", "apikey", "anonymous")


@dataclass(frozen=True)
class ManifestEntry:
    """One tag as AQL reports it: the manifest file stored under `<image>/<tag>/`."""

    tag: str
    digest: str
    media_type: str
    is_list: bool
    created: datetime | None
    updated: datetime | None


def aql_query(repo: str, transitive: bool = False) -> str:
    """The one AQL query listing every manifest (all images, all tags) of one repository."""
    criteria = {
        "repo": {"$eq": repo},
        "$or": [{"name": {"$eq": name}} for name in MANIFEST_NAMES],
    }
    fields = (
        "repo",
        "path",
        "name",
        "size",
        "created",
        "modified",
        "updated",
        "sha256",
        "property",
    )
    query = f"items.find({json.dumps(criteria, separators=(',', ':'))})"
    query += ".include({})".format(",".join(json.dumps(f) for f in fields))
    if transitive:  # virtual (and remote) keys hold no items themselves
        query += ".transitive()"
    return query


_FRACTION = re.compile(r"(T\d\d:\d\d:\d\d)\.(\d+)")


def rfc3339_time(value: Any) -> datetime | None:
    """AQL (and config) times carry milliseconds and a numeric offset (2021-03-21T13:54:52.383+02:00).
    base.parse_time mixes the offset digits into the fraction and loses the offset, so the
    fraction is taken off here and put back after parsing."""
    if not isinstance(value, str):
        return parse_time(value)
    match = _FRACTION.search(value)
    if not match:
        return parse_time(value)
    parsed = parse_time(value[: match.start(2) - 1] + value[match.end(2) :])
    if parsed is None:
        return None
    return parsed.replace(microsecond=int(match.group(2)[:6].ljust(6, "0")))


def _platform(data: Mapping[str, Any]) -> str:
    os_name = str(data.get("os") or "")
    arch = str(data.get("architecture") or "")
    if not os_name and not arch:
        return ""
    return str(Platform(os_name, arch, str(data.get("variant") or "")))


def _is_attestation(entry: Mapping[str, Any]) -> bool:
    annotations = entry.get("annotations") or {}
    if isinstance(annotations, dict):
        if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            return True
    platform = entry.get("platform") or {}
    return (
        isinstance(platform, dict)
        and platform.get("os") == "unknown"
        and platform.get("architecture") == "unknown"
    )


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def name_list(value: Any) -> list[str]:
    """An option naming several things, given as a list or a comma-separated string."""
    if not value:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def _newer(entry: ManifestEntry, other: ManifestEntry) -> bool:
    if other.updated is None:
        return True
    return entry.updated is not None and entry.updated > other.updated


def _skipped(path: str, name: str) -> bool:
    """Not a tag: upload leftovers, multi-arch children stored by digest, remote catalogs."""
    if name == "repository.catalog" or not path or path == ".":
        return True
    parts = path.split("/")
    return any(
        part == "_uploads" or part.startswith("sha256:") or part.startswith("sha256__")
        for part in parts
    )


class JFrogClient(RegistryClient):
    """Lists Docker images of a JFrog Artifactory instance.

    Auth (`options["auth"]`): "token" sends `Authorization: Bearer <secret>` (the default when
    no username is set), "apikey" sends `X-JFrog-Art-Api: <secret>`, "basic" sends
    `user:secret` (the default when a username is set). The endpoint URL may or may not end
    with /artifactory.
    """

    kind: ClassVar[str] = "jfrog"
    repository_types: ClassVar[tuple[str, ...]] = ("jfrog",)

    def __init__(self, config: ClientConfig, transport: Transport | None = None):
        super().__init__(config, transport)
        base = self.transport.base_url
        self._root = "" if base.rstrip("/").endswith("/artifactory") else "artifactory/"
        mode = str(config.option("auth") or "").lower()
        if not mode:
            mode = "basic" if config.username else ("token" if config.secret else "anonymous")
        if mode not in AUTH_MODES:
            raise RegistryError(UNSUPPORTED, f"Unknown JFrog auth method {mode!r}.")
        self.auth_mode = mode
        # Auth goes on each request, not on the session, so a redirect to another host (a
        # blob in cloud storage) never carries it.
        self._auth_headers: dict[str, str] = {}
        self._basic: tuple[str, str] | None = None
        if mode == "token":
            self._auth_headers["Authorization"] = f"Bearer {config.secret}"
        elif mode == "apikey":
            self._auth_headers["X-JFrog-Art-Api"] = config.secret
        elif mode == "basic":
            self._basic = (config.username, config.secret)
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._listings: dict[str, dict[str, dict[str, ManifestEntry]]] = {}
        self._details: dict[str, DigestDetails] = {}
        self.aql_calls = 0

    # --- HTTP -------------------------------------------------------------------------------

    def _path(self, rest: str) -> str:
        return f"{self._root}{rest}"

    def _scrub(self, text: str) -> str:
        return self.scrub(text)

    def _call(
        self, method: str, rest: str, what: str, *, headers: Mapping[str, str] | None = None, **kw
    ) -> requests.Response:
        """One authenticated request; any status but 200 becomes a RegistryError."""
        response = self.transport.request(
            method,
            self._path(rest),
            what=what,
            headers={**self._auth_headers, **(headers or {})},
            auth=self._basic,
            **kw,
        )
        if response.status_code != 200:
            raise self._error(response, what)
        return response

    def _error(self, response: requests.Response, what: str) -> RegistryError:
        """Stable code from the status, refined by Docker-format codes; Artifactory's message
        (scrubbed of the secret) is kept because it often says which permission is missing."""
        error = error_for_status(response, what, self.transport.host)
        try:
            first = response.json()["errors"][0]
            vendor_code = str(first.get("code") or "")
            detail = str(first.get("message") or "")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return error
        code = DOCKER_CODES.get(vendor_code, error.code)
        detail = self._scrub(detail)[:200]
        message = f"{error.message}: {detail}" if detail else error.message
        return RegistryError(code, message, retryable=error.retryable, status=error.status)

    # --- interface --------------------------------------------------------------------------

    def check(self) -> CheckResult:
        """The ping is anonymous, so credentials are proved by listing Docker repositories."""
        try:
            repos = self._docker_repositories()
        except RegistryError as exc:
            return CheckResult(False, exc.code, exc.message)
        who = self.config.username or f"{self.auth_mode} auth"
        message = f"Connected to Artifactory as {who}; {len(repos)} Docker repositories visible."
        return CheckResult(True, "", message)

    def _docker_repositories(self) -> list[dict]:
        what = "listing Docker repositories"
        response = self._call("GET", "api/repositories", what, params={"packageType": "docker"})
        repos = json_body(response, what)
        if not isinstance(repos, list) or not all(
            isinstance(r, dict) and isinstance(r.get("key"), str) and r["key"] for r in repos
        ):
            raise RegistryError(BAD_RESPONSE, "The URL does not answer like an Artifactory API.")
        return repos

    def list_repositories(self, types: Iterable[str] | None = None) -> Iterator[RepositoryInfo]:
        """One RepositoryInfo per image path of every Docker repository key, all collected
        before the first is yielded so a failure never leaves a partial listing."""
        if types is not None and "jfrog" not in set(types):
            return
        chosen = name_list(self.config.option("repo_keys"))
        include_virtual = bool(self.config.option("include_virtual", False))
        found: list[RepositoryInfo] = []
        for repo in self._docker_repositories():
            key = repo["key"]
            if chosen and key not in chosen:
                continue
            package = str(repo.get("packageType") or "docker").lower()
            if package != "docker":  # servers before 6.2 ignore the packageType filter
                continue
            kind = str(repo.get("type") or "LOCAL").upper()
            if kind == "VIRTUAL" and not include_virtual:
                continue  # a virtual key aliases images listed under their own keys
            extra: dict[str, Any] = {}
            if kind == "REMOTE":
                extra["aql_repo"] = f"{key}-cache"  # cached images live in <key>-cache
            elif kind == "VIRTUAL":
                extra["transitive"] = True
            listing = self._listing(key, extra.get("aql_repo", key), bool(extra.get("transitive")))
            for image in sorted(listing):
                found.append(
                    RepositoryInfo.from_path(
                        "jfrog", f"{key}/{image}", repo_key=key, image=image, **extra
                    )
                )
        yield from found

    def list_images(
        self, repository: RepositoryInfo, known: Mapping[str, DigestDetails] | None = None
    ) -> list[ImageInfo]:
        key = str(repository.extra.get("repo_key") or repository.namespace)
        image = str(repository.extra.get("image") or repository.name)
        if not key or not image:
            raise RegistryError(NOT_FOUND, f"{repository.path} is not an Artifactory image path.")
        aql_repo = str(repository.extra.get("aql_repo") or key)
        listing = self._listing(key, aql_repo, bool(repository.extra.get("transitive")))
        entries = listing.get(image, {})
        fetch = bool(self.config.option("fetch_manifests", True))
        known = known or {}
        images = []
        for tag in sorted(entries):
            entry = entries[tag]
            details = known.get(entry.digest)
            if details is None and fetch:
                details = self._digest_details(key, image, entry.digest)
            images.append(self._image(entry, details))
        return images

    # --- AQL --------------------------------------------------------------------------------

    def _listing(
        self, key: str, aql_repo: str, transitive: bool
    ) -> dict[str, dict[str, ManifestEntry]]:
        """image -> tag -> entry for one repository key: one AQL call per key per client,
        even when several threads ask at once."""
        with self._lock:
            if aql_repo in self._listings:
                return self._listings[aql_repo]
            key_lock = self._key_locks.setdefault(aql_repo, threading.Lock())
        with key_lock:
            with self._lock:
                if aql_repo in self._listings:
                    return self._listings[aql_repo]
            listing = self._run_aql(key, aql_repo, transitive)
            with self._lock:
                self._listings[aql_repo] = listing
            return listing

    def _run_aql(
        self, key: str, aql_repo: str, transitive: bool
    ) -> dict[str, dict[str, ManifestEntry]]:
        what = f"AQL listing of repository {key}"
        with self._lock:
            self.aql_calls += 1
        response = self._call(
            "POST",
            "api/search/aql",
            what,
            data=aql_query(aql_repo, transitive).encode(),
            headers={"Content-Type": "text/plain"},
        )
        body = json_body(response, what)
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected answer ({what}).")
        results = body["results"]
        window = body.get("range") if isinstance(body.get("range"), dict) else {}
        notification = str(window.get("notification") or body.get("notification") or "")
        if "trim" in notification.lower() or "limit" in notification.lower():
            raise RegistryError(
                BAD_RESPONSE,
                f"Artifactory cut the AQL results short ({what}): {notification[:200]}",
            )
        total = window.get("total")
        if isinstance(total, int) and total > len(results):
            raise RegistryError(
                BAD_RESPONSE,
                f"Artifactory returned {len(results)} of {total} AQL results ({what}).",
            )
        listing: dict[str, dict[str, ManifestEntry]] = {}
        for item in results:
            if not isinstance(item, dict):
                raise RegistryError(
                    BAD_RESPONSE, f"The registry sent an unexpected answer ({what})."
                )
            path = str(item.get("path") or "")
            name = str(item.get("name") or "")
            if name not in MANIFEST_NAMES or _skipped(path, name):
                continue
            image, _, tag = path.rpartition("/")
            if not image or not tag:
                continue
            entry = self._entry(tag, name, item)
            if entry is None:
                continue
            tags = listing.setdefault(image, {})
            previous = tags.get(tag)
            # manifest.json and list.manifest.json side by side: the newer one is the tag.
            if previous is None or _newer(entry, previous):
                tags[tag] = entry
        return listing

    @staticmethod
    def _entry(tag: str, name: str, item: Mapping[str, Any]) -> ManifestEntry | None:
        props: dict[str, str] = {}
        for prop in item.get("properties") or []:
            if isinstance(prop, dict) and isinstance(prop.get("key"), str):
                props.setdefault(prop["key"], str(prop.get("value") or ""))
        digest = props.get("docker.manifest.digest", "")
        if (
            not digest.startswith("sha256:")
            and isinstance(item.get("sha256"), str)
            and item["sha256"]
        ):
            digest = "sha256:" + item["sha256"]
        if not digest.startswith("sha256:"):
            return None  # no digest known: nothing a sync could compare
        media_type = props.get("docker.manifest.type", "")
        return ManifestEntry(
            tag=tag,
            digest=digest,
            media_type=media_type,
            is_list=name == "list.manifest.json" or media_type in INDEX_TYPES,
            created=rfc3339_time(item.get("created")),
            updated=rfc3339_time(item.get("modified")) or rfc3339_time(item.get("updated")),
        )

    @staticmethod
    def _image(entry: ManifestEntry, details: DigestDetails | None) -> ImageInfo:
        if details is None:
            return ImageInfo(
                tag=entry.tag,
                digest=entry.digest,
                media_type=entry.media_type,
                multi_arch=entry.is_list,
                created=entry.created,
                updated=entry.updated,
            )
        return ImageInfo(
            tag=entry.tag,
            digest=entry.digest,
            media_type=entry.media_type or details.media_type,
            size=details.size,
            platforms=details.platforms,
            multi_arch=details.multi_arch,
            created=details.created or entry.created,
            updated=entry.updated,
        )

    # --- manifests through the Docker API ---------------------------------------------------

    def _docker_path(self, key: str, image: str, rest: str) -> str:
        return f"api/docker/{quote(key, safe='')}/v2/{quote(image, safe='/')}/{rest}"

    def _digest_details(self, key: str, image: str, digest: str) -> DigestDetails | None:
        """Details of one digest, fetched once per client. A manifest deleted since the AQL
        query (404) leaves the tag listed without details rather than failing the listing."""
        with self._lock:
            cached = self._details.get(digest)
        if cached is not None:
            return cached
        what = f"manifest {key}/{image}@{digest}"
        try:
            response = self._call(
                "GET",
                self._docker_path(key, image, f"manifests/{digest}"),
                what,
                headers={"Accept": MANIFEST_ACCEPT},
            )
        except RegistryError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise
        manifest = json_body(response, what)
        if not isinstance(manifest, dict):
            raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected manifest ({what}).")
        media_type = str(manifest.get("mediaType") or "")
        if not media_type:
            media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if isinstance(manifest.get("manifests"), list) or media_type in INDEX_TYPES:
            details = self._index_details(manifest, media_type or OCI_INDEX, what)
        else:
            details = self._image_details(key, image, manifest, media_type or DOCKER_MANIFEST, what)
        with self._lock:
            self._details[digest] = details
        return details

    @staticmethod
    def _index_details(manifest: dict, media_type: str, what: str) -> DigestDetails:
        entries = manifest.get("manifests") or []
        if not isinstance(entries, list):
            raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected index ({what}).")
        platforms = []
        for entry in entries:
            if isinstance(entry, dict) and not _is_attestation(entry):
                platform = entry.get("platform")
                if isinstance(platform, dict):
                    platforms.append(_platform(platform))
        real = tuple(dict.fromkeys(p for p in platforms if p))
        return DigestDetails(media_type, None, real, len(real) > 1, None)

    def _image_details(
        self, key: str, image: str, manifest: dict, media_type: str, what: str
    ) -> DigestDetails:
        config = manifest.get("config")
        layers = manifest.get("layers") or []
        if not isinstance(config, dict) or not isinstance(layers, list):
            if manifest.get("schemaVersion") == 1:  # legacy schema 1: architecture only
                arch = manifest.get("architecture")
                platforms = (f"linux/{arch}",) if isinstance(arch, str) and arch else ()
                return DigestDetails(media_type, None, platforms, False, None)
            raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected manifest ({what}).")
        sizes = [_size(config.get("size"))]
        sizes += [_size(layer.get("size")) if isinstance(layer, dict) else None for layer in layers]
        size = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
        platforms: tuple[str, ...] = ()
        created = None
        config_digest = config.get("digest")
        config_size = _size(config.get("size"))
        if (
            isinstance(config_digest, str)
            and config_digest.startswith("sha256:")
            and config_size is not None
            and config_size <= MAX_CONFIG_BYTES
        ):
            data = self._config_blob(key, image, config_digest)
            if isinstance(data, dict):
                platform = _platform(data)
                platforms = (platform,) if platform else ()
                created = rfc3339_time(data.get("created"))
        return DigestDetails(media_type, size, platforms, False, created)

    def _config_blob(self, key: str, image: str, digest: str) -> Any:
        """The image config (a few KiB of JSON). Artifactory may redirect blob downloads to
        cloud storage; that hop is followed without our credentials."""
        what = f"image config {key}/{image}@{digest}"
        response = self.transport.request(
            "GET",
            self._path(self._docker_path(key, image, f"blobs/{digest}")),
            ok=(200, 301, 302, 303, 307, 308),
            what=what,
            headers=self._auth_headers,
            auth=self._basic,
            allow_redirects=False,
        )
        if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
            target = urljoin(response.url, response.headers["Location"])
            response = self.transport.request("GET", target, what=what)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, what)
        return json_body(response, what)
