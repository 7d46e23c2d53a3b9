"""Huawei Cloud SWR (SoftWare Repository for Container): private, shared and Enterprise
Edition repositories from one AK/SK connection.

Choice: a thin signed client over our shared `Transport`, not the official `huaweicloudsdkswr`.
The SDK runs on `requests` too and its API is complete, but:
  * one transport for every registry kind: the same retries with backoff honouring Retry-After,
    retry budget, concurrency cap, requests-per-second limit, body size cap and TLS options
    (custom CA bundle, insecure mode) — the SDK brings its own urllib3 `Retry` (429 only, off by
    default) and its own HTTP config, which we would have to keep in step by hand;
  * the SDK caches the IAM project id per AK+region at class level (process-wide state shared by
    every connection, and a surprise IAM call when project_id is missing);
  * its dependency tree is heavy for four read-only GETs (huaweicloudsdkcore 3.1.219 requires
    pymongo, simplejson, pyasn1, defusedxml, requests-toolbelt, six, pyyaml...);
  * the signing it would save is ~60 lines (`swr_signer.py`), checked against vectors produced
    by the SDK's own `Signer` (tests/test_registry_swr.py).

Configuration (`ClientConfig`): `url` = API endpoint (https://swr-api.<region>.myhuaweicloud.com),
or empty with `options["region"]`; `username` = AK; `secret` = SK. Options: `project_id`
(required: it is signed into every request and part of the Enterprise Edition paths), `region`,
`security_token` (temporary AK/SK), `namespaces` (list or comma-separated: restricts private
repositories), `registry_host` (docker host for pulls, default swr.<region>.myhuaweicloud.com),
`enterprise` (default true: also list Enterprise Edition instances), `page_size` (default 100).

Listings are complete or raise RegistryError: pages are followed until the collected count
reaches the reported total (Content-Range / total_range / total) or a page comes back empty;
an empty page while the total says more should exist is a bad_response, not a short listing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from imagesync.reasons import AUTH_FAILED, BAD_RESPONSE, NOT_FOUND, UNSUPPORTED
from imagesync.registries import base, manifests
from imagesync.registries.base import ImageInfo, RegistryClient, RegistryError, RepositoryInfo
from imagesync.registries.swr_signer import AkSkSigner

PRIVATE = "swr_private"
SHARED = "swr_shared"
ENTERPRISE = "swr_enterprise"

DEFAULT_PAGE_SIZE = 100
V2_MAX_PAGE_SIZE = 1000  # the v2 repos/tags APIs cap limit at 1000
ENTERPRISE_MAX_PAGE_SIZE = 100  # the EE APIs cap limit at 100
MAX_PAGES = 100_000  # a registry that never stops paging is a bad response, not a hang

ItemKey = Callable[[dict[str, Any]], Any]

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
_ENDPOINT_RE = re.compile(r"^swr-api\.([a-z0-9-]+)\.(myhuaweicloud\.(?:com|eu))$")
_CONTENT_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*/\s*(\d+)\s*$")


def cloud_domain(region: str) -> str:
    """eu-west-101 (Dublin) lives under myhuaweicloud.eu; every other region under .com."""
    return "myhuaweicloud.eu" if region == "eu-west-101" else "myhuaweicloud.com"


def endpoint_for_region(region: str) -> str:
    return f"https://swr-api.{region}.{cloud_domain(region)}"


def region_from_endpoint(url: str) -> str:
    """The region of a standard SWR API endpoint ("" for a custom endpoint)."""
    match = _ENDPOINT_RE.match(urlsplit(url).hostname or "")
    return match.group(1) if match else ""


def _repo_key(item: dict[str, Any]) -> str:
    return f"{item.get('namespace')}/{item.get('name')}"


def _tag_key(item: dict[str, Any]) -> str:
    return str(item.get("Tag", item.get("tag")))


def _ee_repo_key(item: dict[str, Any]) -> str:
    return f"{item.get('namespace_name')}/{item.get('name')}"


def _artifact_key(item: dict[str, Any]) -> str:
    return str(item.get("digest") or item.get("id"))


def _segment(value: str) -> str:
    """One URL path segment: a '/' inside a repository name is sent as %2F."""
    return quote(value, safe="")


def vendor_error(response: requests.Response) -> str:
    """The error code and message SWR or the API gateway put in the body, if any.

    SWR documents a JSON array `[{"errorCode","errorMessage","detail"}]`; the API gateway sends
    `{"error_code","error_msg"}`; some services use `errorCode/errorMsg` or `code/message`."""
    try:
        body = json.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(body, list):
        body = body[0] if body and isinstance(body[0], dict) else None
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("error"), dict):  # some gateways nest it
        body = body["error"]
    code = body.get("errorCode") or body.get("error_code") or body.get("code") or ""
    message = (
        body.get("errorMessage")
        or body.get("error_msg")
        or body.get("errorMsg")
        or body.get("message")
        or ""
    )
    detail = body.get("detail") or ""
    text = ": ".join(str(part) for part in (code, message) if part)
    if detail and isinstance(detail, str) and detail not in text:
        text = f"{text} ({detail})" if text else detail
    text = " ".join(text.split())
    return text[:300]


class SwrClient(RegistryClient):
    """SWR shared edition (private and shared-with-me repositories) and Enterprise Edition."""

    kind = "swr"
    repository_types = (PRIVATE, SHARED, ENTERPRISE)

    def __init__(self, config: base.ClientConfig, transport: base.Transport | None = None):
        self.region = str(config.option("region") or "").strip()
        if self.region and not _REGION_RE.match(self.region):
            raise RegistryError(UNSUPPORTED, f"{self.region!r} is not an SWR region name.")
        if not config.url.strip():
            if not self.region:
                raise RegistryError(
                    UNSUPPORTED, "Enter the SWR API endpoint or a region (e.g. cn-north-4)."
                )
            config = replace(config, url=endpoint_for_region(self.region))
        super().__init__(config, transport)
        self.region = self.region or region_from_endpoint(config.url)
        self.project_id = str(config.option("project_id") or "").strip()
        self.namespaces = config.names("namespaces")
        self.enterprise = config.flag("enterprise", True)
        self.page_size = config.number("page_size", DEFAULT_PAGE_SIZE)
        host = str(config.option("registry_host") or "").strip()
        if not host and self.region:
            host = f"swr.{self.region}.{cloud_domain(self.region)}"
        self.registry_host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
        self.signer = AkSkSigner(
            config.username.strip(),
            config.secret,
            self.project_id,
            str(config.option("security_token") or ""),
        )
        self._enterprise_index: dict[str, list[RepositoryInfo]] | None = None

    # -- HTTP ---------------------------------------------------------------------------------

    def _config_problem(self) -> str:
        if not self.config.username.strip() or not self.config.secret:
            return "Enter the access key (AK) as username and the secret key (SK) as secret."
        if not self.project_id:
            return (
                "The SWR connection needs the project ID of the region (option project_id): "
                "requests are signed with it. Find it under My Credentials > API Credentials."
            )
        return ""

    def _get(self, path: str, params: Mapping[str, Any] | None, what: str) -> requests.Response:
        """One signed GET; any status but 200 becomes a RegistryError with SWR's own reason."""
        problem = self._config_problem()
        if problem:
            raise RegistryError(AUTH_FAILED, problem)
        url, headers = self.signer.sign("GET", self.transport.url(path), params)
        response = self.transport.request("GET", url, ok=(200,), what=what, headers=headers)
        if response.status_code != 200:
            raise self._error(response, what)
        return response

    def _error(self, response: requests.Response, what: str) -> RegistryError:
        host = self.transport.host
        by_status = base.error_for_status(response, what, host)
        status = response.status_code
        if status == 401:
            message = (
                f"SWR at {host} rejected the credentials ({what}): check the access key (AK) "
                "and secret key (SK), that the key is enabled, and this server's clock "
                "(requests are signed with the current time)."
            )
        elif status == 403:
            message = (
                f"Permission denied by SWR at {host} ({what}): the IAM user of this access key "
                "needs read access to SWR in this project (e.g. SWR ReadOnlyAccess)."
            )
        else:
            message = by_status.message
        detail = vendor_error(response)
        if detail:
            message = f"{message} SWR says: {detail}"
        return RegistryError(
            by_status.code, self.scrub(message), retryable=by_status.retryable, status=status
        )

    def secret_forms(self) -> list[str]:
        token = self.config.option("security_token")
        return [*super().secret_forms(), *([token] if isinstance(token, str) else [])]

    # -- paging -------------------------------------------------------------------------------

    def _pages_with_content_range(
        self,
        path: str,
        params: Mapping[str, Any],
        what: str,
        key: ItemKey,
        on_total: base.SizeHook | None = None,
    ) -> list[dict[str, Any]]:
        """Shared-edition v2 listing: a JSON array per page, `limit`/`offset` (a multiple of
        limit), the total in `Content-Range: <offset>-<count>/<total>` or `total_range`."""

        def read(response: requests.Response) -> tuple[list[dict[str, Any]], int | None]:
            items, _body = base.json_items(response, what, null=True)
            return items, self._content_range_total(response, items, what)

        limit = min(self.page_size, V2_MAX_PAGE_SIZE)
        return self._paged(path, {**params, "limit": limit}, limit, what, read, key, on_total)

    @staticmethod
    def _content_range_total(
        response: requests.Response, body: list[dict[str, Any]], what: str
    ) -> int | None:
        header = response.headers.get("Content-Range")
        if header:
            match = _CONTENT_RANGE_RE.match(header)
            if not match:
                raise RegistryError(
                    BAD_RESPONSE, f"SWR sent an unreadable Content-Range header ({what})."
                )
            return int(match.group(3))
        if body:
            return base.as_count(body[0].get("total_range"))
        return None

    def _pages_with_total(
        self, path: str, field: str, what: str, key: ItemKey, on_total: base.SizeHook | None = None
    ) -> list[dict[str, Any]]:
        """Enterprise Edition listing: `{"<field>": [...], "total": n}` per page, offset/limit."""

        def read(response: requests.Response) -> tuple[list[dict[str, Any]], int | None]:
            items, body = base.json_items(response, what, field, null=True)
            return items, base.as_count(body.get("total"))

        limit = min(self.page_size, ENTERPRISE_MAX_PAGE_SIZE)
        return self._paged(path, {"limit": limit}, limit, what, read, key, on_total)

    def _paged(
        self,
        path: str,
        params: Mapping[str, Any],
        limit: int,
        what: str,
        read: Callable[[requests.Response], tuple[list[dict[str, Any]], int | None]],
        key: ItemKey,
        on_total: base.SizeHook | None = None,
    ) -> list[dict[str, Any]]:
        """Follow offset pages until the reported total is reached or a page is empty.
        `on_total` is called with the first page's total, when it has one, before the next
        page is asked for (`base.listing_size`).

        Offset paging over a list that changes meanwhile can shift an entry across a page
        boundary: it then shows up twice while another is never seen. Entries are de-duplicated
        by `key`, and a listing with fewer distinct entries than the total is refused (retryable)
        rather than returned short — a short listing would prune images that still exist."""
        items: list[dict[str, Any]] = []
        seen: set[Any] = set()
        received = 0
        total: int | None = None
        for page in range(MAX_PAGES):
            response = self._get(path, {**params, "offset": page * limit}, what)
            page_items, page_total = read(response)
            if page == 0 and on_total is not None and page_total is not None:
                on_total(page_total)
            total = page_total if page_total is not None else total
            received += len(page_items)
            for item in page_items:
                identity = key(item)
                if identity not in seen:
                    seen.add(identity)
                    items.append(item)
            if not page_items or (total is not None and received >= total):
                break
            if total is None and len(page_items) < limit:
                break
        else:
            raise RegistryError(BAD_RESPONSE, f"SWR kept sending pages ({what}).")
        if total is not None and len(items) < total:
            raise RegistryError(
                BAD_RESPONSE,
                f"SWR ended the listing after {len(items)} of {total} entries ({what}); "
                "it may have changed while being read, try again.",
                retryable=True,
            )
        return items

    # -- interface ----------------------------------------------------------------------------

    def _check(self) -> str:
        """A cheap signed call (the namespace list) proves endpoint, AK/SK and project id."""
        what = "listing namespaces"
        body = base.json_body(self._get("/v2/manage/namespaces", None, what), what)
        # A 200 without the "namespaces" key is not SWR's answer (a proxy, a login page turned
        # JSON, another API): reporting it as "connected" would mislead.
        if (
            not isinstance(body, dict)
            or "namespaces" not in body
            or not isinstance(body.get("namespaces") or [], list)
        ):
            raise RegistryError(BAD_RESPONSE, f"SWR sent an unexpected answer ({what}).")
        count = len(body.get("namespaces") or [])
        return f"Connected to SWR at {self.transport.host}: {count} namespace(s) visible."

    def _list_repositories(self, types: set[str]) -> Iterator[RepositoryInfo]:
        """Every repository of the requested SWR types."""
        if PRIVATE in types:
            yield from self._private_repositories()
        if SHARED in types:
            yield from self._shared_repositories()
        if ENTERPRISE in types and self.enterprise:
            yield from self._enterprise_repositories()

    def _list_images(
        self, repository: RepositoryInfo, known: base.Known, previous: Mapping[str, str] | None
    ) -> list[ImageInfo]:
        """Every tag of one repository. `previous` is not needed: both listings carry every
        tag's digest, and nothing else is fetched per tag."""
        if repository.type == ENTERPRISE:
            return self._enterprise_images(repository, known)
        if repository.type in (PRIVATE, SHARED):
            return self._tag_images(repository, known)
        raise RegistryError(
            UNSUPPORTED, f"An SWR connection does not serve {repository.type} repositories."
        )

    # -- shared edition -----------------------------------------------------------------------

    def _repository(self, type: str, item: dict[str, Any], **extra: Any) -> RepositoryInfo:
        namespace = item.get("namespace")
        name = item.get("name")
        if not isinstance(namespace, str) or not namespace or not isinstance(name, str) or not name:
            raise RegistryError(BAD_RESPONSE, "SWR listed a repository without namespace or name.")
        if self.registry_host:
            extra.setdefault("registry_host", self.registry_host)
        # Downloads of the whole repository: the only usage figure SWR's basic editions keep.
        pulls = base.as_count(item.get("num_download"))
        return RepositoryInfo.from_path(type, f"{namespace}/{name}", pull_count=pulls, **extra)

    def _private_repositories(self) -> list[RepositoryInfo]:
        scopes: list[dict[str, Any]] = [{"namespace": ns} for ns in self.namespaces] or [{}]
        repositories = []
        seen = set()
        for params in scopes:
            what = "listing repositories"
            if params:
                what += f" of namespace {params['namespace']}"
            for item in self._pages_with_content_range("/v2/manage/repos", params, what, _repo_key):
                repository = self._repository(PRIVATE, item)
                if repository.path not in seen:
                    seen.add(repository.path)
                    repositories.append(repository)
        return repositories

    def _shared_repositories(self) -> list[RepositoryInfo]:
        """Repositories other accounts share with this one (`center=thirdparty`). An expired
        share is kept; its status goes in extra so the console can say so."""
        what = "listing repositories shared with this account"
        items = self._pages_with_content_range(
            "/v2/manage/shared-repositories", {"center": "thirdparty"}, what, _repo_key
        )
        repositories = []
        seen = set()
        for item in items:
            repository = self._repository(
                SHARED,
                item,
                shared_status=item.get("status"),
                domain_name=item.get("domain_name", ""),
            )
            if repository.path not in seen:
                seen.add(repository.path)
                repositories.append(repository)
        return repositories

    def _tag_images(
        self, repository: RepositoryInfo, known: Mapping[str, base.DigestDetails]
    ) -> list[ImageInfo]:
        if not repository.namespace or not repository.name:
            raise RegistryError(
                BAD_RESPONSE, f"{repository.path!r} is not a namespace/name SWR repository path."
            )
        path = (
            f"/v2/manage/namespaces/{_segment(repository.namespace)}"
            f"/repos/{_segment(repository.name)}/tags"
        )
        what = f"listing tags of {repository.path}"
        images = base.Listing()
        pulls = repository.pull_count
        tags = self._pages_with_content_range(path, {}, what, _tag_key, base.listing_size)
        for item in tags:
            tag = item.get("Tag", item.get("tag"))
            if not isinstance(tag, str) or not tag:
                raise RegistryError(BAD_RESPONSE, f"SWR listed a tag without a name ({what}).")
            digest = str(item.get("digest") or "")
            kind, platforms = _manifest_facts(item.get("manifest"))
            index = str(item.get("tag_type")) == "1"  # 1 = manifest list
            cached = known.get(digest) if digest else None
            details = _details(kind, index, item.get("size"), platforms, cached)
            # SWR's "created" is when the tag was created in SWR: the closest it offers.
            created = base.parse_time(item.get("created"))
            image = ImageInfo.of(
                tag, digest, details, base.parse_time(item.get("updated")) or created
            )
            image.created = created
            if pulls is not None:
                # A count per repository and no time: "never pulled" only when nothing was.
                image.pull_count, image.pull_source = pulls, "swr_repository"
                image.pull_known = pulls == 0
            images.append(image)
        if pulls is None and images:
            images.usage_missing = (
                UNSUPPORTED,
                "SWR sent no download count (num_download) for this repository.",
            )
        return images

    # -- enterprise edition -------------------------------------------------------------------

    def _instances(self) -> list[dict[str, Any]]:
        path = f"/v2/{_segment(self.project_id)}/instances"
        items = self._pages_with_total(
            path, "instances", "listing Enterprise instances", lambda i: str(i.get("id"))
        )
        return [item for item in items if item.get("status") == "Running" and item.get("id")]

    def _enterprise_repositories(self) -> list[RepositoryInfo]:
        repositories = []
        for instance in self._instances():
            instance_id = str(instance["id"])
            instance_name = str(instance.get("name") or instance_id)
            host = str(instance.get("access_address") or "")
            host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
            path = f"/v2/{_segment(self.project_id)}/instances/{_segment(instance_id)}/repositories"
            what = f"listing repositories of Enterprise instance {instance_name}"
            seen = set()
            for item in self._pages_with_total(path, "repositories", what, _ee_repo_key):
                namespace = item.get("namespace_name")
                name = item.get("name")
                if not isinstance(namespace, str) or not namespace or not isinstance(name, str):
                    raise RegistryError(
                        BAD_RESPONSE, f"SWR listed a repository without namespace ({what})."
                    )
                if not name or f"{namespace}/{name}" in seen:
                    continue
                seen.add(f"{namespace}/{name}")
                extra = {
                    "instance_id": instance_id,
                    "instance_name": instance_name,
                    "namespace_name": namespace,
                    "repository_name": name,
                }
                if host:
                    extra["registry_host"] = host
                pulls = base.as_count(item.get("pull_count"))
                repositories.append(
                    RepositoryInfo.from_path(
                        ENTERPRISE, f"{namespace}/{name}", pull_count=pulls, **extra
                    )
                )
        return repositories

    def _locate_enterprise(self, repository: RepositoryInfo) -> tuple[str, str, str]:
        """Instance id, namespace and repository name; from extra, else by listing (a caller
        that rebuilt the RepositoryInfo from its path alone)."""
        extra = repository.extra or {}
        instance_id = extra.get("instance_id")
        if instance_id:
            return (
                str(instance_id),
                str(extra.get("namespace_name") or repository.namespace),
                str(extra.get("repository_name") or repository.name),
            )
        if self._enterprise_index is None:
            index: dict[str, list[RepositoryInfo]] = {}
            for found in self._enterprise_repositories():
                index.setdefault(found.path, []).append(found)
            self._enterprise_index = index
        matches = self._enterprise_index.get(repository.path, [])
        if not matches:
            raise RegistryError(
                NOT_FOUND, f"No running Enterprise instance has repository {repository.path}."
            )
        if len(matches) > 1:
            names = ", ".join(str(m.extra.get("instance_name")) for m in matches)
            raise RegistryError(
                BAD_RESPONSE,
                f"Repository {repository.path} exists in several Enterprise instances ({names}).",
            )
        return self._locate_enterprise(matches[0])

    def _enterprise_images(
        self, repository: RepositoryInfo, known: Mapping[str, base.DigestDetails]
    ) -> list[ImageInfo]:
        instance_id, namespace, name = self._locate_enterprise(repository)
        path = (
            f"/v2/{_segment(self.project_id)}/instances/{_segment(instance_id)}"
            f"/namespaces/{_segment(namespace)}/repositories/{_segment(name)}/artifacts"
        )
        what = f"listing artifacts of {repository.path}"
        images = base.Listing()
        pulls = repository.pull_count
        pull_times = False
        artifacts = self._pages_with_total(
            path, "artifacts", what, _artifact_key, base.listing_size
        )
        for artifact in artifacts:
            pull_times = pull_times or "pull_time" in artifact
            digest = str(artifact.get("digest") or "")
            kind = manifests.media_type(artifact.get("manifest_media_type"))
            cached = known.get(digest) if digest else None
            details = _details(kind, False, artifact.get("size"), (), cached)
            artifact_pushed = base.parse_time(artifact.get("push_time"))
            tags = artifact.get("tags") or []
            if not isinstance(tags, list):
                raise RegistryError(BAD_RESPONSE, f"SWR sent an unexpected answer ({what}).")
            if not tags and digest and _is_image(artifact):
                lone = ImageInfo.of("", digest, details, artifact_pushed)
                lone.tagged, lone.pull_count = False, pulls
                _set_pulled(lone, artifact)
                images.untagged.append(lone)
            for tag in tags:
                tag_name = tag.get("name") if isinstance(tag, dict) else None
                if not isinstance(tag_name, str) or not tag_name:
                    raise RegistryError(BAD_RESPONSE, f"SWR listed a tag without a name ({what}).")
                updated = base.parse_time(tag.get("push_time")) or artifact_pushed
                image = ImageInfo.of(tag_name, digest, details, updated)
                image.pull_count = pulls
                _set_pulled(image, artifact, tag)
                images.append(image)
        if (images or images.untagged) and not pull_times:
            images.usage_missing = (
                UNSUPPORTED,
                "SWR Enterprise Edition sent no pull times with its artifacts.",
            )
        return images


def _set_pulled(image: ImageInfo, artifact: dict[str, Any], tag: Any = None) -> None:
    """Last pulled of an Enterprise Edition artifact (or of one of its tags): the newer of the
    two pull_time values; the zero time 0001-01-01 means never pulled."""
    tag = tag if isinstance(tag, dict) else {}
    if "pull_time" not in artifact and "pull_time" not in tag:
        return
    found = [
        t
        for t in (base.parse_time(artifact.get("pull_time")), base.parse_time(tag.get("pull_time")))
        if t is not None
    ]
    image.last_pulled = max(found) if found else None
    image.pull_source, image.pull_known = "swr", True


def _is_image(artifact: dict[str, Any]) -> bool:
    """An untagged artifact that is an image of its own: not a chart, SBOM, signature or
    attestation (accessories of another image)."""
    if str(artifact.get("type") or "IMAGE").upper() != "IMAGE":
        return False
    kind = str(artifact.get("artifact_type") or artifact.get("media_type") or "").lower()
    return not any(word in kind for word in ("sbom", "signature", "in-toto", "attestation"))


def _details(
    kind: str, index: bool, size: Any, platforms: tuple[str, ...], cached: base.DigestDetails | None
) -> base.DigestDetails:
    """What SWR tells of a digest, completed by what an earlier sync learned of it (SWR names
    no platforms for single images and no created time)."""
    if cached is not None:
        kind = kind or cached.media_type
        platforms = platforms or tuple(cached.platforms)
    if index or manifests.is_index(kind):
        return manifests.index_details(kind, platforms)
    created = cached.created if cached is not None else None
    return base.DigestDetails(kind, base.as_count(size), platforms, False, created)


def _manifest_facts(manifest: Any) -> tuple[str, tuple[str, ...]]:
    """(media type, platforms of a manifest list) from the manifest JSON SWR may include with a
    tag; nothing when it is absent or unreadable (it is optional)."""
    what = "a tag's manifest"
    if not manifest or not isinstance(manifest, str):
        return "", ()
    try:
        found = manifests.details(base.decode_json(manifest, what), "", what, None)
    except RegistryError:
        return "", ()
    return found.media_type, found.platforms
