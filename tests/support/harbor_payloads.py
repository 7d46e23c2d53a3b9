"""Harbor v2.0 API answers (projects, repositories, tags, artifacts) shaped like Harbor's swagger
models, for the Harbor client tests and the client fuzzing."""

from __future__ import annotations

from imagesync.registries.manifests import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_INDEX

ZERO = "0001-01-01T00:00:00.000Z"  # Harbor's "never" (e.g. a pull time)


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


def project(project_id: int, name: str) -> dict:
    return {
        "project_id": project_id,
        "owner_id": 1,
        "name": name,
        "registry_id": None,
        "creation_time": "2024-01-01T00:00:00.000Z",
        "update_time": "2024-01-01T00:00:00.000Z",
        "deleted": False,
        "owner_name": "admin",
        "togglable": True,
        "current_user_role_id": 1,
        "current_user_role_ids": [1],
        "repo_count": 1,
        "metadata": {"public": "false", "auto_scan": "true"},
    }


def repository(repo_id: int, project_id: int, name: str, count: int = 1) -> dict:
    return {
        "id": repo_id,
        "project_id": project_id,
        "name": name,
        "description": "",
        "artifact_count": count,
        "pull_count": 0,
        "creation_time": "2024-04-01T00:00:00.000Z",
        "update_time": "2024-05-01T08:15:30.123Z",
    }


def tag(tag_id: int, artifact_id: int, name: str, pushed: str) -> dict:
    return {
        "id": tag_id,
        "repository_id": 5,
        "artifact_id": artifact_id,
        "name": name,
        "push_time": pushed,
        "pull_time": ZERO,
        "immutable": False,
    }


def single_artifact(artifact_id: int, tags: list[dict], arch: str = "arm64", **extra) -> dict:
    artifact = {
        "id": artifact_id,
        "type": "IMAGE",
        "media_type": DOCKER_CONFIG,
        "manifest_media_type": DOCKER_MANIFEST,
        "project_id": 1,
        "repository_id": 5,
        "digest": digest(artifact_id),
        "size": 1000 + artifact_id,
        "push_time": "2024-04-30T10:05:00.000Z",
        "pull_time": ZERO,
        "extra_attrs": {
            "architecture": arch,
            "os": "linux",
            "author": "",
            "created": "2024-04-30T10:00:00Z",
            "config": {},
        },
        "annotations": None,
        "references": None,
        "addition_links": {},
        "labels": None,
    }
    if tags:  # go-swagger omits empty fields: untagged artifacts have no "tags" key
        artifact["tags"] = tags
    artifact.update(extra)
    return artifact


def index_artifact(artifact_id: int, tags: list[dict]) -> dict:
    """An OCI index over linux/amd64 and linux/arm64/v8, with BuildKit's attestation."""

    def child(n: int, platform: dict, **more) -> dict:
        return {
            "parent_id": artifact_id,
            "child_id": n,
            "child_digest": digest(n),
            "platform": platform,
            **more,
        }

    return {
        "id": artifact_id,
        "type": "IMAGE",
        "media_type": OCI_INDEX,
        "manifest_media_type": OCI_INDEX,
        "project_id": 1,
        "repository_id": 5,
        "digest": digest(artifact_id),
        "size": 67301234,
        "push_time": "2024-05-01T08:15:30.123Z",
        "pull_time": ZERO,
        "extra_attrs": {},
        "references": [
            child(artifact_id + 1, {"architecture": "amd64", "os": "linux"}),
            child(artifact_id + 2, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
            child(
                artifact_id + 3,
                {"architecture": "unknown", "os": "unknown"},
                annotations={"vnd.docker.reference.type": "attestation-manifest"},
            ),
        ],
        "tags": tags,
    }


def harbor_error(code: str, message: str) -> dict:
    return {"errors": [{"code": code, "message": message}]}
