"""Rows for tests: repositories and images with plausible facts, and a fully seeded project
(registry, repositories, images, a finished task with a failed result, audit and grants)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import F
from django.utils import timezone

from imagesync.models import (
    AuditEvent,
    AuthorizationGrant,
    Image,
    Registry,
    Repository,
    SyncTask,
    SyncTaskRepository,
)

PASSWORD = "correct-horse-battery-staple"  # every persona's password
MIB = 1024 * 1024
NOW = timezone.now().replace(microsecond=0)


def make_repository(registry: Registry, path: str, type_: str = "other") -> Repository:
    namespace, _, name = path.partition("/")
    if not name:
        namespace, name = "", path
    return Repository.objects.create(
        registry=registry, type=type_, path=path, namespace=namespace, name=name
    )


def make_image(repository: Repository, tag: str, **fields) -> Image:
    """An image of `repository`; `last_synced_at` (default: NOW for a repository never synced)
    is stored on the repository, whose last sync every image of it shows, and a tag counts in
    the repository's image count, as a sync stores them."""
    synced = fields.pop("last_synced_at", None)
    if synced is None and repository.last_synced_at is None:
        synced = NOW
    if synced is not None:
        repository.last_synced_at = synced
        Repository.objects.filter(pk=repository.pk).update(last_synced_at=synced)
    digest_seed = fields.pop("digest_seed", f"{repository.path}:{tag}")
    digest = "sha256:" + (format(abs(hash(digest_seed)), "x") * 8)[:64]
    defaults = {
        "digest": digest,
        "size": 10 * MIB,
        "platforms": ["linux/amd64"],
        "registry_updated_at": NOW - dt.timedelta(days=1),
        "image_created_at": NOW - dt.timedelta(days=2),
    }
    defaults.update(fields)
    image = Image.objects.create(
        project=repository.registry.project, repository=repository, tag=tag, **defaults
    )
    if image.tagged:  # the repository's image count, which the sync keeps with its tags
        repository.image_count += 1
        Repository.objects.filter(pk=repository.pk).update(image_count=F("image_count") + 1)
    return image


def make_result(
    task: SyncTask, repository: Repository, status: str, **fields
) -> SyncTaskRepository:
    """One repository's result in `task`, named after the repository as the engine names it."""
    return SyncTaskRepository.objects.create(
        task=task,
        repository=repository,
        registry_name=repository.registry.name,
        repository_type=repository.type,
        repository_path=repository.path,
        status=status,
        **fields,
    )


def make_partial_task(repository: Repository, reason_message: str, **fields) -> SyncTask:
    """A finished task of the repository's project whose one repository failed (unreachable)."""
    task = SyncTask.objects.create(
        project=repository.registry.project,
        status=SyncTask.Status.PARTIALLY_SUCCEEDED,
        repositories_total=1,
        repositories_done=1,
        repositories_failed=1,
        **fields,
    )
    make_result(
        task,
        repository,
        SyncTaskRepository.Status.FAILED,
        reason_code="unreachable",
        reason_message=reason_message,
    )
    return task


@dataclass
class Seeded:
    """What seed_project created: names that must never show up in another project's pages."""

    project: object
    registry: Registry
    repository: Repository
    image: Image
    task: SyncTask
    marker: str  # a unique string in every name of this project

    def leaks_in(self, text: str) -> list[str]:
        """Which of this project's data (not merely a string a user typed) appear in text."""
        telltales = [
            self.image.digest,
            self.image.digest.split(":", 1)[1][:12],
            f"reg-{self.marker}",
            f"ns-{self.marker}/",
            f"{self.marker}.registry.test",
            str(self.project),
        ]
        return [t for t in telltales if t in text]


def seed_project(project, marker: str, secret: str = "") -> Seeded:
    """A registry, two repositories with images, and a finished task with a failed result."""
    registry = Registry(
        project=project,
        kind=Registry.Kind.OTHER,
        name=f"reg-{marker}",
        endpoint=f"https://{marker}.registry.test",
        username=f"user-{marker}",
    )
    if secret:
        registry.set_secret(secret)
    registry.save()
    repos = []
    for name in ("api", "web"):
        repo = Repository.objects.create(
            registry=registry,
            type="other",
            path=f"ns-{marker}/{name}-{marker}",
            namespace=f"ns-{marker}",
            name=f"{name}-{marker}",
        )
        repos.append(repo)
        Image.objects.create(
            project=project,
            repository=repo,
            tag=f"tag-{marker}",
            digest="sha256:" + (marker.encode().hex() * 64)[:64],
            size=1234,
            platforms=["linux/amd64"],
        )
    task = SyncTask.objects.create(
        project=project,
        status=SyncTask.Status.PARTIALLY_SUCCEEDED,
        repositories_total=2,
        repositories_done=2,
        repositories_failed=1,
        failure_code="unreachable",
        failure_reason=f"1 of 2 repositories failed: ns-{marker}/web-{marker}",
    )
    make_result(task, repos[0], "finished")
    make_result(
        task,
        repos[1],
        "failed",
        reason_code="unreachable",
        reason_message=f"Cannot reach {marker}.registry.test",
    )
    AuditEvent.record("registry.create", project=project, target=registry.name)
    AuthorizationGrant.objects.create(project=project, policy="SWROperatePolicy", note=marker)
    return Seeded(project, registry, repos[0], Image.objects.get(repository=repos[0]), task, marker)
