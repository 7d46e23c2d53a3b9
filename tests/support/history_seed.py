"""A project's history built the way production builds it: real reconciles of a repository,
each seen by a finished sync task at a chosen time (tests/support/fakes.py's `image()` facts)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from django.db import transaction

from imagesync.models import Registry, Repository, SyncTask
from imagesync.registries.base import ImageInfo
from tests.support.fakes import T0, image

T1, T2, T3 = (T0 + timedelta(hours=hours) for hours in (1, 2, 3))


def finished_task(project, at: datetime) -> SyncTask:
    """A succeeded sync task of `project` that finished one minute after `at`."""
    return SyncTask.objects.create(
        project=project,
        status=SyncTask.Status.SUCCEEDED,
        started_at=at,
        finished_at=at + timedelta(minutes=1),
    )


def sync(repository: Repository, listing: list[ImageInfo], at: datetime) -> SyncTask:
    """Reconcile `repository` to `listing` at `at`, seen by a new finished task."""
    task = finished_task(repository.registry.project, at)
    with transaction.atomic():
        repository.reconcile(listing, at, task=task)
    return task


def with_digest(info: ImageInfo, digest: str) -> ImageInfo:
    return dataclasses.replace(info, digest=digest)


def connect(project, name: str) -> Registry:
    return Registry.objects.create(
        project=project, kind="other", name=name, endpoint=f"https://{name}.example.com"
    )


def repository_of(registry: Registry, path: str) -> Repository:
    namespace, _, name = path.rpartition("/")
    return Repository.objects.create(
        registry=registry, type="other", path=path, namespace=namespace, name=name
    )


__all__ = ["T0", "T1", "T2", "T3", "image", "sync", "finished_task", "with_digest"]
