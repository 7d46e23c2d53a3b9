"""Huawei Cloud SWR answers (repositories, tags, Enterprise Edition instances, repositories and
artifacts), built from the JSON samples in tests/fixtures/swr, for the SWR client tests and the
client fuzzing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "swr"


def fixture(name: str) -> object:
    return json.loads((FIXTURES / name).read_text())


def repo(namespace: str = "team-a", name: str = "nginx", total: int = 1, **changes) -> dict:
    item = copy.deepcopy(fixture("repo.json"))
    host = "swr.cn-north-4.myhuaweicloud.com"
    item.update(namespace=namespace, name=name, total_range=total)
    item["path"] = item["internal_path"] = f"{host}/{namespace}/{name}"
    item.update(changes)
    return item


def tag(name: str, digest_char: str = "2", **changes) -> dict:
    item = copy.deepcopy(fixture("tag.json"))
    item.update(Tag=name, digest="sha256:" + digest_char * 64)
    item.update(changes)
    return item


def instance(**changes) -> dict:
    item = copy.deepcopy(fixture("instance.json"))
    item.update(changes)
    return item


def instance_repository(namespace: str, name: str, **changes) -> dict:
    item = copy.deepcopy(fixture("instance_repository.json"))
    item.update(namespace_name=namespace, name=name, **changes)
    return item


def artifact(digest_char: str, tags: list[str], **changes) -> dict:
    item = copy.deepcopy(fixture("artifact.json"))
    template = item["tags"][0]
    item["digest"] = "sha256:" + digest_char * 64
    item["tags"] = [dict(template, name=t) for t in tags]
    item.update(changes)
    return item
