"""The inventory's data model: projects, registries, repositories, images and sync tasks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from imagesync import bulk, crypto, reasons, usage

if TYPE_CHECKING:
    from imagesync.registries.base import ImageInfo, RepositoryInfo

ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}


class RepositoryType(models.TextChoices):
    SWR_PRIVATE = "swr_private", _("SWR private image")
    SWR_SHARED = "swr_shared", _("SWR shared image")
    SWR_ENTERPRISE = "swr_enterprise", _("SWR enterprise edition image")
    HARBOR = "harbor", _("Harbor repository image")
    JFROG = "jfrog", _("JFrog repository image")
    OTHER = "other", _("Other (OCI / Docker v2) image")


SWR_TYPES = (RepositoryType.SWR_PRIVATE, RepositoryType.SWR_SHARED, RepositoryType.SWR_ENTERPRISE)

BATCH_SIZE = 500  # rows per bulk statement
# A sync's listing of at most this many images writes them, and their history, with the
# transaction's last round trip on PostgreSQL (Repository.reconcile's `deferred`): their
# statements wait in memory until then.
DEFERRED_IMAGES = 2000
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


def aware(value: datetime | None) -> datetime | None:
    """A registry time as an aware datetime (naive ones are UTC)."""
    if value is not None and timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    return value


def latest_tag(images: Iterable[ImageInfo]) -> str | None:
    """The tag pushed most recently: newest registry update time, else newest created time,
    then the greatest tag name (so the choice is stable)."""
    best = None
    best_key = None
    for info in images:
        key = (aware(info.updated) or aware(info.created) or _EPOCH, info.tag)
        if best_key is None or key > best_key:
            best, best_key = info.tag, key
    return best


@dataclass
class ReconcileCounts:
    """What reconciling one repository did to its images."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged


# --- projects and membership --------------------------------------------------------------


class ProjectQuerySet(models.QuerySet):
    def for_user(self, user) -> ProjectQuerySet:
        """Projects the user may see: members see theirs, superusers see all."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(memberships__user=user).distinct()


class Project(models.Model):
    """A region/project scope picked top-left in the console; every other object belongs to one."""

    name = models.CharField(max_length=64, unique=True)
    region = models.CharField(
        max_length=64, blank=True, help_text=_("Region label, e.g. cn-north-4.")
    )
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        verbose_name = _("project")
        verbose_name_plural = _("projects")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.region} / {self.name}" if self.region else self.name

    def role_of(self, user) -> str | None:
        """The user's role in this project (superusers are admins everywhere), or None."""
        if not user.is_authenticated or not user.is_active:
            return None
        if user.is_superuser:
            return ProjectMembership.Role.ADMIN
        roles = ProjectMembership.objects.filter(project=self, user=user)
        return roles.values_list("role", flat=True).first()


class ProjectMembership(models.Model):
    """A user's role in one project: viewer (read), operator (sync) or admin (registries too)."""

    class Role(models.TextChoices):
        VIEWER = "viewer", _("Viewer")
        OPERATOR = "operator", _("Operator")
        ADMIN = "admin", _("Admin")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        verbose_name = _("project membership")
        verbose_name_plural = _("project memberships")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "project"], name="membership_unique_user_project"
            )
        ]
        ordering = ["project__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


def has_role(role: str | None, needed: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


# --- registries -----------------------------------------------------------------------------


class RegistryQuerySet(models.QuerySet):
    def for_user(self, user) -> RegistryQuerySet:
        return self.filter(project__in=Project.objects.for_user(user))


class Registry(models.Model):
    """One connection to a registry service: kind, endpoint, credentials and options."""

    class Kind(models.TextChoices):
        SWR = "swr", _("Huawei SWR")
        HARBOR = "harbor", _("Harbor")
        JFROG = "jfrog", _("JFrog Artifactory")
        OTHER = "other", _("OCI / Docker v2 registry")

    class ConnectionStatus(models.TextChoices):
        UNKNOWN = "unknown", _("Not tested")
        CONNECTING = "connecting", _("Connecting")
        SUCCESS = "success", _("Connected")
        FAIL = "fail", _("Connection failed")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="registries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=128)
    endpoint = models.URLField(
        max_length=512,
        help_text=_(
            "Base URL, e.g. https://harbor.example.com or https://swr-api.cn-north-4.myhuaweicloud.com."
        ),
    )
    username = models.CharField(
        max_length=256, blank=True, help_text=_("User, robot account, or access key (AK) for SWR.")
    )
    secret_encrypted = models.TextField(
        blank=True, editable=False, help_text=_("Password, token or secret key, encrypted at rest.")
    )
    verify_tls = models.BooleanField(
        default=True, help_text=_("Verify the registry's TLS certificate.")
    )
    ca_bundle = models.TextField(
        blank=True, help_text=_("PEM CA certificates to trust, if not public ones.")
    )
    allow_insecure_http = models.BooleanField(
        default=False, help_text=_("Allow a plain http:// endpoint (never used unless set).")
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text=_(
            "Kind-specific options, e.g. repositories (list, for registries without a catalog), "
            "max_concurrency, requests_per_second, region, project_id."
        ),
    )
    connection_status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.UNKNOWN
    )
    connection_reason_code = models.CharField(max_length=32, blank=True)
    connection_message = models.CharField(max_length=512, blank=True)
    connection_checked_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    usage_missing_code = models.CharField(
        max_length=32,
        blank=True,
        help_text=_("Why the last sync could not read pull data (a reason code); empty: it could."),
    )
    usage_missing_message = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RegistryQuerySet.as_manager()

    # What connection tests and syncs write; no form or API request sets them.
    STATUS_FIELDS = (
        "connection_status",
        "connection_reason_code",
        "connection_message",
        "connection_checked_at",
        "last_synced_at",
    )

    class Meta:
        verbose_name = _("registry")
        verbose_name_plural = _("registries")
        ordering = ["project__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="registry_unique_name_per_project"
            )
        ]
        # Image View sorted by registry: registries in name order, then their repositories
        # and images by index, instead of sorting every image (SQLite).
        indexes = [models.Index(fields=["name"], name="registry_name_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    def set_secret(self, plain: str) -> None:
        self.secret_encrypted = crypto.encrypt(plain)

    set_secret.alters_data = True

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    get_secret.alters_data = True  # keeps templates from ever rendering it

    def client_config(self):
        """The plain configuration a registry client is built from."""
        from imagesync.registries import ClientConfig

        return ClientConfig(
            url=self.endpoint,
            username=self.username,
            secret=self.get_secret(),
            verify_tls=self.verify_tls,
            ca_bundle=self.ca_bundle,
            allow_insecure_http=self.allow_insecure_http,
            options=dict(self.options or {}),
        )

    client_config.alters_data = True

    def build_client(self):
        """A registry client for this connection (see imagesync.registries)."""
        from imagesync.registries import build_client

        return build_client(self.kind, self.client_config())

    build_client.alters_data = True

    @property
    def repository_types(self) -> tuple[str, ...]:
        """The repository types this kind of registry serves (the type belongs to the
        repository: one SWR connection yields the three SWR types)."""
        if self.kind == self.Kind.SWR:
            return tuple(t.value for t in SWR_TYPES)
        return (RepositoryType(self.kind).value,)  # harbor, jfrog and other share their names

    def record_check(self, ok: bool, code: str = "", message: str = "") -> None:
        self.connection_status = self.ConnectionStatus.SUCCESS if ok else self.ConnectionStatus.FAIL
        self.connection_reason_code = "" if ok else code
        self.connection_message = message[:512]
        self.connection_checked_at = timezone.now()
        self.save(
            update_fields=[
                "connection_status",
                "connection_reason_code",
                "connection_message",
                "connection_checked_at",
                "updated_at",
            ]
        )

    record_check.alters_data = True

    def test_connection(self, user=None):
        """Check the endpoint and credentials, store the result and audit it; returns the
        CheckResult. Never raises for a registry's answer or a bad configuration."""
        from imagesync.registries import CheckResult, RegistryError

        try:
            client = self.build_client()
        except RegistryError as error:
            result = CheckResult(False, error.code, error.message)
        else:
            try:
                result = client.check()
            finally:
                client.close()
        self.record_check(result.ok, result.code, result.message)
        AuditEvent.record(
            "registry.test",
            actor=user,
            project=self.project,
            target=self.name,
            detail="ok" if result.ok else f"failed: {result.code}",
        )
        return result

    test_connection.alters_data = True

    def audit(self, action: str, user=None, *, via: str = "", detail: str = ""):
        """Record an action on this connection; `via` names where it came from (API, admin,
        command line), none for the console."""
        text = "; ".join(part for part in (f"via {via}" if via else "", detail) if part)
        return AuditEvent.record(
            action, actor=user, project=self.project, target=self.name, detail=text
        )

    audit.alters_data = True

    def remove(self, user=None, *, via: str = "") -> None:
        """Delete the connection with its repositories and images, and audit it: the one way
        the console, the API, the admin and the command remove a registry. Its images are
        recorded as removed in the history, which stays readable (see imagesync.history)."""
        from imagesync.history import Change, forget_images

        now = timezone.now()
        with transaction.atomic():
            self.audit("registry.delete", user, via=via)
            Image.objects.filter(repository__registry=self, tagged=False).delete()  # no history
            for repository in self.repositories.filter(image_count__gt=0):
                repository.registry = self
                forget_images(repository, now, source=Change.Source.CONNECTION_REMOVED)
            self.delete()

    remove.alters_data = True


# --- repositories and images ----------------------------------------------------------------


class RepositoryQuerySet(models.QuerySet):
    def for_user(self, user) -> RepositoryQuerySet:
        return self.filter(registry__project__in=Project.objects.for_user(user))

    def of_project(self, project) -> RepositoryQuerySet:
        return self.filter(registry__project=project)

    def present(self) -> RepositoryQuerySet:
        return self.filter(removed_at__isnull=True)

    def of_types(self, types) -> RepositoryQuerySet:
        return self.filter(type__in=list(types))

    def apply_listing(
        self,
        registry: Registry,
        types: Iterable[str],
        infos: Iterable[RepositoryInfo],
        *,
        task=None,
        listed_at: datetime | None = None,
    ) -> tuple[list[Repository], int]:
        """Bring the repositories of `registry` (for `types`) in line with a COMPLETE listing:
        add new ones, un-remove returning ones, mark vanished ones removed and delete their
        images (each recorded as removed, seen by `task`). Returns the present repositories
        and the number of images removed.

        `listed_at`: when the listing started; a repository whose images come from a later
        listing of its own (an event refresh stored meanwhile) is not removed."""
        from imagesync.history import forget_images

        types = tuple(types)
        now = timezone.now()
        existing = {(r.type, r.path): r for r in Repository.objects.filter(registry=registry)}
        seen: dict[tuple[str, str], RepositoryInfo] = {}
        for info in infos:
            if info.type in types:
                seen.setdefault((info.type, info.path), info)
        new: list[Repository] = []
        changed: list[Repository] = []
        for key, info in seen.items():
            state = (
                None,
                info.namespace,
                info.name or info.path,
                dict(info.extra or {}),
                info.pull_count,
            )
            repo = existing.get(key)
            if repo is None:
                new.append(
                    Repository(registry=registry, type=info.type, path=info.path, first_seen_at=now)
                )
                repo = new[-1]
            elif (repo.removed_at, repo.namespace, repo.name, repo.extra, repo.pull_count) != state:
                changed.append(repo)
            repo.removed_at, repo.namespace, repo.name, repo.extra, repo.pull_count = state
        Repository.objects.bulk_create(new, batch_size=BATCH_SIZE)
        Repository.objects.bulk_update(
            changed,
            ["removed_at", "namespace", "name", "extra", "pull_count"],
            batch_size=BATCH_SIZE,
        )
        vanished = [
            repo
            for key, repo in existing.items()
            if repo.type in types
            and repo.removed_at is None
            and key not in seen
            and not (listed_at and repo.listing_started_at and repo.listing_started_at > listed_at)
        ]
        removed_images = 0
        for repo in vanished:
            repo.registry = registry
            Image.objects.filter(repository=repo, tagged=False).delete()  # not in the history
            removed_images += forget_images(repo, now, task)
        Repository.objects.filter(pk__in=[repo.pk for repo in vanished]).update(
            removed_at=now, image_count=0
        )
        present = Repository.objects.filter(
            registry=registry, type__in=types, removed_at__isnull=True
        ).order_by("path")
        return [repo for repo in present if (repo.type, repo.path) in seen], removed_images


class Repository(models.Model):
    """One image repository inside a registry (`namespace/name`), with a repository type."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="repositories")
    type = models.CharField(max_length=16, choices=RepositoryType.choices)
    path = models.CharField(
        max_length=255,
        help_text=_("Path under the registry host that `docker pull` uses, e.g. team/api."),
    )
    namespace = models.CharField(
        max_length=255, blank=True, help_text=_("First component of the path.")
    )
    name = models.CharField(max_length=255, help_text=_("The path without its namespace."))
    extra = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Connector data needed to list it again (e.g. instance id)."),
    )
    image_count = models.PositiveIntegerField(default=0)
    pull_count = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=_("Pulls of the whole repository, where the registry counts them (usage)."),
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Set when a complete listing no longer showed it.")
    )
    listing_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the listing its stored images come from started; an older listing "
            "never overwrites a newer one (see take_listing)."
        ),
    )

    objects = RepositoryQuerySet.as_manager()

    class Meta:
        verbose_name = _("repository")
        verbose_name_plural = _("repositories")
        ordering = ["registry__name", "type", "path"]
        constraints = [
            models.UniqueConstraint(
                fields=["registry", "type", "path"], name="repository_unique_path"
            )
        ]
        indexes = [
            models.Index(fields=["type", "namespace"], name="repository_type_ns_idx"),
            models.Index(fields=["name"], name="repository_name_idx"),
            # Image View sorted by namespace (namespace, name, repository, tag): repositories
            # in that order, each one's images by its (repository, tag) index.
            models.Index(fields=["namespace", "name"], name="repository_ns_name_idx"),
            # Image View sorted by "Last synced" (its images show the repository's): the same
            # walk, the id with the time so that PostgreSQL reads repositories in the sort's
            # order (repository_id follows it).
            models.Index(fields=["last_synced_at", "id"], name="repository_synced_idx"),
        ]

    def __str__(self) -> str:
        return self.path

    def reconcile(
        self,
        images: Iterable[ImageInfo],
        now: datetime | None = None,
        *,
        task=None,
        deferred: list[tuple[str, list]] | None = None,
        stored: list | None = None,
    ) -> ReconcileCounts:
        """Make the stored images of this repository exactly the complete listing `images`, and
        record what changed in the history (see imagesync.history), seen by `task`.

        Call inside a transaction. A handful of queries whatever the size: one read, bulk
        inserts, bulk updates of the changed rows, one delete of vanished tags (chunked), one
        UPDATE of the repository (its image count and last sync, which is its images' "Last
        synced": an unchanged image is not written at all), and for the history only what
        changed (nothing for an unchanged tag).

        `deferred`: a list to which that last UPDATE is appended (`bulk.update_statement`)
        instead of being run, for the caller to run later in the same transaction -- e.g. as
        part of the statement that records the repository's result (`SyncTask.record_repository`'s
        `before`: one round trip for both on PostgreSQL). Nothing after it reads what it
        writes. On PostgreSQL the new and changed images of a listing of up to
        `DEFERRED_IMAGES` and their history go there too (`bulk.keep_or_run`): nothing in the
        transaction reads them either, so a new repository's rows and history are written by
        that same round trip.

        `stored`: the rows of `stored_rows_statement()`, when the caller read them already in
        this transaction (with the statements that lock the repository: one round trip). The
        list is consumed: each row is dropped once converted."""
        from imagesync.history import HistoryRecorder

        now = now or timezone.now()
        history = HistoryRecorder(self, now, task, _history_source(task))
        listing = {info.tag: info for info in images}
        newest = latest_tag(listing.values())
        existing, untagged = self._stored_rows(stored)
        later = None  # statements for the caller's last round trip (bulk.keep_or_run)
        size = len(listing) + len(getattr(images, "untagged", ()))
        if deferred is not None and size <= DEFERRED_IMAGES and bulk.sends_together():
            later = []
        create = functools.partial(_create_images, later=later)
        update = functools.partial(_update_images, later=later)
        counts = ReconcileCounts()
        to_create: list[dict] = []  # _new_image
        to_update: list[list] = []  # [pk, *values of _IMAGE_UPDATE_FIELDS]
        usage_update: dict[tuple, list[int]] = {}  # only pull figures changed: no history
        for tag, info in listing.items():
            is_latest = tag == newest
            row = existing.get(tag)
            if row is None:
                image = _new_image(self, info, is_latest=is_latest, now=now)
                to_create.append(image)
                history.added(tag, image["digest"], image["registry_updated_at"])
                counts.added += 1
                _flush_full(to_create, create)
                continue
            state = _listing_state(info)
            content_changed = _stored_state(row) != state
            if content_changed or row[9] != is_latest:
                # The row's new values, from the listing as _new_image takes them,
                # without a model instance (a re-push of every tag builds one per image).
                usage = _usage_of(info) if info.pull_source else row[11:15]
                to_update.append([row[0], *state, is_latest, *usage])
                history.restated(row[2], tag, state[0], state[6])
                _flush_full(to_update, update)
            elif info.pull_source and _usage_of(info) != tuple(row[11:15]):
                usage_update.setdefault(_usage_of(info), []).append(row[0])
            if content_changed:
                counts.updated += 1
            else:
                counts.unchanged += 1
        vanished = [row[0] for tag, row in existing.items() if tag not in listing]
        for tag, row in existing.items():
            if tag not in listing:
                history.removed(tag, row[2])
        counts.removed = len(vanished)
        for start in range(0, len(vanished), BATCH_SIZE):
            Image.objects.filter(pk__in=vanished[start : start + BATCH_SIZE]).delete()
        update(to_update)
        create(to_create)
        _update_usage(usage_update)
        self._reconcile_untagged(getattr(images, "untagged", ()), now, untagged, later)
        history.write(later)
        last = [
            *(later or ()),
            bulk.update_statement(
                Repository,
                "id = %s",
                [self.pk],
                values={"image_count": len(listing), "last_synced_at": now, "removed_at": None},
            ),
        ]
        if deferred is None:
            bulk.run_together(last)
        else:
            deferred.extend(last)
        return counts

    reconcile.alters_data = True

    def stored_rows_statement(self) -> tuple[str, list]:
        """The query of the stored images that `reconcile` reads (its `stored`)."""
        return bulk.select_statement(
            Image, _STORED_ROW_FIELDS, "repository_id = %s", [self.pk], order="tag"
        )

    def _stored_rows(self, stored: list | None = None) -> tuple[dict[str, tuple], dict[str, tuple]]:
        """The stored images of this repository read with _IMAGE_STATE_FIELDS, in one query
        (or the rows of it already read, `stored`): the tagged ones by tag (in tag order), the
        untagged ones by digest."""
        tagged, untagged = {}, {}
        if stored is None:
            stored = bulk.run_together([self.stored_rows_statement()])[0]
        rows = bulk.converted_rows(Image, _STORED_ROW_FIELDS, stored, consume=True)
        is_tagged = len(_IMAGE_STATE_FIELDS)  # the column after the state's
        for row in rows:
            if row[is_tagged]:
                tagged[row[1]] = row
            else:
                untagged[row[2]] = row
        return tagged, untagged

    def _reconcile_untagged(
        self,
        untagged: Iterable[ImageInfo],
        now: datetime,
        existing: dict[str, tuple],
        later: list | None = None,
    ) -> None:
        """Make the stored untagged images (`existing`: rows of _stored_rows, keyed by digest)
        exactly `untagged`. They are not in the history, which records what tags point to, nor
        in the task's counts."""
        listing = {info.digest: info for info in untagged if info.digest}
        gone = [row[0] for digest, row in existing.items() if digest not in listing]
        for start in range(0, len(gone), BATCH_SIZE):
            Image.objects.filter(pk__in=gone[start : start + BATCH_SIZE]).delete()
        fresh = []
        usage_update: dict[tuple, list[int]] = {}
        for digest, info in listing.items():
            row = existing.get(digest)
            if row is None:
                image = _new_image(self, info, is_latest=False, now=now)
                image["tag"], image["tagged"] = "", False
                fresh.append(image)
            elif info.pull_source and _usage_of(info) != tuple(row[11:15]):
                # A digest's content never changes: only its usage can.
                usage_update.setdefault(_usage_of(info), []).append(row[0])
        _update_usage(usage_update)
        _create_images(fresh, later=later)

    _reconcile_untagged.alters_data = True

    def take_listing(self, started: datetime) -> bool:
        """Whether a listing of this repository that started at `started` may be stored: False
        when the stored images already come from a listing that started later (a full sync and
        an event refresh listed it at the same time, and the newer one was stored first).

        Call inside the transaction that reconciles: it locks the repository row until the end
        of that transaction, so two reconciles of one repository never run at once."""
        with connection.cursor() as cursor:
            cursor.execute(*self.listing_statement(started))
            return self.listing_taken(bool(cursor.rowcount))

    take_listing.alters_data = True

    def listing_statement(
        self, started: datetime, condition: str = "", params: Sequence = ()
    ) -> tuple[str, list]:
        """`take_listing`'s UPDATE (with `condition`, SQL with `params`, as one more
        condition): it takes the row lock and, once it has it (PostgreSQL re-reads a row a
        concurrent transaction changed), checks the stored listing's start."""
        where = "id = %s AND (listing_started_at IS NULL OR listing_started_at <= %s)"
        return bulk.update_statement(
            Repository,
            f"{where} AND {condition}" if condition else where,
            [self.pk, bulk.moment(started), *params],
            values={"listing_started_at": started},
        )

    def listing_taken(self, changed: bool) -> bool:
        """`take_listing`'s answer once `listing_statement` changed a row or not: no row
        changed means a newer listing is stored -- or the repository is gone, whose reconcile
        then fails as before."""
        return changed or not Repository.objects.filter(pk=self.pk).exists()

    def stored_tags(self, before: Sequence[tuple[str, list]] = ()) -> dict[str, str]:
        """tag -> digest of the images stored for this repository (what the last sync found).

        `before`: statements to run first (`bulk.update_statement`s): on PostgreSQL in the
        same round trip (`bulk.run_together`)."""
        if not self.image_count:  # a new repository (or an empty one): nothing to read
            bulk.run_together(before)
            return {}
        table = connection.ops.quote_name(Image._meta.db_table)
        sql = f"SELECT tag, digest FROM {table} WHERE repository_id = %s AND tagged = %s"
        return dict(bulk.run_together([*before, (sql, [self.pk, True])])[-1])

    def as_info(self) -> RepositoryInfo:
        """The plain description a registry client lists images of."""
        from imagesync.registries.base import RepositoryInfo

        return RepositoryInfo(
            type=self.type,
            path=self.path,
            namespace=self.namespace,
            name=self.name,
            extra=dict(self.extra or {}),
            pull_count=self.pull_count,
        )


class ImageQuerySet(models.QuerySet):
    def for_user(self, user) -> ImageQuerySet:
        return self.filter(project__in=Project.objects.for_user(user))


class ImageState(models.Model):
    """What a tag points to and what is known of it: the fields an image and each state in its
    history (imagesync.history.ImageInterval) share."""

    STATE_FIELDS = (
        "tag",
        "digest",
        "media_type",
        "size",
        "platforms",
        "multi_arch",
        "is_latest",
        "image_created_at",
        "registry_updated_at",
        "first_seen_at",
    )

    tag = models.CharField(max_length=128)
    # 150: room for sha512 (135 characters; migration 0026).
    digest = models.CharField(max_length=150, help_text=_("Manifest digest, e.g. sha256:<64 hex>."))
    media_type = models.CharField(max_length=128, blank=True)
    size = models.BigIntegerField(null=True, blank=True, help_text=_("Compressed size in bytes."))
    platforms = models.JSONField(
        default=list, blank=True, help_text=_('e.g. ["linux/amd64", "linux/arm64/v8"]')
    )
    multi_arch = models.BooleanField(default=False)
    is_latest = models.BooleanField(
        default=False, help_text=_("The most recently pushed tag of its repository.")
    )
    image_created_at = models.DateTimeField(null=True, blank=True)
    registry_updated_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Push or update time reported by the registry.")
    )
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    def state(self) -> dict:
        """The state fields by name, to copy into another ImageState."""
        return {name: getattr(self, name) for name in self.STATE_FIELDS}


class Image(ImageState):
    """One tag of a repository (HSS calls it an image version): digest, size, platforms, times."""

    # Denormalized from repository.registry.project so every Image View query is scoped and
    # sorted by one indexed column instead of a three-table join. No index of its own: every
    # index below starts with it, and each index less is one entry less to write per image
    # (and, on PostgreSQL, per unchanged image a re-sync touches).
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="images", db_index=False
    )
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="images")
    # Usage (imagesync.usage): not part of the image's state, so never a history change.
    last_pulled = models.DateTimeField(
        null=True, blank=True, help_text=_("When the registry last saw a pull of it.")
    )
    pull_count = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=_("Pulls the registry counts (of the whole repository for some sources)."),
    )
    pull_source = models.CharField(
        max_length=16,
        blank=True,
        choices=usage.SOURCE_CHOICES,
        help_text=_("Where the pull figures come from; empty: the registry reports none."),
    )
    pull_known = models.BooleanField(
        default=False,
        help_text=_("Whether no pull time means never pulled (otherwise: unknown)."),
    )
    tagged = models.BooleanField(
        default=True,
        help_text=_("False for an artifact no tag names (served by digest; its tag is empty)."),
    )

    objects = ImageQuerySet.as_manager()

    class Meta:
        verbose_name = _("image")
        verbose_name_plural = _("images")
        ordering = ["repository__path", "tag"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "tag"], condition=Q(tagged=True), name="image_unique_tag"
            ),
            models.UniqueConstraint(
                fields=["repository", "digest"],
                condition=Q(tagged=False),
                name="image_unique_untagged",
            ),
        ]
        indexes = [
            # Every Image View query says tagged = true (the default) or false, so each sort's
            # and filter's index leads with it: a page walks only rows it shows, as before
            # untagged images existed (imagesync.usage).
            models.Index(fields=["project", "tagged", "tag"], name="image_proj_tag_idx"),
            models.Index(fields=["project", "tagged", "digest"], name="image_proj_digest_idx"),
            models.Index(fields=["project", "tagged", "size"], name="image_proj_size_idx"),
            models.Index(
                fields=["project", "tagged", "registry_updated_at"], name="image_proj_updated_idx"
            ),
            models.Index(
                fields=["project", "tagged", "image_created_at"], name="image_proj_created_idx"
            ),
            models.Index(
                fields=["project", "tagged", "multi_arch"], name="image_proj_multiarch_idx"
            ),
            models.Index(fields=["project", "tagged", "is_latest"], name="image_proj_latest_idx"),
            models.Index(fields=["project", "tagged", "last_pulled"], name="image_proj_pulled_idx"),
            models.Index(
                fields=["project", "tagged", "pull_known", "last_pulled"],
                name="image_proj_usage_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.repository.path}:{self.tag}"

    @property
    def short_digest(self) -> str:
        return self.digest.split(":", 1)[-1][:12]

    @property
    def last_synced_at(self) -> datetime | None:
        """When a sync last listed the image: its repository's last complete listing. Every
        reconcile stores a repository's images from one complete listing, so its images have
        no sync time of their own to keep (and an unchanged image is never written)."""
        return self.repository.last_synced_at

    @property
    def repository_pulls(self) -> bool:
        """Whether pull_count counts the whole repository's pulls (not this image's)."""
        return self.pull_source in usage.REPOSITORY_COUNTS

    @classmethod
    def from_listing(
        cls, repository: Repository, info: ImageInfo, *, is_latest: bool, now: datetime
    ) -> Image:
        """An unsaved image of `repository` as a registry listing describes it."""
        image = cls(**_new_image(repository, info, is_latest=is_latest, now=now))
        image.repository = repository
        return image


# Read to reconcile: id, tag, the content state (what a re-push changes), is_latest, and
# first_seen_at (kept in the history).
_IMAGE_STATE_FIELDS = (
    "id",
    "tag",
    "digest",
    "media_type",
    "size",
    "platforms",
    "multi_arch",
    "image_created_at",
    "registry_updated_at",
    "is_latest",
    "first_seen_at",
    "last_pulled",
    "pull_count",
    "pull_source",
    "pull_known",
)
_STORED_ROW_FIELDS = (*_IMAGE_STATE_FIELDS, "tagged")
_USAGE_FIELDS = ["last_pulled", "pull_count", "pull_source", "pull_known"]
_IMAGE_UPDATE_FIELDS = [
    "digest",
    "media_type",
    "size",
    "platforms",
    "multi_arch",
    "image_created_at",
    "registry_updated_at",
    "is_latest",
    *_USAGE_FIELDS,
]


def _usage_of(info: ImageInfo) -> tuple:
    """The usage fields as a listing gives them, in _USAGE_FIELDS order."""
    known = bool(info.pull_source) and info.pull_known
    return (aware(info.last_pulled), info.pull_count, info.pull_source, known)


def _flush_full(images: list, write: Callable[[list], None]) -> None:
    """Write a full batch of a reconcile's new or changed images and forget them: a listing of
    100,000 new tags never holds as many rows (new images are still created in the listing's
    order, which the history copies)."""
    if len(images) >= BATCH_SIZE:
        write(images)
        images.clear()


def _new_image(repository: Repository, info: ImageInfo, *, is_latest: bool, now: datetime) -> dict:
    """The columns of a new image of `repository` as a registry listing describes it, by
    attribute name: what a reconcile inserts (no model instance per new tag)."""
    return {
        "project_id": repository.registry.project_id,
        "repository_id": repository.pk,
        "tag": info.tag,
        "digest": info.digest,
        "media_type": info.media_type or "",
        "size": info.size,
        "platforms": list(info.platforms or ()),
        "multi_arch": bool(info.multi_arch),
        "is_latest": is_latest,
        "image_created_at": aware(info.created),
        "registry_updated_at": aware(info.updated),
        "first_seen_at": now,
        "last_pulled": aware(info.last_pulled),
        "pull_count": info.pull_count,
        "pull_source": info.pull_source,
        "pull_known": bool(info.pull_source) and info.pull_known,
        "tagged": info.tagged,
    }


def _create_images(images: list[dict], later: list | None = None) -> None:
    """Insert these new images (`_new_image` dicts) in their order (their ids ascend in it,
    which the history's copies follow): plain rows (imagesync.bulk), not bulk_create's model
    instances (a fifth of a first sync's CPU). `later`: see `bulk.keep_or_run`."""
    names = _image_columns()
    rows = ([image[name] for name in names] for image in images)
    bulk.insert_rows(Image, names, rows, later=later)


@functools.cache
def _image_columns() -> list[str]:
    """Every column of an image but its id, by attribute name (project_id, repository_id)."""
    return [field.attname for field in Image._meta.concrete_fields if not field.primary_key]


def _update_images(rows: list[list], later: list | None = None) -> None:
    """Write stored images' new values (`rows`: [pk, *values of _IMAGE_UPDATE_FIELDS]): plain
    SQL (imagesync.bulk), not bulk_update's CASE per row and column (a re-sync where every
    digest changed, SQLite: ~150 -> ~2,000+ images/s, bench/bench_writes.py). `later`: see
    `bulk.keep_or_run`."""
    bulk.update_rows(Image, _IMAGE_UPDATE_FIELDS, rows, later=later)


def _update_usage(groups: dict[tuple, list[int]]) -> None:
    """Write changed usage: one UPDATE per distinct set of values (the tags of one artifact
    share them), which costs less than bulk_update's CASE per row and field."""
    for values, pks in groups.items():
        for start in range(0, len(pks), BATCH_SIZE):
            Image.objects.filter(pk__in=pks[start : start + BATCH_SIZE]).update(
                **dict(zip(_USAGE_FIELDS, values, strict=True))
            )


def _history_source(task) -> str:
    """Changes seen by an event refresh say so; every other task's are a sync's."""
    from imagesync.history import Change

    if task is not None and task.trigger == SyncTask.Trigger.EVENT:
        return Change.Source.EVENT
    return Change.Source.SYNC


def _stored_state(row: tuple) -> tuple:
    """The content state of a row read with _IMAGE_STATE_FIELDS."""
    return (row[2], row[3], row[4], list(row[5] or ()), row[6], row[7], row[8])


def _listing_state(info: ImageInfo) -> tuple:
    """The content state of an image as a registry listing describes it."""
    platforms = list(info.platforms or ())
    created, updated = aware(info.created), aware(info.updated)
    return (
        info.digest,
        info.media_type or "",
        info.size,
        platforms,
        bool(info.multi_arch),
        created,
        updated,
    )


# --- sync tasks -----------------------------------------------------------------------------


class SyncRefused(Exception):
    """A sync request that cannot be accepted; `message` is shown to the user as is.

    `active_task` is set when the refusal is because another sync of the project is active."""

    def __init__(self, message: str, active_task: SyncTask | None = None):
        super().__init__(message)
        self.message = message
        self.active_task = active_task


def _chosen_types(types: Iterable[str]) -> list[str]:
    chosen: list[str] = []
    for value in types or ():
        value = str(value).strip()
        if value not in RepositoryType.values:
            raise SyncRefused(
                gettext("Unknown repository type %(value)s; choose from %(types)s.")
                % {"value": repr(value), "types": ", ".join(RepositoryType.values)}
            )
        if value not in chosen:
            chosen.append(value)
    if not chosen:
        raise SyncRefused(gettext("Choose at least one repository type to synchronize."))
    return chosen


def _chosen_repositories(project, repositories: Iterable[Any]) -> list[Repository]:
    ids: list[int] = []
    for item in repositories or ():
        pk = item.pk if isinstance(item, Repository) else item
        try:
            ids.append(int(pk))
        except (TypeError, ValueError):
            raise SyncRefused(
                gettext("%(item)s is not a repository.") % {"item": repr(item)}
            ) from None
    if not ids:
        raise SyncRefused(gettext("Choose at least one repository to synchronize."))
    found = list(Repository.objects.of_project(project).present().filter(pk__in=ids))
    if len(found) != len(set(ids)):
        raise SyncRefused(
            gettext(
                "Some of the chosen repositories do not belong to this project or no longer exist."
            )
        )
    return found


class SyncTaskQuerySet(models.QuerySet):
    def for_user(self, user) -> SyncTaskQuerySet:
        return self.filter(project__in=Project.objects.for_user(user))

    def active(self) -> SyncTaskQuerySet:
        return self.filter(status__in=SyncTask.ACTIVE_STATUSES)

    def refuse_if_active(self, project) -> None:
        """Raise SyncRefused naming the project's active task, if it has one (an event refresh
        does not count: it runs beside a full sync, see imagesync.events)."""
        active = (
            self.active()
            .filter(project=project)
            .exclude(trigger=SyncTask.Trigger.EVENT)
            .order_by("created_at")
            .first()
        )
        if active is not None:
            raise SyncRefused(
                gettext("A synchronization is already in progress: task #%(task)s (%(status)s).")
                % {"task": active.pk, "status": str(active.get_status_display()).lower()},
                active_task=active,
            )

    def request(
        self,
        project,
        *,
        trigger: str = "manual",
        scope: str = "all",
        types: Iterable[str] = (),
        repositories: Iterable[Any] = (),
        user=None,
        retry_of: SyncTask | None = None,
        enqueue: bool = True,
    ) -> SyncTask:
        """Create a queued, audited SyncTask for `project`, enqueued once the transaction
        commits (`enqueue=False`: the caller runs it itself, as `sync_images --wait` does).

        Raises SyncRefused (with the active task) when a sync of the project is already queued
        or running, or when the scope is invalid (no types, unknown types, no or foreign
        repositories)."""
        if scope not in SyncTask.Scope.values:
            raise SyncRefused(
                gettext("Unknown synchronization scope %(scope)s.") % {"scope": repr(scope)}
            )
        if trigger not in SyncTask.Trigger.values:
            raise SyncRefused(gettext("Unknown trigger %(trigger)s.") % {"trigger": repr(trigger)})
        chosen_types = _chosen_types(types) if scope == SyncTask.Scope.TYPES else []
        chosen = []
        if scope == SyncTask.Scope.REPOSITORIES:
            chosen = _chosen_repositories(project, repositories)
        if not project.registries.exists():
            raise SyncRefused(
                gettext("This project has no registry connections yet; add a registry first.")
            )
        self.refuse_if_active(project)
        try:
            with transaction.atomic():
                task = self.create(
                    project=project,
                    trigger=trigger,
                    scope=scope,
                    scope_types=chosen_types,
                    created_by=user if getattr(user, "is_authenticated", False) else None,
                    retry_of=retry_of,
                )
                task.scope_repositories.set(chosen)
                task._audit_request(user)
        except IntegrityError:
            # Lost the race against another request: the partial unique constraint "one
            # active task per project" refused the row.
            self.refuse_if_active(project)
            raise SyncRefused("A synchronization of this project is already in progress.") from None
        if enqueue:
            task.enqueue()
        return task


class RecordedState(NamedTuple):
    """A task's row as a repository's result left it (`SyncTask.record_repository`)."""

    repositories_done: int
    repositories_total: int
    may_go_on: bool  # still running, no cancel requested


class SyncTask(models.Model):
    """One synchronization run: trigger, scope, status, progress and per-repository results."""

    class Trigger(models.TextChoices):
        MANUAL = "manual", _("Manual")
        SCHEDULED = "scheduled", _("Scheduled")
        EVENT = "event", _("Event")  # a refresh of repositories named by registry events

    class Scope(models.TextChoices):
        ALL = "all", _("All image repositories")
        TYPES = "types", _("Specified types of image repositories")
        REPOSITORIES = "repositories", _("Specified image repositories")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        PARTIALLY_SUCCEEDED = "partially_succeeded", _("Partially succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")
        INTERRUPTED = "interrupted", _("Interrupted")
        SKIPPED = "skipped", _("Skipped")

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sync_tasks")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    scope_types = models.JSONField(
        default=list, blank=True, help_text=_("Repository types chosen for the 'types' scope.")
    )
    scope_repositories = models.ManyToManyField(
        Repository,
        blank=True,
        related_name="+",
        help_text=_("Repositories chosen for the 'repositories' scope."),
    )
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    repositories_total = models.PositiveIntegerField(default=0)
    repositories_done = models.PositiveIntegerField(default=0)
    repositories_failed = models.PositiveIntegerField(default=0)
    images_added = models.PositiveIntegerField(default=0)
    images_updated = models.PositiveIntegerField(default=0)
    images_removed = models.PositiveIntegerField(default=0)
    images_unchanged = models.PositiveIntegerField(default=0)
    failure_code = models.CharField(max_length=32, blank=True)
    failure_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    worker = models.CharField(
        max_length=128, blank=True, help_text=_("Host and process that claimed it.")
    )
    requeued_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the watchdog re-enqueued this queued task (done once)."),
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = SyncTaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("sync task")
        verbose_name_plural = _("sync tasks")
        ordering = ["-created_at", "-id"]
        constraints = [
            # Event refreshes are left out: they run beside a full sync (imagesync.events).
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]) & ~Q(trigger="event"),
                name="synctask_one_active_per_project",
            )
        ]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="synctask_proj_created_idx"),
            # Not on heartbeat_at: every repository's result moves it (record_repository), and
            # an indexed column makes each of those updates of the one task row a new index
            # entry in every index (no HOT update). The running tasks are few.
            models.Index(fields=["status"], name="synctask_status_idx"),
        ]

    def __str__(self) -> str:
        return gettext("Sync task #%(task)s") % {"task": self.pk}

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def progress_percent(self) -> int:
        if self.status in (self.Status.SUCCEEDED, self.Status.PARTIALLY_SUCCEEDED):
            return 100
        if not self.repositories_total:
            return 0
        return min(100, int(100 * self.repositories_done / self.repositories_total))

    @property
    def repositories_succeeded(self) -> int:
        return max(0, self.repositories_done - self.repositories_failed)

    @property
    def duration(self):
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def scope_description(self) -> str:
        if self.scope == self.Scope.TYPES:
            return "types: " + ", ".join(self.scope_types)
        if self.scope == self.Scope.REPOSITORIES:
            return f"{self.scope_repositories.count()} chosen repositories"
        return "all repositories"

    @property
    def wanted_types(self) -> tuple[str, ...]:
        """The repository types this task covers (all of them unless the scope names some)."""
        if self.scope == self.Scope.TYPES:
            return tuple(t for t in RepositoryType.values if t in set(self.scope_types))
        return tuple(RepositoryType.values)

    def enqueue(self) -> None:
        """Hand the task to the background worker once the current transaction commits."""
        from imagesync.tasks import enqueue_sync_task

        task_id = self.pk
        transaction.on_commit(lambda: enqueue_sync_task(task_id))

    def cancel(self, user=None) -> bool:
        """Ask an active task to stop (honoured between repositories) and audit it; True if it
        was active. A queued task that no worker has claimed yet is cancelled at once."""
        if not self.request_cancel():
            return False
        if self.status == self.Status.CANCELLED:
            detail = "cancelled before it started"
        else:
            detail = "cancel requested while running"
        AuditEvent.record(
            "sync.cancel", actor=user, project=self.project, target=str(self), detail=detail
        )
        self.refresh_from_db()
        return True

    cancel.alters_data = True

    def retry_failed(self, user=None) -> SyncTask:
        """A new manual task covering just the failed repositories of this one.

        When a whole registry listing failed (a result without a repository), the retry repeats
        the original scope, since the repositories must be discovered again."""
        failed = self.results.filter(status=SyncTaskRepository.Status.FAILED)
        repository_ids = list(
            failed.filter(repository__isnull=False, repository__removed_at__isnull=True)
            .values_list("repository_id", flat=True)
            .distinct()
        )
        registry_level = failed.filter(repository__isnull=True).exists()
        if registry_level and self.scope != self.Scope.REPOSITORIES:
            return SyncTask.objects.request(
                self.project, scope=self.scope, types=self.scope_types, user=user, retry_of=self
            )
        if not repository_ids:
            raise SyncRefused(f"Task #{self.pk} has no failed repositories to retry.")
        return SyncTask.objects.request(
            self.project,
            scope=self.Scope.REPOSITORIES,
            repositories=repository_ids,
            user=user,
            retry_of=self,
        )

    retry_failed.alters_data = True

    def skip_unfinished(self, code: str, message: str) -> int:
        """Mark the results still pending or running as skipped with a reason; their count."""
        return SyncTaskRepository.objects.filter(
            task_id=self.pk,
            status__in=[SyncTaskRepository.Status.PENDING, SyncTaskRepository.Status.RUNNING],
        ).update(
            status=SyncTaskRepository.Status.SKIPPED,
            reason_code=code,
            reason_message=message,
            finished_at=timezone.now(),
        )

    skip_unfinished.alters_data = True

    def conclude(self) -> bool:
        """End a running task with the status its results call for: cancelled (on request),
        failed (every repository failed), partially succeeded, or succeeded. Results still
        unfinished are skipped; without a cancel they only come from an unexpected error and
        count as failed, so such a task never reads "succeeded"."""
        self.refresh_from_db()
        if self.cancel_requested:
            skipped = self.skip_unfinished(
                reasons.CANCELLED,
                "Not synchronized: the task was cancelled before this repository.",
            )
        else:
            skipped = self.skip_unfinished(
                reasons.INTERNAL_ERROR, "Not synchronized: the task stopped on an error."
            )
        failed = self.repositories_failed + (0 if self.cancel_requested else skipped)
        total = self.repositories_total
        code, detail = self._failure_summary(failed)
        if skipped and self.cancel_requested:
            reason = (
                f"Cancelled on request after {self.repositories_done} of {total} repositories; "
                f"{skipped} were not synchronized."
            )
            if failed:
                reason += f" {failed} failed before that: {detail}"
            return self.finish(self.Status.CANCELLED, reasons.CANCELLED, reason)
        if failed and failed >= total:
            reason = f"None of the {total} repositories could be synchronized. {detail}"
            return self.finish(self.Status.FAILED, code, reason)
        if failed:
            reason = (
                f"{failed} of {total} repositories failed and kept their previous inventory. "
                f"{detail}"
            )
            return self.finish(self.Status.PARTIALLY_SUCCEEDED, code, reason)
        return self.finish(self.Status.SUCCEEDED)

    conclude.alters_data = True

    def _failure_summary(self, failed: int) -> tuple[str, str]:
        """The task's failure code (the one code of its failed results, or several_errors) and
        a detail naming the first failed repository."""
        failures = self.results.filter(status=SyncTaskRepository.Status.FAILED)
        codes = set(failures.values_list("reason_code", flat=True))
        code = codes.pop() if len(codes) == 1 else (reasons.SEVERAL_ERRORS if codes else "")
        first = (
            failures.order_by("id")
            .values_list("registry_name", "repository_path", "reason_message")
            .first()
        )
        if first is None:
            return code, ""
        registry_name, path, message = first
        where = f"{registry_name}/{path}" if registry_name else path
        detail = f"{where}: {message}"
        if failed > 1:
            detail += f" (and {failed - 1} more)"
        return code, detail

    def _audit_request(self, user) -> None:
        action = "sync.retry" if self.retry_of_id else "sync.start"
        detail = f"{self.trigger} sync of {self.scope_description}"
        if self.retry_of_id:
            detail += f", retrying the failed repositories of task #{self.retry_of_id}"
        AuditEvent.record(action, actor=user, project=self.project, target=str(self), detail=detail)

    # --- transitions ------------------------------------------------------------------------
    # Each is one conditional UPDATE: several workers, the watchdog and the console may act on
    # the same row at once, and "1 row changed" is what says this caller won. The instance is
    # updated only when it did.

    def _transition(self, from_status: str, extra: Q | None = None, **values) -> bool:
        rows = SyncTask.objects.filter(pk=self.pk, status=from_status)
        if extra is not None:
            rows = rows.filter(extra)
        if not rows.update(**values):
            return False
        for name, value in values.items():
            setattr(self, name, value)
        return True

    def claim(self, worker: str) -> bool:
        """queued -> running; True for the one caller that won (a second claim is a no-op)."""
        now = timezone.now()
        return self._transition(
            self.Status.QUEUED,
            status=self.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
            worker=worker[:128],
        )

    claim.alters_data = True

    def beat(self) -> bool:
        """Write the heartbeat; False when the task is no longer running (stop working on it)."""
        return self._transition(self.Status.RUNNING, heartbeat_at=timezone.now())

    beat.alters_data = True

    def finish(self, status: str, code: str = "", reason: str = "") -> bool:
        """End a running task; False when it was no longer running (e.g. the watchdog finished
        it as interrupted), in which case nothing is overwritten."""
        now = timezone.now()
        return self._transition(
            self.Status.RUNNING,
            status=status,
            finished_at=now,
            heartbeat_at=now,
            failure_code=code[:32],
            failure_reason=reason,
        )

    finish.alters_data = True

    def request_cancel(self, reason: str = "Cancelled before it started.") -> bool:
        """Stop the task: a queued one is cancelled at once, a running one is asked to stop
        between repositories (`cancel_requested`). False when it was not active."""
        if self._transition(
            self.Status.QUEUED,
            status=self.Status.CANCELLED,
            cancel_requested=True,
            finished_at=timezone.now(),
            failure_code=reasons.CANCELLED,
            failure_reason=reason,
        ):
            return True
        return self._transition(self.Status.RUNNING, cancel_requested=True)

    request_cancel.alters_data = True

    def interrupt(self, code: str, reason: str, now=None) -> bool:
        """running -> interrupted, only if the heartbeat is still the one this instance read:
        a worker that beat meanwhile is alive and keeps its task."""
        same_beat = (
            Q(heartbeat_at=self.heartbeat_at) if self.heartbeat_at else Q(heartbeat_at__isnull=True)
        )
        return self._transition(
            self.Status.RUNNING,
            same_beat,
            status=self.Status.INTERRUPTED,
            finished_at=now or timezone.now(),
            failure_code=code[:32],
            failure_reason=reason,
        )

    interrupt.alters_data = True

    def record_repository(
        self,
        result_id: int,
        *,
        failed: bool = False,
        added: int = 0,
        updated: int = 0,
        removed: int = 0,
        unchanged: int = 0,
        code: str = "",
        message: str = "",
        at: datetime | None = None,
        before: Sequence[tuple[str, list]] = (),
        commit: bool = False,
    ) -> RecordedState | None:
        """Write the result of one repository (finished with its image counts, or failed with
        a reason) and add it to the task's counters. `at`: the time the repository's images
        were stored (its last_synced_at), which the inventory as of a moment reads.

        A finished repository returns the task's row as this statement left it: its
        repositories done and total (for the progress line), and whether the task still runs
        uncancelled (whether the thread's next repository may start).

        Call it inside the transaction that stored the repository's images, so that result,
        counters and inventory never disagree. Several worker threads record at once: the
        counters are `column = column + n` updates, and this instance's counters are not
        refreshed.

        `before`: statements of the same transaction still to run (those `Repository.reconcile`
        deferred), run first. `commit`: nothing follows in the transaction, which the same
        round trip may then commit (`bulk.run_together`): on PostgreSQL, the task's row, which
        every worker thread updates, is then locked for the server's time alone."""
        now = at or timezone.now()
        if failed:
            bulk.run_together(before)
            SyncTaskRepository.objects.filter(pk=result_id, task_id=self.pk).update(
                status=SyncTaskRepository.Status.FAILED,
                reason_code=(code or reasons.INTERNAL_ERROR)[:32],
                reason_message=message,
                finished_at=now,
            )
            SyncTask.objects.filter(pk=self.pk).update(
                repositories_done=F("repositories_done") + 1,
                repositories_failed=F("repositories_failed") + 1,
                heartbeat_at=now,
            )
            return
        # Plain statements (imagesync.bulk): every repository of every sync ends here. The
        # result's and the counters' updates are one round trip on PostgreSQL, with the
        # COMMIT when `commit`.
        result = bulk.update_statement(
            SyncTaskRepository,
            "id = %s AND task_id = %s",
            [result_id, self.pk],
            values={
                "status": SyncTaskRepository.Status.FINISHED,
                "images_total": added + updated + unchanged,
                "images_added": added,
                "images_updated": updated,
                "images_removed": removed,
                "images_unchanged": unchanged,
                "finished_at": now,
            },
        )
        state = bulk.update_returning(
            SyncTask,
            "id = %s",
            [self.pk],
            values={"heartbeat_at": now},
            add={
                "repositories_done": 1,
                "images_added": added,
                "images_updated": updated,
                "images_removed": removed,
                "images_unchanged": unchanged,
            },
            returning=("repositories_done", "repositories_total", "status", "cancel_requested"),
            before=[*before, result],
            commit=commit,
        )
        if state is None:
            return None
        done, total, status, cancel_requested = state
        return RecordedState(done, total, status == self.Status.RUNNING and not cancel_requested)

    record_repository.alters_data = True

    def mark_requeued(self, now=None) -> bool:
        """Note that the watchdog enqueued this queued task again; True only the first time."""
        return self._transition(
            self.Status.QUEUED, Q(requeued_at__isnull=True), requeued_at=now or timezone.now()
        )

    mark_requeued.alters_data = True

    def abandon(self, code: str, reason: str, now=None) -> bool:
        """queued -> interrupted for a task that was re-enqueued and still never claimed."""
        return self._transition(
            self.Status.QUEUED,
            Q(requeued_at__isnull=False),
            status=self.Status.INTERRUPTED,
            finished_at=now or timezone.now(),
            failure_code=code[:32],
            failure_reason=reason,
        )

    abandon.alters_data = True


class SyncTaskRepository(models.Model):
    """The result of one repository within one sync task."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        FINISHED = "finished", _("Finished")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")

    task = models.ForeignKey(SyncTask, on_delete=models.CASCADE, related_name="results")
    repository = models.ForeignKey(
        Repository, null=True, blank=True, on_delete=models.SET_NULL, related_name="sync_results"
    )
    registry_name = models.CharField(max_length=128, blank=True)
    repository_type = models.CharField(max_length=16, choices=RepositoryType.choices)
    repository_path = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason_code = models.CharField(max_length=32, blank=True)
    reason_message = models.TextField(blank=True)
    images_total = models.PositiveIntegerField(default=0)
    images_added = models.PositiveIntegerField(default=0)
    images_updated = models.PositiveIntegerField(default=0)
    images_removed = models.PositiveIntegerField(default=0)
    images_unchanged = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("sync task result")
        verbose_name_plural = _("sync task results")
        ordering = ["registry_name", "repository_type", "repository_path"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "repository"],
                condition=Q(repository__isnull=False),
                name="synctaskrepo_unique_repo_per_task",
            )
        ]
        indexes = [
            models.Index(fields=["task", "status"], name="synctaskrepo_task_status_idx"),
            # "Last synced" as of a moment: a repository's latest finished result up to then.
            models.Index(
                fields=["repository", "status", "finished_at"], name="synctaskrepo_repo_done_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.repository_path} in task #{self.task_id}"


class SyncJob(models.Model):
    """A piece of one sync task that any worker process may claim: the repository listing of
    one registry, or a batch of that registry's repositories to synchronize.

    The task row stays the truth about progress and status; a job row says who works on which
    piece and whether that worker is alive. A claim is the pair (job, attempt): a worker whose
    job was re-queued after its heartbeat stopped has lost its claim and stops at its next
    heartbeat, and a repository is recorded only while its result is still unfinished, so a
    late worker never counts it twice."""

    class Kind(models.TextChoices):
        LISTING = "listing", _("Repository listing")
        BATCH = "batch", _("Batch of repositories")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")

    task = models.ForeignKey(SyncTask, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    registry = models.ForeignKey(Registry, null=True, on_delete=models.SET_NULL, related_name="+")
    repository_types = models.JSONField(
        default=list, blank=True, help_text=_("Listing: the repository types to list.")
    )
    result_ids = models.JSONField(
        default=list, blank=True, help_text=_("Batch: the task results (repositories) it syncs.")
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempt = models.PositiveIntegerField(
        default=0, help_text=_("Claims so far; a worker's claim is valid for its attempt only.")
    )
    worker = models.CharField(max_length=128, blank=True, help_text=_("Host and process."))
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("sync job")
        verbose_name_plural = _("sync jobs")
        ordering = ["id"]
        indexes = [
            models.Index(fields=["task", "status"], name="syncjob_task_status_idx"),
            models.Index(fields=["status", "heartbeat_at"], name="syncjob_status_hb_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} job #{self.pk} of task #{self.task_id}"

    def _mine(self):
        return SyncJob.objects.filter(pk=self.pk, status=self.Status.RUNNING, attempt=self.attempt)

    def claim(self, worker: str) -> bool:
        """queued -> running for the one caller that wins it."""
        now = timezone.now()
        won = bulk.update(  # a plain statement: every job of every sync is claimed
            SyncJob,
            "id = %s AND status = %s",
            [self.pk, self.Status.QUEUED],
            values={
                "status": self.Status.RUNNING,
                "worker": worker[:128],
                "started_at": now,
                "heartbeat_at": now,
            },
            add={"attempt": 1},
        )
        if won:  # read the job as refresh_from_db would, by a plain query
            names = [field.attname for field in SyncJob._meta.concrete_fields]
            for row in bulk.select_rows(SyncJob, names, "id = %s", [self.pk]):
                for name, value in zip(names, row, strict=True):
                    setattr(self, name, value)
        return bool(won)

    claim.alters_data = True

    def beat(self) -> bool:
        """Write the heartbeat; False when this claim is no longer valid (stop working on it)."""
        return bool(self._mine().update(heartbeat_at=timezone.now()))

    beat.alters_data = True

    def finish(self) -> bool:
        now = timezone.now()
        return bool(
            bulk.update(  # `_mine` as a plain statement: every job of every sync ends here
                SyncJob,
                "id = %s AND status = %s AND attempt = %s",
                [self.pk, self.Status.RUNNING, self.attempt],
                values={"status": self.Status.DONE, "finished_at": now, "heartbeat_at": now},
            )
        )

    finish.alters_data = True

    def requeue(self) -> bool:
        """running -> queued for a job whose worker stopped beating; only if the heartbeat is
        still the one this instance read (a worker that beat meanwhile keeps its job)."""
        return bool(
            self._mine()
            .filter(heartbeat_at=self.heartbeat_at)
            .update(status=self.Status.QUEUED, worker="", queued_at=timezone.now())
        )

    requeue.alters_data = True

    def give_up(self) -> list[int]:
        """End a job whose workers kept dying (only if this instance's claim is still the
        current one); the ids of its results still unfinished, for the caller to record as
        failed."""
        mine = self._mine().filter(heartbeat_at=self.heartbeat_at)
        if not mine.update(status=self.Status.DONE, finished_at=timezone.now()):
            return []
        unfinished = [SyncTaskRepository.Status.PENDING, SyncTaskRepository.Status.RUNNING]
        results = SyncTaskRepository.objects.filter(pk__in=self.result_ids, status__in=unfinished)
        return list(results.values_list("pk", flat=True))

    give_up.alters_data = True


# --- authorization grants -------------------------------------------------------------------


class AuthorizationGrantQuerySet(models.QuerySet):
    def active(self) -> AuthorizationGrantQuerySet:
        return self.filter(revoked_at__isnull=True)

    def missing_for_schedule(self, project) -> list[str]:
        """Policies a scheduled sync of `project` needs but has no active grant for."""
        needed = [
            AuthorizationGrant.Policy.SWR_OPERATE.value,
            AuthorizationGrant.Policy.CCE_OPERATE.value,
        ]
        granted = set(
            self.active()
            .filter(project=project, policy__in=needed)
            .values_list("policy", flat=True)
        )
        return [policy for policy in needed if policy not in granted]

    def swr_authorized(self, project) -> bool:
        """Whether `project` has granted the SWR authorization its SWR repositories need."""
        policy = AuthorizationGrant.Policy.SWR_AUTHORIZATION
        return self.active().filter(project=project, policy=policy).exists()


class AuthorizationGrant(models.Model):
    """A permission granted to the console for a project (SWROperatePolicy, CCEOperatePolicy,
    SWR authorization)."""

    class Policy(models.TextChoices):
        SWR_OPERATE = "SWROperatePolicy", "SWROperatePolicy"
        CCE_OPERATE = "CCEOperatePolicy", "CCEOperatePolicy"
        SWR_AUTHORIZATION = "SWRAuthorization", _("SWR authorization")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="grants")
    policy = models.CharField(max_length=32, choices=Policy.choices)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    granted_at = models.DateTimeField(default=timezone.now)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=255, blank=True)

    objects = AuthorizationGrantQuerySet.as_manager()

    class Meta:
        verbose_name = _("authorization grant")
        verbose_name_plural = _("authorization grants")
        ordering = ["project__name", "policy", "-granted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "policy"],
                condition=Q(revoked_at__isnull=True),
                name="grant_one_active_per_policy",
            )
        ]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.get_policy_display()} for {self.project} ({state})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self, user) -> bool:
        """Revoke the grant; True when this call revoked it."""
        now = timezone.now()
        changed = AuthorizationGrant.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=user
        )
        if changed:
            self.revoked_at, self.revoked_by = now, user
        return bool(changed)

    revoke.alters_data = True


class AuditEvent(models.Model):
    """One recorded action: who started, cancelled or retried a sync, changed a registry or grant."""

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=255, blank=True)
    detail = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'} {self.action} {self.target}"

    @classmethod
    def record(cls, action: str, *, actor=None, project=None, target: str = "", detail: str = ""):
        return cls.objects.create(
            action=action,
            actor=actor if getattr(actor, "is_authenticated", False) else None,
            actor_name=getattr(actor, "username", "") or "",
            project=project,
            target=str(target)[:255],
            detail=str(detail)[:512],
        )


__all__ = [
    "AuditEvent",
    "AuthorizationGrant",
    "Change",
    "Image",
    "ImageInterval",
    "Project",
    "ProjectMembership",
    "Registry",
    "Repository",
    "RepositoryType",
    "SWR_TYPES",
    "SyncTask",
    "SyncTaskRepository",
    "has_role",
]

# The history's models and those of registry events (receiver, refresh) live in their own
# modules; importing them here registers them.
from imagesync.events import EventReceiver, RefreshPending, RegistryEvent  # noqa: E402, F401
from imagesync.history import Change, ImageInterval  # noqa: E402

# A user's language and time zone (imagesync.preferences) likewise.
from imagesync.preferences import UserPreference  # noqa: E402, F401
