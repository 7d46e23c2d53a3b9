"""A fake registry client for sync tests, the image facts it serves, and the `fakes` fixture
that makes `Registry.build_client` return one (registered in tests/conftest.py)."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from imagesync.models import Registry
from imagesync.registries import CheckResult
from imagesync.registries.base import ImageInfo, RegistryError, RepositoryInfo

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def image(tag: str, content: str | None = None, minutes: int = 0, **kw) -> ImageInfo:
    content = content or tag
    return ImageInfo(
        tag=tag,
        digest=digest(content),
        media_type=kw.pop("media_type", "application/vnd.oci.image.manifest.v1+json"),
        size=kw.pop("size", 1000 + len(content)),
        platforms=kw.pop("platforms", ("linux/amd64",)),
        created=kw.pop("created", T0 + timedelta(minutes=minutes)),
        updated=kw.pop("updated", T0 + timedelta(minutes=minutes)),
        **kw,
    )


class FakeClient:
    """A registry client serving a dict path -> list of ImageInfo (or a RegistryError); its
    connection test answers `check_result` without any network."""

    def __init__(
        self, repos=None, *, type="other", max_concurrency=4, delay=0.0, check_result=None
    ):
        self.repos: dict = dict(repos or {})
        self.check_result: CheckResult = check_result or CheckResult(ok=True)
        self.type = type
        self.max_concurrency = max_concurrency
        self.delay = delay
        self.repository_error: RegistryError | None = None
        self.calls: list[str] = []
        self.known_seen: list[int] = []
        self.previous_seen: list = []  # the `previous=` each list_images call was given
        self.in_flight = 0
        self.max_in_flight = 0
        self.hooks: dict = {}  # path -> callable run during list_images
        self.closed = False
        self._lock = threading.Lock()

    def list_repositories(self, types=None):
        if self.repository_error:
            raise self.repository_error
        for path in self.repos:
            type_ = self.type(path) if callable(self.type) else self.type
            if types is None or type_ in types:
                yield RepositoryInfo.from_path(type_, path)

    def list_images(self, repository, known=None, previous=None):
        with self._lock:
            self.calls.append(repository.path)
            self.known_seen.append(len(known or {}))
            self.previous_seen.append(previous)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if repository.path in self.hooks:
                self.hooks[repository.path]()
            if self.delay:
                time.sleep(self.delay)
            listing = self.repos.get(repository.path)
            if listing is None:
                raise RegistryError("not_found", f"Repository {repository.path} not found.")
            if isinstance(listing, RegistryError):
                raise listing
            return list(listing)
        finally:
            with self._lock:
                self.in_flight -= 1

    def check(self) -> CheckResult:
        return self.check_result

    def close(self):
        self.closed = True


@pytest.fixture
def fakes(monkeypatch):
    """fakes[registry name] = FakeClient: what Registry.build_client returns."""
    clients: dict[str, FakeClient] = {}

    def build(self):
        return clients[self.name]

    monkeypatch.setattr(Registry, "build_client", build)
    return clients
