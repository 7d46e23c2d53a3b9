"""JFrog Artifactory client: Docker repositories, their images and tags through AQL.

A Repository in our model is one image path inside one Artifactory repository key
(`<repo-key>/<image>`, what `docker pull <host>/<repo-key>/<image>` uses with the
repository-path method). One AQL query per repository key finds every manifest of every image
and tag at once; it is cached for the client's lifetime so listing fifty images of a key costs
one AQL call. AQL has no sizes or platforms, so (option `fetch_manifests`, default on) each new
digest's manifest — and for single images the small config blob, never a layer — is read
through the Docker API and read by manifests.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urljoin

import requests

from imagesync.reasons import BAD_RESPONSE, NOT_FOUND, UNSUPPORTED
from imagesync.registries import base, manifests
from imagesync.registries.base import ImageInfo, RegistryClient, RegistryError, RepositoryInfo
from imagesync.registries.manifests import MANIFEST_ACCEPT, ConfigFacts

MANIFEST_NAMES = ("manifest.json", "list.manifest.json")
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
    last_pulled: datetime | None = None
    pulls: int | None = None  # None: statistics not read


def aql_query(repo: str, transitive: bool = False, stats: bool = True) -> str:
    """The one AQL query listing every manifest (all images, all tags) of one repository, with
    the download statistics of each manifest file (`stats`: the tag's last pull and pull
    count; a file never downloaded comes without them)."""
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
    if stats:
        fields += ("stat.downloaded", "stat.downloads")
    query = f"items.find({json.dumps(criteria, separators=(',', ':'))})"
    query += ".include({})".format(",".join(json.dumps(f) for f in fields))
    if transitive:  # virtual (and remote) keys hold no items themselves
        query += ".transitive()"
    return query


def _stats_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """Last download and downloads of a manifest file from its AQL `stats`
    ([{"downloaded": "...", "downloads": 3}]); none: never downloaded."""
    stats = item.get("stats") or []
    first = stats[0] if isinstance(stats, list) and stats and isinstance(stats[0], dict) else {}
    pulls = base.as_count(first.get("downloads")) or 0
    when = base.parse_time(first.get("downloaded")) if pulls else None
    return {"last_pulled": when, "pulls": pulls}


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

    kind = "jfrog"
    repository_types = ("jfrog",)  # its Docker API answers with the Distribution error codes

    def __init__(self, config: base.ClientConfig, transport: base.Transport | None = None):
        super().__init__(config, transport)
        url = self.transport.base_url
        self._root = "" if url.rstrip("/").endswith("/artifactory") else "artifactory/"
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
        self._stats_missing: dict[str, tuple[str, str]] = {}  # aql repo -> (code, why)
        self._details: dict[str, url.DigestDetails] = {}
        self.aql_calls = 0

    # --- HTTP -------------------------------------------------------------------------------

    def _path(self, rest: str) -> str:
        return f"{self._root}{rest}"

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

    # --- interface --------------------------------------------------------------------------

    def _check(self) -> str:
        """The ping is anonymous, so credentials are proved by listing Docker repositories."""
        repos = self._docker_repositories()
        who = self.config.username or f"{self.auth_mode} auth"
        return f"Connected to Artifactory as {who}; {len(repos)} Docker repositories visible."

    def _docker_repositories(self) -> list[dict]:
        what = "listing Docker repositories"
        response = self._call("GET", "api/repositories", what, params={"packageType": "docker"})
        repos = base.json_body(response, what)
        if not isinstance(repos, list) or not all(
            isinstance(r, dict) and isinstance(r.get("key"), str) and r["key"] for r in repos
        ):
            raise RegistryError(BAD_RESPONSE, "The URL does not answer like an Artifactory API.")
        return repos

    def _list_repositories(self, types: set[str]) -> Iterator[RepositoryInfo]:
        """One RepositoryInfo per image path of every Docker repository key."""
        chosen = self.config.names("repo_keys")
        include_virtual = self.config.flag("include_virtual", False)
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
                path = f"{key}/{image}"
                yield RepositoryInfo.from_path("jfrog", path, repo_key=key, image=image, **extra)

    def _list_images(
        self, repository: RepositoryInfo, known: base.Known, previous: Mapping[str, str] | None
    ) -> list[ImageInfo]:
        """Every tag of one image path. `previous` is not needed: AQL gives every tag's digest
        in one query, and only digests missing from `known` cost a manifest request."""
        key = str(repository.extra.get("repo_key") or repository.namespace)
        image = str(repository.extra.get("image") or repository.name)
        if not key or not image:
            raise RegistryError(NOT_FOUND, f"{repository.path} is not an Artifactory image path.")
        aql_repo = str(repository.extra.get("aql_repo") or key)
        listing = self._listing(key, aql_repo, bool(repository.extra.get("transitive")))
        entries = listing.get(image, {})
        fetch = self.config.flag("fetch_manifests", True)
        images = base.Listing()
        for tag in sorted(entries):
            entry = entries[tag]
            details = known.get(entry.digest)
            if details is None and fetch:
                details = self._digest_details(key, image, entry.digest)
            images.append(self._image(entry, details))
        with self._lock:
            missing = self._stats_missing.get(aql_repo)
        if missing is not None and images:
            images.usage_missing = missing
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
        try:
            response = self._call(
                "POST",
                "api/search/aql",
                what,
                data=aql_query(aql_repo, transitive).encode(),
                headers={"Content-Type": "text/plain"},
            )
        except RegistryError as exc:
            if exc.status not in (400, 403):
                raise
            # An account (or a server) that may not read download statistics: list without
            # them, and say which data is missing and why.
            with self._lock:
                self.aql_calls += 1
                self._stats_missing[aql_repo] = (
                    exc.code,
                    "Artifactory refused the download statistics (AQL stat.downloaded) "
                    f"of repository {key}: {self.scrub(exc.message)[:200]}",
                )
            response = self._call(
                "POST",
                "api/search/aql",
                what,
                data=aql_query(aql_repo, transitive, stats=False).encode(),
                headers={"Content-Type": "text/plain"},
            )
        results, body = base.json_items(response, what, "results")
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
            path = str(item.get("path") or "")
            name = str(item.get("name") or "")
            if name not in MANIFEST_NAMES or _skipped(path, name):
                continue
            image, _, tag = path.rpartition("/")
            if not image or not tag:
                continue
            entry = self._entry(tag, name, item, aql_repo not in self._stats_missing)
            if entry is None:
                continue
            tags = listing.setdefault(image, {})
            previous = tags.get(tag)
            # manifest.json and list.manifest.json side by side: the newer one is the tag.
            if previous is None or _newer(entry, previous):
                tags[tag] = entry
        return listing

    @staticmethod
    def _entry(
        tag: str, name: str, item: Mapping[str, Any], with_stats: bool = True
    ) -> ManifestEntry | None:
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
            is_list=name == "list.manifest.json" or manifests.is_index(media_type),
            created=base.parse_time(item.get("created")),
            updated=base.parse_time(item.get("modified")) or base.parse_time(item.get("updated")),
            **(_stats_of(item) if with_stats else {}),
        )

    @staticmethod
    def _image(entry: ManifestEntry, details: base.DigestDetails | None) -> ImageInfo:
        if details is None:  # AQL alone: no size or platforms
            details = base.DigestDetails(entry.media_type, multi_arch=entry.is_list)
        image = ImageInfo.of(entry.tag, entry.digest, details, entry.updated)
        if entry.pulls is not None:
            image.last_pulled, image.pull_count = entry.last_pulled, entry.pulls
            image.pull_source, image.pull_known = "jfrog", True
        image.media_type = entry.media_type or image.media_type
        image.created = image.created or entry.created
        return image

    # --- manifests through the Docker API ---------------------------------------------------

    def _docker_path(self, key: str, image: str, rest: str) -> str:
        return f"api/docker/{quote(key, safe='')}/v2/{quote(image, safe='/')}/{rest}"

    def _digest_details(self, key: str, image: str, digest: str) -> base.DigestDetails | None:
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
        sent_type = response.headers.get("Content-Type") or ""

        def read_config(config: str) -> ConfigFacts:
            return manifests.config_facts(self._config_blob(key, image, config))

        details = manifests.details(base.json_body(response, what), sent_type, what, read_config)
        with self._lock:
            self._details[digest] = details
        return details

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
        return base.json_body(response, what)
