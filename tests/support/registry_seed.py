"""Push test content into a real Distribution registry with nothing but `requests`.

`registry` below is anything with `.url`, `.username` and `.password` (the `RunningRegistry`
of tests/support/registry_fixtures.py). Images are tiny: one small shared layer by default and a
distinct config per image, so every tag gets its own digest while seeding stays fast.

    from tests.support.registry_seed import push_image, push_index, seed, delete_manifest

    digest = push_image(reg, "team/api", "1.0")                       # Docker v2 manifest
    digest = push_image(reg, "team/api", "1.1", arch="arm64", variant="v8", oci=True,
                        created="2024-05-01T08:00:00Z", layer_sizes=(2048, 512))
    digest = push_index(reg, "team/multi", "latest", platforms=["linux/amd64", "linux/arm64/v8"],
                        oci=True, with_attestation=True)            # OCI index (+ attestation)
    tag_manifest(reg, "team/api", "1.0", "latest")                  # another tag, same digest
    copy_image(reg, "team/api", "1.0", "other/api", "1.0")          # same digest elsewhere
    delete_manifest(reg, "team/api", digest)   # removes the manifest and every tag on it
    delete_tag(reg, "team/api", "1.0")         # removes one tag only (filesystem storage)
    result = seed(reg, repos=1000, tags=10, prefix="bulk")          # ~10k tags in seconds
    result.images["bulk/repo-0007"]["v3"]  -> digest

`push_image_details` / `push_index_details` return a `PushedImage` with everything a test may
assert on: digest, media_type, size (config + layers, or sum of child manifest sizes for an
index without its attestation entries), platforms, multi_arch, created, config_digest and
layer_digests (to prove layers were never fetched).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"
DEFAULT_CREATED = "2024-05-01T08:00:00Z"


@dataclass
class PushedImage:
    """What was pushed under one tag (or digest), as a listing should report it."""

    path: str
    tag: str
    digest: str
    media_type: str
    size: int
    platforms: tuple[str, ...]
    multi_arch: bool = False
    created: str | None = None
    config_digest: str = ""
    layer_digests: tuple[str, ...] = ()
    children: tuple[PushedImage, ...] = ()
    manifest_size: int = 0  # bytes of the manifest document itself

    @property
    def all_layer_digests(self) -> set[str]:
        found = set(self.layer_digests)
        for child in self.children:
            found |= child.all_layer_digests
        return found


@dataclass
class SeedResult:
    """What `seed` pushed: path -> tag -> digest, plus the layer digests used."""

    images: dict[str, dict[str, str]] = field(default_factory=dict)
    layer_digests: set[str] = field(default_factory=set)

    @property
    def tag_count(self) -> int:
        return sum(len(tags) for tags in self.images.values())


_local = threading.local()
_mount_lock = threading.Lock()
# (registry identity, blob digest) -> a path holding it. The identity includes the storage
# root: a later test's registry may listen on a port an earlier one used, and must not be
# taken to hold the earlier registry's blobs.
_blob_homes: dict[tuple[str, str], str] = {}


def _identity(registry: Any) -> str:
    return f"{registry.url} {getattr(registry, 'storage', '')}"


def _session(registry: Any) -> requests.Session:
    """One keep-alive session per thread and registry (requests sessions are not shared)."""
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    session = sessions.get(registry.url)
    if session is None:
        session = sessions[registry.url] = requests.Session()
        session.auth = (registry.username, registry.password)
    return session


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_blob(size: int, index: int = 0) -> bytes:
    """Deterministic layer bytes: the same (size, index) always gives the same digest."""
    seed = hashlib.sha256(f"layer-{size}-{index}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _check(response: requests.Response, what: str) -> requests.Response:
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


def push_blob(registry: Any, path: str, data: bytes) -> str:
    """Upload a blob (cross-repository mount when we pushed it before, else POST + PUT)."""
    digest = sha256(data)
    session = _session(registry)
    uploads = f"{registry.url}/v2/{path}/blobs/uploads/"
    with _mount_lock:
        home = _blob_homes.get((_identity(registry), digest))
    if home == path:
        return digest
    if home:
        answer = session.post(uploads, params={"mount": digest, "from": home}, timeout=30)
        if answer.status_code == 201:
            return digest
        _check(answer, f"mount {digest} into {path}")
    else:
        answer = _check(session.post(uploads, timeout=30), f"start upload into {path}")
    location = urljoin(uploads, answer.headers["Location"])
    _check(
        session.put(
            location,
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        ),
        f"upload {digest} into {path}",
    )
    with _mount_lock:
        _blob_homes.setdefault((_identity(registry), digest), path)
    return digest


def put_manifest(registry: Any, path: str, reference: str, body: bytes, media_type: str) -> str:
    """PUT a manifest under a tag or its digest; returns its digest."""
    answer = _session(registry).put(
        f"{registry.url}/v2/{path}/manifests/{reference}",
        data=body,
        headers={"Content-Type": media_type},
        timeout=30,
    )
    _check(answer, f"put manifest {path}:{reference}")
    return sha256(body)


def _canonical(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def push_image_details(
    registry: Any,
    path: str,
    tag: str | None,
    *,
    arch: str = "amd64",
    os: str = "linux",
    variant: str = "",
    oci: bool = False,
    created: str | datetime | None = DEFAULT_CREATED,
    layer_sizes: Sequence[int] = (1024,),
    labels: dict[str, str] | None = None,
    shared_config: bool = False,
    via: str = "api",
) -> PushedImage:
    """Push one single-platform image; `tag=None` pushes it by digest only (an index child).

    The config carries the path, tag, platform and labels, so two calls with different
    arguments give different digests, and the same call gives the same digest. With
    `shared_config=True` the path and tag go into manifest annotations instead: digests still
    differ, but images of the same platform share one config blob (faster bulk seeding).
    `via="storage"` writes straight into the registry's filesystem storage (see `seed`)."""
    blob_writer, manifest_writer = _WRITERS[via]
    if isinstance(created, datetime):
        created = created.isoformat().replace("+00:00", "Z")
    identity = {"imagesync.path": path, "imagesync.tag": tag or ""}
    config_doc: dict[str, Any] = {
        "architecture": arch,
        "os": os,
        "config": {
            "Labels": dict(labels or {}) if shared_config else {**identity, **(labels or {})}
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    if variant:
        config_doc["variant"] = variant
    if created is not None:
        config_doc["created"] = created
    layers = [layer_blob(size, index) for index, size in enumerate(layer_sizes)]
    config_doc["rootfs"]["diff_ids"] = [sha256(layer) for layer in layers]
    config = _canonical(config_doc)
    config_digest = blob_writer(registry, path, config)
    layer_digests = tuple(blob_writer(registry, path, layer) for layer in layers)
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER if oci else DOCKER_LAYER,
                "digest": sha256(layer),
                "size": len(layer),
            }
            for layer in layers
        ],
    }
    if shared_config:
        manifest["annotations"] = identity
    body = _canonical(manifest)
    digest = sha256(body)
    manifest_writer(registry, path, tag or digest, body, media_type)
    platform = "/".join(p for p in (os, arch, variant) if p)
    return PushedImage(
        path=path,
        tag=tag or "",
        digest=digest,
        media_type=media_type,
        size=len(config) + sum(len(layer) for layer in layers),
        platforms=(platform,),
        created=created,
        config_digest=config_digest,
        layer_digests=layer_digests,
        manifest_size=len(body),
    )


def push_image(registry: Any, path: str, tag: str, **kwargs: Any) -> str:
    """Push one single-platform image under `tag`; returns its manifest digest."""
    return push_image_details(registry, path, tag, **kwargs).digest


def _attestation(registry: Any, path: str, subject: str) -> tuple[dict, PushedImage]:
    """A BuildKit-style attestation manifest and its index entry (platform unknown/unknown)."""
    statement = _canonical({"_type": "https://in-toto.io/Statement/v0.1", "subject": subject})
    config = _canonical({"architecture": "unknown", "os": "unknown", "rootfs": {"type": "layers"}})
    config_digest = push_blob(registry, path, config)
    layer_digest = push_blob(registry, path, statement)
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": IN_TOTO, "digest": layer_digest, "size": len(statement)}],
        }
    )
    digest = put_manifest(registry, path, sha256(manifest), manifest, OCI_MANIFEST)
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(manifest),
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.digest": subject,
            "vnd.docker.reference.type": "attestation-manifest",
        },
    }
    pushed = PushedImage(
        path, "", digest, OCI_MANIFEST, len(manifest), (), layer_digests=(layer_digest,)
    )
    return entry, pushed


def push_index_details(
    registry: Any,
    path: str,
    tag: str,
    platforms: Iterable[str] = ("linux/amd64", "linux/arm64"),
    *,
    oci: bool = True,
    with_attestation: bool = False,
    created: str | None = DEFAULT_CREATED,
) -> PushedImage:
    """Push one child image per "os/arch[/variant]" and an index (or Docker list) over them."""
    entries = []
    children = []
    size = 0
    for platform in platforms:
        os_name, arch, *rest = platform.split("/")
        child = push_image_details(
            registry,
            path,
            None,
            arch=arch,
            os=os_name,
            variant=rest[0] if rest else "",
            oci=oci,
            created=created,
            labels={"imagesync.index": tag},
        )
        manifest_size = child.manifest_size
        entry: dict[str, Any] = {
            "mediaType": child.media_type,
            "digest": child.digest,
            "size": manifest_size,
            "platform": {"architecture": arch, "os": os_name},
        }
        if rest:
            entry["platform"]["variant"] = rest[0]
        entries.append(entry)
        children.append(child)
        size += manifest_size
    if with_attestation:
        for child in list(children):
            entry, attestation = _attestation(registry, path, child.digest)
            entries.append(entry)
            children.append(attestation)
    media_type = OCI_INDEX if oci else DOCKER_LIST
    body = _canonical({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    digest = put_manifest(registry, path, tag, body, media_type)
    real = tuple(dict.fromkeys(c.platforms[0] for c in children if c.platforms))
    return PushedImage(
        path=path,
        tag=tag,
        digest=digest,
        media_type=media_type,
        size=size,
        platforms=real,
        multi_arch=len(real) > 1,
        created=None,
        children=tuple(children),
    )


def push_index(
    registry: Any,
    path: str,
    tag: str,
    platforms: Iterable[str] = ("linux/amd64", "linux/arm64"),
    *,
    oci: bool = True,
    with_attestation: bool = False,
) -> str:
    """Push a multi-arch index under `tag`; returns its digest."""
    return push_index_details(
        registry, path, tag, platforms, oci=oci, with_attestation=with_attestation
    ).digest


def tag_manifest(registry: Any, path: str, reference: str, new_tag: str) -> str:
    """Point `new_tag` at the manifest `reference` (a tag or digest) of the same repository,
    like `docker tag` + push of an existing image; returns the digest."""
    return copy_image(registry, path, reference, path, new_tag)


def copy_image(registry: Any, src_path: str, reference: str, dst_path: str, tag: str) -> str:
    """Copy a single-platform image (or an index whose children exist in `dst_path`) into
    another repository under `tag`, byte for byte, so the digest stays the same."""
    session = _session(registry)
    answer = _check(
        session.get(
            f"{registry.url}/v2/{src_path}/manifests/{reference}",
            headers={"Accept": ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])},
            timeout=30,
        ),
        f"get manifest {src_path}:{reference}",
    )
    body = answer.content
    media_type = answer.headers["Content-Type"].split(";")[0]
    if dst_path != src_path:
        document = json.loads(body)
        blobs = [document["config"]] if "config" in document else []
        blobs += document.get("layers", [])
        uploads = f"{registry.url}/v2/{dst_path}/blobs/uploads/"
        for blob in blobs:
            mounted = session.post(
                uploads, params={"mount": blob["digest"], "from": src_path}, timeout=30
            )
            if mounted.status_code != 201:
                raise RuntimeError(f"could not mount {blob['digest']} into {dst_path}")
    return put_manifest(registry, dst_path, tag, body, media_type)


def delete_manifest(registry: Any, path: str, digest: str) -> None:
    """DELETE a manifest by digest (the registry runs with deletion enabled): every tag that
    points at it disappears with it."""
    _check(
        _session(registry).delete(f"{registry.url}/v2/{path}/manifests/{digest}", timeout=30),
        f"delete {path}@{digest}",
    )


def delete_tag(registry: Any, path: str, tag: str) -> None:
    """Remove one tag, keeping the manifest and its other tags.

    Distribution 2.8 refuses `DELETE /v2/<name>/manifests/<tag>`, so this removes the tag's
    directory from the filesystem storage (`registry.storage`, as the fixture provides)."""
    storage = getattr(registry, "storage", None)
    if storage is None:
        raise RuntimeError("delete_tag needs a registry with filesystem storage (.storage)")
    tag_dir = Path(storage) / "docker/registry/v2/repositories" / path / "_manifests/tags" / tag
    if not tag_dir.is_dir():
        raise RuntimeError(f"no tag {path}:{tag} in the registry storage")
    shutil.rmtree(tag_dir)


def _storage_root(registry: Any) -> Path:
    storage = getattr(registry, "storage", None)
    if storage is None:
        raise RuntimeError("writing to storage needs a registry with filesystem storage")
    return Path(storage) / "docker/registry/v2"


def _write(file: Path, data: bytes) -> None:
    if file.exists():
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_name(f".{file.name}.{threading.get_ident()}")
    temporary.write_bytes(data)
    temporary.replace(file)  # atomic: the running registry never reads half a file


def _link(root: Path, digest: str) -> tuple[Path, bytes]:
    algorithm, _, hexdigest = digest.partition(":")
    return root / algorithm / hexdigest / "link", digest.encode()


def storage_blob(registry: Any, path: str, data: bytes) -> str:
    """Write a blob into Distribution's filesystem layout and link it into `path`."""
    root = _storage_root(registry)
    digest = sha256(data)
    hexdigest = digest[7:]
    _write(root / "blobs/sha256" / hexdigest[:2] / hexdigest / "data", data)
    _write(*_link(root / "repositories" / path / "_layers", digest))
    return digest


def storage_manifest(registry: Any, path: str, reference: str, body: bytes, media_type: str) -> str:
    """Write a manifest (and its tag, unless `reference` is its digest) into the storage."""
    root = _storage_root(registry)
    digest = sha256(body)
    hexdigest = digest[7:]
    manifests = root / "repositories" / path / "_manifests"
    _write(root / "blobs/sha256" / hexdigest[:2] / hexdigest / "data", body)
    _write(*_link(manifests / "revisions", digest))
    if reference != digest:
        tag = manifests / "tags" / reference
        _write(*_link(tag / "index", digest))
        current = tag / "current/link"
        current.parent.mkdir(parents=True, exist_ok=True)
        temporary = current.with_name(f".link.{threading.get_ident()}")
        temporary.write_bytes(digest.encode())
        temporary.replace(current)
    return digest


_WRITERS = {"api": (push_blob, put_manifest), "storage": (storage_blob, storage_manifest)}


def seed(
    registry: Any,
    repos: int = 10,
    tags: int = 3,
    *,
    prefix: str = "seed",
    oci_every: int = 2,
    workers: int = 8,
    shared_config: bool = False,
    via: str = "api",
) -> SeedResult:
    """Push `repos` repositories (`{prefix}/repo-0000`, ...) of `tags` tags (`v0`, `v1`, ...)
    each, every tag a distinct single-platform image sharing one small layer. Every
    `oci_every`-th repository uses OCI manifests, the others Docker v2 (0: all Docker).

    Each tag costs three requests (config upload POST + PUT, manifest PUT); with
    `shared_config=True` one (all images share one config and differ by manifest annotations),
    which is about three times faster.

    `via="storage"` skips HTTP and writes Distribution's filesystem layout directly (blobs,
    `_layers`, `_manifests/revisions` and `_manifests/tags` links) into `registry.storage`
    while the registry runs: 1,000 x 10 distinct images in seconds. The registry serves them
    exactly as if they had been pushed (the e2e tests and the benchmark check this)."""
    result = SeedResult()
    shared_layer = layer_blob(1024, 0)
    result.layer_digests.add(sha256(shared_layer))
    lock = threading.Lock()

    def one_repo(index: int) -> None:
        path = f"{prefix}/repo-{index:04d}"
        oci = bool(oci_every) and index % oci_every == 0
        pushed = {}
        for number in range(tags):
            tag = f"v{number}"
            pushed[tag] = push_image_details(
                registry, path, tag, oci=oci, shared_config=shared_config, via=via
            ).digest
        with lock:
            result.images[path] = pushed

    # Upload the shared layer once so every other repository can mount it.
    _WRITERS[via][0](registry, f"{prefix}/repo-0000", shared_layer)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(one_repo, i) for i in range(repos)]:
            future.result()
    result.images = dict(sorted(result.images.items()))
    return result
