"""The inventory's data model: projects, registries, repositories, images and sync tasks."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from imagesync import crypto

ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}


class RepositoryType(models.TextChoices):
    SWR_PRIVATE = "swr_private", "SWR private image"
    SWR_SHARED = "swr_shared", "SWR shared image"
    SWR_ENTERPRISE = "swr_enterprise", "SWR enterprise edition image"
    HARBOR = "harbor", "Harbor repository image"
    JFROG = "jfrog", "JFrog repository image"
    OTHER = "other", "Other (OCI / Docker v2) image"


SWR_TYPES = (RepositoryType.SWR_PRIVATE, RepositoryType.SWR_SHARED, RepositoryType.SWR_ENTERPRISE)


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
    region = models.CharField(max_length=64, blank=True, help_text="Region label, e.g. cn-north-4.")
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.region} / {self.name}" if self.region else self.name

    def role_of(self, user) -> str | None:
        """The user's role in this project (superusers are admins everywhere), or None."""
        if not user.is_authenticated or not user.is_active:
            return None
        if user.is_superuser:
            return ProjectMembership.Role.ADMIN
        membership = self.memberships.filter(user=user).only("role").first()
        return membership.role if membership else None


class ProjectMembership(models.Model):
    """A user's role in one project: viewer (read), operator (sync) or admin (registries too)."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        OPERATOR = "operator", "Operator"
        ADMIN = "admin", "Admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
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
        SWR = "swr", "Huawei SWR"
        HARBOR = "harbor", "Harbor"
        JFROG = "jfrog", "JFrog Artifactory"
        OTHER = "other", "OCI / Docker v2 registry"

    class ConnectionStatus(models.TextChoices):
        UNKNOWN = "unknown", "Not tested"
        CONNECTING = "connecting", "Connecting"
        SUCCESS = "success", "Connected"
        FAIL = "fail", "Connection failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="registries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=128)
    endpoint = models.URLField(
        max_length=512,
        help_text="Base URL, e.g. https://harbor.example.com or https://swr-api.cn-north-4.myhuaweicloud.com.",
    )
    username = models.CharField(
        max_length=256, blank=True, help_text="User, robot account, or access key (AK) for SWR."
    )
    secret_encrypted = models.TextField(
        blank=True, editable=False, help_text="Password, token or secret key, encrypted at rest."
    )
    verify_tls = models.BooleanField(
        default=True, help_text="Verify the registry's TLS certificate."
    )
    ca_bundle = models.TextField(
        blank=True, help_text="PEM CA certificates to trust, if not public ones."
    )
    allow_insecure_http = models.BooleanField(
        default=False, help_text="Allow a plain http:// endpoint (never used unless set)."
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Kind-specific options, e.g. repositories (list, for registries without a catalog), "
        "max_concurrency, requests_per_second, region, project_id.",
    )
    connection_status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.UNKNOWN
    )
    connection_reason_code = models.CharField(max_length=32, blank=True)
    connection_message = models.CharField(max_length=512, blank=True)
    connection_checked_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RegistryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "registries"
        ordering = ["project__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="registry_unique_name_per_project"
            )
        ]

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


class Repository(models.Model):
    """One image repository inside a registry (`namespace/name`), with a repository type."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="repositories")
    type = models.CharField(max_length=16, choices=RepositoryType.choices)
    path = models.CharField(
        max_length=255,
        help_text="Path under the registry host that `docker pull` uses, e.g. team/api.",
    )
    namespace = models.CharField(
        max_length=255, blank=True, help_text="First component of the path."
    )
    name = models.CharField(max_length=255, help_text="The path without its namespace.")
    extra = models.JSONField(
        default=dict,
        blank=True,
        help_text="Connector data needed to list it again (e.g. instance id).",
    )
    image_count = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when a complete listing no longer showed it."
    )

    objects = RepositoryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "repositories"
        ordering = ["registry__name", "type", "path"]
        constraints = [
            models.UniqueConstraint(
                fields=["registry", "type", "path"], name="repository_unique_path"
            )
        ]
        indexes = [
            models.Index(fields=["type", "namespace"], name="repository_type_ns_idx"),
            models.Index(fields=["name"], name="repository_name_idx"),
        ]

    def __str__(self) -> str:
        return self.path


class ImageQuerySet(models.QuerySet):
    def for_user(self, user) -> ImageQuerySet:
        return self.filter(project__in=Project.objects.for_user(user))


class Image(models.Model):
    """One tag of a repository (HSS calls it an image version): digest, size, platforms, times."""

    # Denormalized from repository.registry.project so every Image View query is scoped and
    # sorted by one indexed column instead of a three-table join.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="images")
    tag = models.CharField(max_length=128)
    digest = models.CharField(max_length=100, help_text="Manifest digest, e.g. sha256:<64 hex>.")
    media_type = models.CharField(max_length=128, blank=True)
    size = models.BigIntegerField(null=True, blank=True, help_text="Compressed size in bytes.")
    platforms = models.JSONField(
        default=list, blank=True, help_text='e.g. ["linux/amd64", "linux/arm64/v8"]'
    )
    multi_arch = models.BooleanField(default=False)
    is_latest = models.BooleanField(
        default=False, help_text="The most recently pushed tag of its repository."
    )
    image_created_at = models.DateTimeField(null=True, blank=True)
    registry_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="Push or update time reported by the registry."
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_synced_at = models.DateTimeField(default=timezone.now)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["repository__path", "tag"]
        constraints = [
            models.UniqueConstraint(fields=["repository", "tag"], name="image_unique_tag")
        ]
        indexes = [
            models.Index(fields=["project", "tag"], name="image_proj_tag_idx"),
            models.Index(fields=["project", "digest"], name="image_proj_digest_idx"),
            models.Index(fields=["project", "size"], name="image_proj_size_idx"),
            models.Index(fields=["project", "registry_updated_at"], name="image_proj_updated_idx"),
            models.Index(fields=["project", "last_synced_at"], name="image_proj_synced_idx"),
            models.Index(fields=["project", "image_created_at"], name="image_proj_created_idx"),
            models.Index(fields=["project", "multi_arch"], name="image_proj_multiarch_idx"),
            models.Index(fields=["project", "is_latest"], name="image_proj_latest_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.repository.path}:{self.tag}"

    @property
    def short_digest(self) -> str:
        return self.digest.split(":", 1)[-1][:12]


# --- sync tasks -----------------------------------------------------------------------------


class SyncTaskQuerySet(models.QuerySet):
    def for_user(self, user) -> SyncTaskQuerySet:
        return self.filter(project__in=Project.objects.for_user(user))

    def active(self) -> SyncTaskQuerySet:
        return self.filter(status__in=SyncTask.ACTIVE_STATUSES)


class SyncTask(models.Model):
    """One synchronization run: trigger, scope, status, progress and per-repository results."""

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCHEDULED = "scheduled", "Scheduled"

    class Scope(models.TextChoices):
        ALL = "all", "All image repositories"
        TYPES = "types", "Specified types of image repositories"
        REPOSITORIES = "repositories", "Specified image repositories"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIALLY_SUCCEEDED = "partially_succeeded", "Partially succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        INTERRUPTED = "interrupted", "Interrupted"
        SKIPPED = "skipped", "Skipped"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sync_tasks")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    scope_types = models.JSONField(
        default=list, blank=True, help_text="Repository types chosen for the 'types' scope."
    )
    scope_repositories = models.ManyToManyField(
        Repository,
        blank=True,
        related_name="+",
        help_text="Repositories chosen for the 'repositories' scope.",
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
        max_length=128, blank=True, help_text="Host and process that claimed it."
    )
    requeued_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the watchdog re-enqueued this queued task (done once).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = SyncTaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="synctask_one_active_per_project",
            )
        ]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="synctask_proj_created_idx"),
            models.Index(fields=["status", "heartbeat_at"], name="synctask_status_hb_idx"),
        ]

    def __str__(self) -> str:
        return f"Sync task #{self.pk}"

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
            failure_code="cancelled",
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
    ) -> None:
        """Write the result of one repository (finished with its image counts, or failed with
        a reason) and add it to the task's counters.

        Call it inside the transaction that stored the repository's images, so that result,
        counters and inventory never disagree. Several worker threads record at once: the
        counters are `F() + n` updates, and this instance's counters are not refreshed."""
        now = timezone.now()
        result = SyncTaskRepository.objects.filter(pk=result_id, task_id=self.pk)
        if failed:
            result.update(
                status=SyncTaskRepository.Status.FAILED,
                reason_code=(code or "internal_error")[:32],
                reason_message=message,
                finished_at=now,
            )
            SyncTask.objects.filter(pk=self.pk).update(
                repositories_done=F("repositories_done") + 1,
                repositories_failed=F("repositories_failed") + 1,
                heartbeat_at=now,
            )
            return
        result.update(
            status=SyncTaskRepository.Status.FINISHED,
            images_total=added + updated + unchanged,
            images_added=added,
            images_updated=updated,
            images_removed=removed,
            images_unchanged=unchanged,
            finished_at=now,
        )
        SyncTask.objects.filter(pk=self.pk).update(
            repositories_done=F("repositories_done") + 1,
            images_added=F("images_added") + added,
            images_updated=F("images_updated") + updated,
            images_removed=F("images_removed") + removed,
            images_unchanged=F("images_unchanged") + unchanged,
            heartbeat_at=now,
        )

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
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

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
        ordering = ["registry_name", "repository_type", "repository_path"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "repository"],
                condition=Q(repository__isnull=False),
                name="synctaskrepo_unique_repo_per_task",
            )
        ]
        indexes = [models.Index(fields=["task", "status"], name="synctaskrepo_task_status_idx")]

    def __str__(self) -> str:
        return f"{self.repository_path} in task #{self.task_id}"


# --- authorization grants -------------------------------------------------------------------


class AuthorizationGrantQuerySet(models.QuerySet):
    def active(self) -> AuthorizationGrantQuerySet:
        return self.filter(revoked_at__isnull=True)


class AuthorizationGrant(models.Model):
    """A permission granted to the console for a project (SWROperatePolicy, CCEOperatePolicy,
    SWR authorization)."""

    class Policy(models.TextChoices):
        SWR_OPERATE = "SWROperatePolicy", "SWROperatePolicy"
        CCE_OPERATE = "CCEOperatePolicy", "CCEOperatePolicy"
        SWR_AUTHORIZATION = "SWRAuthorization", "SWR authorization"

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
    "Image",
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
