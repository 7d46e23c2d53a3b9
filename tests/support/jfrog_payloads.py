"""JFrog Artifactory answers (Docker repository list, AQL results with the docker.* properties,
Docker API manifests and configs) for the JFrog client tests and the client fuzzing."""

from __future__ import annotations

from imagesync.registries.manifests import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def hexdigest(n: int) -> str:
    return f"{n:x}".rjust(64, "0")


def digest(n: int) -> str:
    return "sha256:" + hexdigest(n)


def docker_repo(key: str, kind: str = "LOCAL", base: str = "https://art.example.com") -> dict:
    """One entry of GET /api/repositories?packageType=docker."""
    return {
        "key": key,
        "type": kind,
        "description": f"{key} images",
        "url": f"{base}/artifactory/{key}",
        "packageType": "Docker",
    }


def manifest_item(
    repo: str,
    image: str,
    tag: str,
    n: int,
    *,
    name: str = "manifest.json",
    media_type: str = DOCKER_MANIFEST,
    modified: str = "2021-03-21T13:54:52.383+02:00",
    digest_property: bool = True,
) -> dict:
    """One AQL result row for `<image>/<tag>/manifest.json`, with the docker.* properties."""
    properties = [
        {"key": "docker.repoName", "value": image},
        {"key": "docker.manifest", "value": tag},
        {"key": "docker.manifest.type", "value": media_type},
        {"key": "sha256", "value": hexdigest(n)},
        {"key": "artifactory.content-type", "value": media_type},
    ]
    if digest_property:
        properties.append({"key": "docker.manifest.digest", "value": digest(n)})
    return {
        "repo": repo,
        "path": f"{image}/{tag}",
        "name": name,
        "type": "file",
        "size": 1609,
        "created": "2021-03-20T10:00:00.000+02:00",
        "created_by": "ci",
        "modified": modified,
        "modified_by": "ci",
        "updated": "2021-03-21T13:55:00.000+02:00",
        "sha256": hexdigest(n),
        "properties": properties,
    }


def list_item(repo: str, image: str, tag: str, n: int, media_type: str = OCI_INDEX) -> dict:
    """The AQL row of a multi-arch tag: Artifactory stores it as `list.manifest.json`."""
    return manifest_item(repo, image, tag, n, name="list.manifest.json", media_type=media_type)


def aql_answer(results: list[dict], **range_extra) -> dict:
    window = {"start_pos": 0, "end_pos": len(results), "total": len(results), **range_extra}
    return {"results": results, "range": window}


def image_manifest(n: int, layer_sizes: tuple[int, ...] = (3000, 40000)) -> dict:
    """The manifest of digest n: config digest(n + 500_000) of 1000 + n bytes, and layers."""
    layers = [
        {"mediaType": LAYER_TYPE, "size": size, "digest": digest(n + 600_000 + i * 100_000)}
        for i, size in enumerate(layer_sizes)
    ]
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": 1000 + n, "digest": digest(n + 500_000)},
        "layers": layers,
    }


def image_config(arch: str = "amd64", created: str = "2021-03-19T08:00:00Z") -> dict:
    return {"architecture": arch, "os": "linux", "created": created, "config": {}}


def index_manifest(n: int) -> dict:
    """An OCI index over linux/amd64 and linux/arm/v7, with BuildKit's attestation."""

    def entry(k: int, size: int, platform: dict, **more) -> dict:
        return {
            "mediaType": OCI_MANIFEST,
            "digest": digest(n + k),
            "size": size,
            "platform": platform,
            **more,
        }

    return {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            entry(1, 1000, {"architecture": "amd64", "os": "linux"}),
            entry(2, 1000, {"architecture": "arm", "os": "linux", "variant": "v7"}),
            entry(
                3,
                800,
                {"architecture": "unknown", "os": "unknown"},
                annotations={"vnd.docker.reference.type": "attestation-manifest"},
            ),
        ],
    }
