"""Harbor v2.0 REST API client: projects, repositories and artifacts (one image per tag).

Harbor's REST API gives everything the inventory needs in one listing per repository — tags,
digest, size, push times and platforms (`extra_attrs` for single images, `references[].platform`
for indexes) — so no manifest or config blob is ever fetched. See
reference/registry-apis.md section 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from imagesync.registries.base import (
    AUTH_FAILED,
    BAD_RESPONSE,
    NOT_FOUND,
    PERMISSION_DENIED,
    RATE_LIMITED,
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

API = "/api/v2.0"
PAGE_SIZE = 100  # swagger maximum; larger values are rejected
MAX_PAGES = 10_000  # a Link loop must not spin forever

INDEX_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)

# Harbor's own error codes (lib/errors/const.go) -> our stable codes, when the HTTP status alone
# would say less (e.g. a 400 that is really "not found").
HARBOR_CODES = {
    "UNAUTHORIZED": AUTH_FAILED,
    "FORBIDDEN": PERMISSION_DENIED,
    "DENIED": PERMISSION_DENIED,
    "NOT_FOUND": NOT_FOUND,
    "TOO_MANY_REQUEST": RATE_LIMITED,
    "METHOD_NOT_ALLOWED": UNSUPPORTED,
}


def platform_string(platform: Mapping[str, Any] | None) -> str:
    """ "os/arch[/variant]", or "" for a missing platform and for attestation manifests, which
    BuildKit files under unknown/unknown."""
    if not isinstance(platform, Mapping):
        return ""
    os_name = str(platform.get("os") or "")
    arch = str(platform.get("architecture") or "")
    if not os_name and not arch:
        return ""
    if os_name == "unknown" and arch == "unknown":
        return ""
    return str(Platform(os_name, arch, str(platform.get("variant") or "")))


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def encode_repository(name: str) -> str:
    """Harbor wants the repository name without its project and with '/' encoded twice
    (a/b -> a%252Fb), or the router splits it into path segments."""
    return quote(quote(name, safe=""), safe="")


class HarborClient(RegistryClient):
    """Lists a Harbor instance through its REST API with Basic auth (a user, or a robot account
    named `robot$name` / `robot$project+name` with its secret as password)."""

    kind: ClassVar[str] = "harbor"
    repository_types: ClassVar[tuple[str, ...]] = ("harbor",)

    def __init__(self, config: ClientConfig, transport: Transport | None = None):
        super().__init__(config, transport)
        if config.username or config.secret:
            self.transport.session.auth = (config.username, config.secret)
        self.transport.session.headers["Accept"] = "application/json"

    # --- HTTP -------------------------------------------------------------------------------

    def _error(self, response: requests.Response, what: str) -> RegistryError:
        """Map a failed response to a stable code, refined by Harbor's `errors[].code`."""
        error = error_for_status(response, what, self.transport.host)
        try:
            body = response.json()
            first = body["errors"][0]
            harbor_code = str(first.get("code") or "")
            detail = str(first.get("message") or "")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return error
        code = HARBOR_CODES.get(harbor_code, error.code)
        detail = self._scrub(detail)[:200]
        message = error.message if code == error.code else f"{error.message} [{harbor_code}]"
        if detail:
            message = f"{message}: {detail}"
        return RegistryError(code, message, retryable=error.retryable, status=error.status)

    def _scrub(self, text: str) -> str:
        return self.scrub(text)

    def _get(
        self, path: str, what: str, params: Mapping[str, Any] | None = None
    ) -> requests.Response:
        response = self.transport.request("GET", path, what=what, params=params)
        if response.status_code != 200:
            raise self._error(response, what)
        return response

    def _paged(
        self, path: str, what: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict]:
        """Every element of a paginated Harbor list, or RegistryError — never part of a list.

        The next page exists when the `Link` header has rel="next" (or, without any Link
        header, while X-Total-Count says more remain). The next URL is built from the page
        number rather than copied from Link: Harbor builds Link from the un-escaped request
        path, which would lose the double encoding of nested repository names.
        """
        page = 1
        seen = 0
        while page <= MAX_PAGES:
            query = {**(params or {}), "page": page, "page_size": PAGE_SIZE}
            label = f"{what}, page {page}"
            response = self._get(path, label, query)
            items = json_body(response, label)
            if not isinstance(items, list):
                raise RegistryError(
                    BAD_RESPONSE, f"The registry sent an unexpected answer ({label})."
                )
            for item in items:
                if not isinstance(item, dict):
                    raise RegistryError(
                        BAD_RESPONSE, f"The registry sent an unexpected answer ({label})."
                    )
                yield item
            seen += len(items)
            if not items:
                return
            if "link" in response.headers:
                if "next" not in response.links:
                    return
            else:
                total = response.headers.get("X-Total-Count", "")
                if not total.isdigit() or seen >= int(total):
                    return
            page += 1
        raise RegistryError(BAD_RESPONSE, f"The registry kept offering more pages ({what}).")

    # --- interface --------------------------------------------------------------------------

    def check(self) -> CheckResult:
        """GET /ping is anonymous, so it proves nothing about credentials; listing one project
        does (and robot accounts, which cannot call /users/current, may list projects)."""
        what = "listing projects"
        try:
            response = self._get(f"{API}/projects", what, {"page": 1, "page_size": 1})
            body = json_body(response, what)
            if not isinstance(body, list):
                raise RegistryError(BAD_RESPONSE, "The URL does not answer like a Harbor API.")
        except RegistryError as exc:
            return CheckResult(False, exc.code, exc.message)
        total = response.headers.get("X-Total-Count", "")
        visible = f"{total} project(s) visible" if total.isdigit() else "projects visible"
        who = self.config.username or "anonymous"
        return CheckResult(True, "", f"Connected to Harbor as {who}; {visible}.")

    def project_names(self) -> list[str]:
        """The projects to list: option `projects` when set, otherwise every visible project."""
        chosen = self.config.option("projects")
        if isinstance(chosen, str):
            chosen = chosen.split(",")
        chosen = [str(name).strip() for name in chosen or () if str(name).strip()]
        if chosen:
            return chosen
        names = []
        for project in self._paged(f"{API}/projects", "listing projects"):
            name = project.get("name")
            if not isinstance(name, str) or not name:
                raise RegistryError(BAD_RESPONSE, "The registry sent a project without a name.")
            names.append(name)
        return names

    def list_repositories(self, types: Iterable[str] | None = None) -> Iterator[RepositoryInfo]:
        if types is not None and "harbor" not in set(types):
            return
        # Collected before yielding: a failure on a later project must not leave the caller
        # holding a listing it could mistake for complete.
        found: list[RepositoryInfo] = []
        for project in self.project_names():
            what = f"listing repositories of project {project}"
            path = f"{API}/projects/{quote(project, safe='')}/repositories"
            for repo in self._paged(path, what):
                name = repo.get("name")
                if not isinstance(name, str) or not name:
                    raise RegistryError(
                        BAD_RESPONSE, f"The registry sent a repository without a name ({what})."
                    )
                info = RepositoryInfo.from_path("harbor", name, project=project)
                if info.namespace != project:
                    # Harbor names are always "<project>/<repo>"; keep the project we listed.
                    info = RepositoryInfo("harbor", name, project, name, {"project": project})
                found.append(info)
        # Pages that shifted (a repository created meanwhile) can repeat an entry.
        yield from {info.path: info for info in found}.values()

    def list_images(
        self, repository: RepositoryInfo, known: Mapping[str, DigestDetails] | None = None
    ) -> list[ImageInfo]:
        """One ImageInfo per tag; untagged artifacts are not images anyone can pull by name.

        `known` is not needed: Harbor's artifact listing already carries every detail."""
        project = str(repository.extra.get("project") or repository.namespace)
        prefix = f"{project}/"
        if not project or not repository.path.startswith(prefix):
            raise RegistryError(
                NOT_FOUND, f"{repository.path} is not a Harbor repository path (project/name)."
            )
        short = repository.path[len(prefix) :]
        repo_path = f"{quote(project, safe='')}/repositories/{encode_repository(short)}"
        path = f"{API}/projects/{repo_path}/artifacts"
        what = f"listing artifacts of {repository.path}"
        include_all = bool(self.config.option("include_non_images", False))
        images: dict[str, ImageInfo] = {}
        for artifact in self._paged(path, what, {"with_tag": "true"}):
            if not include_all and artifact.get("type", "IMAGE") not in ("IMAGE", None):
                continue  # Helm charts, SBOMs, CNAB bundles are not container images
            for image in self._images_of(artifact, what):
                seen = images.setdefault(image.tag, image)
                if seen.digest != image.digest:
                    # A push between two pages moved the tag: the listing is not one snapshot.
                    raise RegistryError(
                        BAD_RESPONSE,
                        f"Tag {image.tag} moved while {repository.path} was being listed.",
                        retryable=True,
                    )
        return list(images.values())

    def _images_of(self, artifact: dict, what: str) -> list[ImageInfo]:
        digest = artifact.get("digest")
        if not isinstance(digest, str) or not digest:
            raise RegistryError(
                BAD_RESPONSE, f"The registry sent an artifact without a digest ({what})."
            )
        tags = artifact.get("tags") or []
        if not isinstance(tags, list):
            raise RegistryError(BAD_RESPONSE, f"The registry sent malformed tags ({what}).")
        if not tags:
            return []
        media_type = str(artifact.get("manifest_media_type") or artifact.get("media_type") or "")
        references = artifact.get("references") or []
        extra = artifact.get("extra_attrs") or {}
        if not isinstance(references, list) or not isinstance(extra, dict):
            raise RegistryError(BAD_RESPONSE, f"The registry sent a malformed artifact ({what}).")
        is_index = media_type in INDEX_MEDIA_TYPES or bool(references)
        if is_index:
            platforms = _unique(
                platform_string(ref.get("platform")) for ref in references if isinstance(ref, dict)
            )
        else:
            platforms = _unique([platform_string(extra)])
        # BuildKit wraps a single-platform image in an index with an attestation: not multi-arch.
        multi_arch = is_index and len(platforms) != 1
        size = artifact.get("size")
        size = size if isinstance(size, int) and size >= 0 else None
        created = parse_time(extra.get("created"))
        artifact_pushed = parse_time(artifact.get("push_time"))
        images = []
        for tag in tags:
            if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
                raise RegistryError(BAD_RESPONSE, f"The registry sent a malformed tag ({what}).")
            images.append(
                ImageInfo(
                    tag=tag["name"],
                    digest=digest,
                    media_type=media_type,
                    size=size,
                    platforms=platforms,
                    multi_arch=multi_arch,
                    created=created,
                    updated=parse_time(tag.get("push_time")) or artifact_pushed,
                )
            )
        return images
