"""Registry event payloads shaped like each registry sends them, and a poster for the
console's receiver URL (tests/test_events*.py, bench/bench_events.py).

    body = distribution_envelope([("push", "team/api", "1.0"), ("delete", "team/api", None)])
    hook_post(client, receiver, body, f"Bearer {secret}")          # Django test client
    receiver, secret = events_turned_on(registry)                   # EventReceiver, its secret
    harbor_event("PUSH_ARTIFACT", "library/nginx", "1.25")         # Harbor default payload
    harbor_cloudevent("harbor.artifact.deleted", "library/nginx", "1.25")
    jfrog_event("pushed", "docker-local", "team/api", "1.0"); jfrog_signature(body, secret)
    swr_ee_event("team/app", "1.0")                                  # Harbor-like, SWR EE
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


def distribution_event(action: str, repository: str, tag: str | None, **target: Any) -> dict:
    """One Distribution event: id, timestamp, action, target, request, actor, source."""
    digest = "sha256:" + hashlib.sha256(f"{repository}:{tag}:{action}".encode()).hexdigest()
    body = {"repository": repository, "url": f"http://127.0.0.1:5000/v2/{repository}"}
    if action != "delete":
        body.update(mediaType=DOCKER_MANIFEST, digest=digest, size=528, length=528)
    if tag:
        body["tag"] = tag
    body.update(target)
    return {
        "id": str(uuid.uuid4()),
        "timestamp": "2026-12-01T10:00:00.000000000Z",
        "action": action,
        "target": body,
        "request": {
            "id": str(uuid.uuid4()),
            "addr": "127.0.0.1:50000",
            "host": "127.0.0.1:5000",
            "method": "PUT" if action == "push" else "GET",
            "useragent": "docker/24.0",
        },
        "actor": {"name": "seeder"},
        "source": {"addr": "registry:5000", "instanceID": str(uuid.uuid4())},
    }


def distribution_envelope(
    events: list[tuple[str, str, str | None]], *, blob_push: str | None = None
) -> bytes:
    """{"events": [...]} with one event per (action, repository, tag); `blob_push` adds a
    layer blob push to that repository (ignored by the receiver)."""
    items = [distribution_event(action, repo, tag) for action, repo, tag in events]
    if blob_push:
        items.append(
            distribution_event(
                "push", blob_push, None, mediaType=DOCKER_LAYER, digest="sha256:" + "ab" * 32
            )
        )
    return json.dumps({"events": items}).encode()


def harbor_data(path: str, tag: str) -> dict:
    namespace, _, name = path.partition("/")
    digest = "sha256:" + hashlib.sha256(f"{path}:{tag}".encode()).hexdigest()
    return {
        "resources": [
            {"digest": digest, "tag": tag, "resource_url": f"harbor.example.com/{path}:{tag}"}
        ],
        "repository": {
            "date_created": 1701400000,
            "name": name,
            "namespace": namespace,
            "repo_full_name": path,
            "repo_type": "private",
        },
    }


def harbor_event(kind: str, path: str, tag: str) -> bytes:
    """Harbor's default payload."""
    return json.dumps(
        {
            "type": kind,
            "occur_at": 1701400000 + len(tag),
            "operator": "admin",
            "event_data": harbor_data(path, tag),
        }
    ).encode()


def harbor_cloudevent(kind: str, path: str, tag: str) -> bytes:
    """Harbor's CloudEvents payload (structured mode)."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/projects/1/webhook/policies/1",
            "type": kind,
            "datacontenttype": "application/json",
            "time": "2026-12-01T10:00:00Z",
            "data": harbor_data(path, tag),
            "operator": "admin",
            "requestid": str(uuid.uuid4()),
        }
    ).encode()


def jfrog_event(event_type: str, repo_key: str, image: str, tag: str, domain="docker") -> bytes:
    digest = hashlib.sha256(f"{repo_key}/{image}:{tag}".encode()).hexdigest()
    return json.dumps(
        {
            "domain": domain,
            "event_type": event_type,
            "data": {
                "repo_key": repo_key,
                "path": f"{image}/{tag}/manifest.json",
                "name": "manifest.json",
                "sha256": digest,
                "size": 1234,
                "image_name": image,
                "tag": tag,
                "platforms": [{"architecture": "amd64", "os": "linux"}],
            },
            "subscription_key": "image-inventory",
            "jpd_origin": "https://jfrog.example.com",
            "source": "jfrog/user@example.com",
        }
    ).encode()


def jfrog_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def swr_ee_event(path: str, tag: str) -> bytes:
    """SWR Enterprise Edition's push notification: Harbor-like (not documented in detail)."""
    return harbor_event("PUSH_ARTIFACT", path, tag)


def events_turned_on(registry):
    """(receiver, secret) of `registry` with registry events turned on."""
    from imagesync.events import EventReceiver

    receiver = EventReceiver.of(registry)
    return receiver, receiver.enable()


def hook_post(client, receiver, body: bytes, auth: str | None, *, header: str = "Authorization"):
    """POST `body` to the receiver's URL with Django's test client."""
    headers = {} if auth is None else {header: auth}
    return client.post(receiver.path(), body, content_type=EVENTS_MEDIA_TYPE, headers=headers)
