"""Harbor v2.0 REST API client: projects, repositories and artifacts (one image per tag).

Harbor's REST API gives everything the inventory needs in one listing per repository — tags,
digest, size, push times and platforms (`extra_attrs` for single images, `references[].platform`
for indexes) — so no manifest or config blob is ever fetched. Platforms, attestations and
sizes are read by the rules of manifests.py, as for every registry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests

from imagesync.reasons import BAD_RESPONSE, NOT_FOUND, PERMISSION_DENIED, RATE_LIMITED, UNSUPPORTED
from imagesync.registries import base, manifests
from imagesync.registries.base import ImageInfo, RegistryClient, RegistryError, RepositoryInfo

API = "/api/v2.0"
PAGE_SIZE = 100  # swagger maximum; larger values are rejected
MAX_PAGES = 10_000  # a Link loop must not spin forever


def encode_repository(name: str) -> str:
    """Harbor wants the repository name without its project and with '/' encoded twice
    (a/b -> a%252Fb), or the router splits it into path segments."""
    return quote(quote(name, safe=""), safe="")


class HarborClient(RegistryClient):
    """Lists a Harbor instance through its REST API with Basic auth (a user, or a robot account
    named `robot$name` / `robot$project+name` with its secret as password)."""

    kind = "harbor"
    repository_types = ("harbor",)
    # Harbor's own error codes (lib/errors/const.go) besides the Distribution ones.
    vendor_codes = {
        **base.DISTRIBUTION_CODES,
        "FORBIDDEN": PERMISSION_DENIED,
        "NOT_FOUND": NOT_FOUND,
        "TOO_MANY_REQUEST": RATE_LIMITED,
        "METHOD_NOT_ALLOWED": UNSUPPORTED,
    }

    def __init__(self, config: base.ClientConfig, transport: base.Transport | None = None):
        super().__init__(config, transport)
        if config.username or config.secret:
            self.transport.session.auth = (config.username, config.secret)
        self.transport.session.headers["Accept"] = "application/json"

    # --- HTTP -------------------------------------------------------------------------------

    def _get(
        self, path: str, what: str, params: Mapping[str, Any] | None = None
    ) -> requests.Response:
        response = self.transport.request("GET", path, what=what, params=params)
        if response.status_code != 200:
            raise self._error(response, what)
        return response

    def _paged(
        self,
        path: str,
        what: str,
        params: Mapping[str, Any] | None = None,
        on_total: base.SizeHook | None = None,
    ) -> Iterator[dict]:
        """Every element of a paginated Harbor list, or RegistryError — never part of a list.

        The next page exists when the `Link` header has rel="next" (or, without any Link
        header, while X-Total-Count says more remain). The next URL is built from the page
        number rather than copied from Link: Harbor builds Link from the un-escaped request
        path, which would lose the double encoding of nested repository names.

        `on_total` is called with the first page's X-Total-Count, when it has one, before the
        next page is asked for (`base.listing_size`).
        """
        page = 1
        seen = 0
        while page <= MAX_PAGES:
            query = {**(params or {}), "page": page, "page_size": PAGE_SIZE}
            label = f"{what}, page {page}"
            response = self._get(path, label, query)
            items, _body = base.json_items(response, label)
            total = base.as_count(response.headers.get("X-Total-Count"))
            if page == 1 and on_total is not None and total is not None:
                on_total(total)
            yield from items
            seen += len(items)
            if not items:
                return
            if "link" in response.headers:
                if "next" not in response.links:
                    return
            elif total is None or seen >= total:
                return
            page += 1
        raise RegistryError(BAD_RESPONSE, f"The registry kept offering more pages ({what}).")

    # --- interface --------------------------------------------------------------------------

    def _check(self) -> str:
        """GET /ping is anonymous, so it proves nothing about credentials; listing one project
        does (and robot accounts, which cannot call /users/current, may list projects)."""
        what = "listing projects"
        response = self._get(f"{API}/projects", what, {"page": 1, "page_size": 1})
        if not isinstance(base.json_body(response, what), list):
            raise RegistryError(BAD_RESPONSE, "The URL does not answer like a Harbor API.")
        total = response.headers.get("X-Total-Count", "")
        visible = f"{total} project(s) visible" if total.isdigit() else "projects visible"
        who = self.config.username or "anonymous"
        return f"Connected to Harbor as {who}; {visible}."

    def project_names(self) -> list[str]:
        """The projects to list: option `projects` when set, otherwise every visible project."""
        chosen = self.config.names("projects")
        if chosen:
            return chosen
        names = []
        for project in self._paged(f"{API}/projects", "listing projects"):
            name = project.get("name")
            if not isinstance(name, str) or not name:
                raise RegistryError(BAD_RESPONSE, "The registry sent a project without a name.")
            names.append(name)
        return names

    def _list_repositories(self, types: set[str]) -> Iterator[RepositoryInfo]:
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
                pulls = base.as_count(repo.get("pull_count"))  # shown with each image
                info = RepositoryInfo.from_path("harbor", name, project=project, pull_count=pulls)
                if info.namespace != project:
                    # Harbor names are always "<project>/<repo>"; keep the project we listed.
                    info = RepositoryInfo(
                        "harbor", name, project, name, {"project": project}, pulls
                    )
                found.append(info)
        # Pages that shifted (a repository created meanwhile) can repeat an entry.
        yield from {info.path: info for info in found}.values()

    def _list_images(
        self, repository: RepositoryInfo, known: base.Known, previous: Mapping[str, str] | None
    ) -> base.Listing:
        """One ImageInfo per tag, and one untagged ImageInfo per artifact no tag names (Harbor's
        default artifact set already leaves out the untagged children of an index).

        `known` and `previous` are not needed: one artifact listing carries every detail, the
        pull times included. Nothing is fetched by tag: a GET of a manifest by tag is a pull
        to Harbor and would move the very pull_time read here."""
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
        include_all = self.config.flag("include_non_images", False)
        images: dict[str, ImageInfo] = {}
        untagged: dict[str, ImageInfo] = {}
        children: set[str] = set()
        pull_times = False
        pulls = repository.pull_count
        # The artifact count is close to the listing's size (a few tags per artifact).
        artifacts = self._paged(path, what, {"with_tag": "true"}, on_total=base.listing_size)
        for artifact in artifacts:
            if not include_all and artifact.get("type", "IMAGE") not in ("IMAGE", None):
                continue  # Helm charts, SBOMs, CNAB bundles are not container images
            pull_times = pull_times or "pull_time" in artifact
            for ref in artifact.get("references") or []:
                if isinstance(ref, dict) and isinstance(ref.get("child_digest"), str):
                    children.add(ref["child_digest"])
            lone = self._untagged(artifact, what)
            if lone is not None:
                lone.pull_count = pulls
                untagged[lone.digest] = lone
            for image in self._images_of(artifact, what):
                image.pull_count = pulls
                seen = images.setdefault(image.tag, image)
                if seen.digest != image.digest:
                    # A push between two pages moved the tag: the listing is not one snapshot.
                    raise RegistryError(
                        BAD_RESPONSE,
                        f"Tag {image.tag} moved while {repository.path} was being listed.",
                        retryable=True,
                    )
        listing = base.Listing(images.values())
        # An index's platform manifests are parts of it, not images of their own.
        listing.untagged = [info for digest, info in untagged.items() if digest not in children]
        if (images or untagged) and not pull_times:
            listing.usage_missing = (
                UNSUPPORTED,
                "this Harbor version sends no pull times with its artifacts.",
            )
        return listing

    @staticmethod
    def _pulled(artifact: dict, tag: dict | None = None) -> tuple[Any, bool]:
        """(last pulled, whether known) of an artifact, or of one of its tags: the newer of
        the tag's and the artifact's pull_time (a pull by digest moves only the artifact's).
        Harbor's zero time 0001-01-01 means never pulled."""
        if "pull_time" not in artifact and not (tag and "pull_time" in tag):
            return None, False
        times = [base.parse_time(artifact.get("pull_time"))]
        if tag:
            times.append(base.parse_time(tag.get("pull_time")))
        found = [t for t in times if t is not None]
        return (max(found) if found else None), True

    def _untagged(self, artifact: dict, what: str) -> ImageInfo | None:
        """An artifact no tag names, as an untagged image; None when it has tags or is an
        attestation, signature or SBOM (accessories of another image, not images)."""
        if artifact.get("tags"):
            return None
        digest = artifact.get("digest")
        if not isinstance(digest, str) or not digest:
            return None
        annotations = artifact.get("annotations") or {}
        if isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type"):
            return None  # BuildKit attestation manifest
        kind = str(artifact.get("artifact_type") or "")
        if any(word in kind for word in ("sbom", "signature", "in-toto", "attestation")):
            return None
        details = self._details(artifact, what)
        image = ImageInfo.of("", digest, details, base.parse_time(artifact.get("push_time")))
        image.tagged = False
        image.last_pulled, image.pull_known = self._pulled(artifact)
        image.pull_source = "harbor"
        return image

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
        details = self._details(artifact, what)
        artifact_pushed = base.parse_time(artifact.get("push_time"))
        images = []
        for tag in tags:
            if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
                raise RegistryError(BAD_RESPONSE, f"The registry sent a malformed tag ({what}).")
            updated = base.parse_time(tag.get("push_time")) or artifact_pushed
            image = ImageInfo.of(tag["name"], digest, details, updated)
            image.last_pulled, image.pull_known = self._pulled(artifact, tag)
            image.pull_source = "harbor"
            images.append(image)
        return images

    @staticmethod
    def _details(artifact: dict, what: str) -> base.DigestDetails:
        """What Harbor tells of an artifact: platforms of an index from its `references`, of a
        single image from `extra_attrs` (the config's top level, with its created time)."""
        kind = manifests.media_type(
            artifact.get("manifest_media_type") or artifact.get("media_type")
        )
        references = artifact.get("references") or []
        extra = artifact.get("extra_attrs") or {}
        if not isinstance(references, list) or not isinstance(extra, dict):
            raise RegistryError(BAD_RESPONSE, f"The registry sent a malformed artifact ({what}).")
        if manifests.is_index(kind) or references:
            return manifests.index_details(kind, manifests.index_platforms(references))
        platforms, created = manifests.config_facts(extra)
        return base.DigestDetails(
            kind, base.as_count(artifact.get("size")), platforms, False, created
        )
