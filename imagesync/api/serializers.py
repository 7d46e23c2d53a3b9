"""Serializers: what the API shows of each model and accepts on writes. A registry's secret is
write-only, and registry writes are validated by the console's own RegistryForm, so the API and
the page accept exactly the same input."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apitokens.models import ApiToken
from imagesync import usage
from imagesync.forms import OPTION_FIELDS, RegistryForm
from imagesync.models import (
    Image,
    Project,
    Registry,
    Repository,
    RepositoryType,
    SyncTask,
    SyncTaskRepository,
)

MAX_ID = 2**63 - 1


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in the project.")

    class Meta:
        model = Project
        fields = ["id", "name", "region", "description", "role", "created_at"]

    @extend_schema_field(
        serializers.ChoiceField(choices=["viewer", "operator", "admin"], allow_null=True)
    )
    def get_role(self, project: Project) -> str | None:
        user = self.context["request"].user
        if user.is_superuser:
            return "admin"
        role = getattr(project, "member_role", None)
        return role if role is not None else project.role_of(user)


class ImageSerializer(serializers.ModelSerializer):
    """One tag of a repository, with its repository and registry flattened in."""

    repository_id = serializers.IntegerField(read_only=True)
    repository_path = serializers.CharField(source="repository.path", read_only=True)
    namespace = serializers.CharField(source="repository.namespace", read_only=True)
    name = serializers.CharField(source="repository.name", read_only=True)
    type = serializers.ChoiceField(
        source="repository.type", choices=RepositoryType.choices, read_only=True
    )
    registry_id = serializers.IntegerField(source="repository.registry_id", read_only=True)
    registry_name = serializers.CharField(source="repository.registry.name", read_only=True)
    short_digest = serializers.CharField(read_only=True)
    platforms = serializers.ListField(child=serializers.CharField(), read_only=True)
    last_synced_at = serializers.DateTimeField(
        source="repository.last_synced_at",
        read_only=True,
        allow_null=True,
        help_text="The repository's last successful listing, which stored this image as it is.",
    )
    pull_source = serializers.SerializerMethodField(
        help_text="harbor, jfrog, swr, swr_repository, events or none (see README, Usage)."
    )

    class Meta:
        model = Image
        fields = [
            "id",
            "repository_id",
            "repository_path",
            "namespace",
            "name",
            "type",
            "registry_id",
            "registry_name",
            *Image.STATE_FIELDS,
            "short_digest",
            "last_synced_at",
            "last_pulled",
            "pull_count",
            "pull_source",
            "pull_known",
            "tagged",
        ]
        read_only_fields = fields

    def get_pull_source(self, image) -> str:
        return usage.source_code(image.pull_source)


class ImageAsOfSerializer(serializers.Serializer):
    """An image as of a moment (`as_of`): ImageSerializer's fields, read from the history
    interval that held the tag's state then, with the repository's identity as it was.
    `id` is the interval's; `repository_id` and `registry_id` are null once the connection
    was removed."""

    id = serializers.IntegerField(read_only=True)
    repository_id = serializers.IntegerField(read_only=True, allow_null=True)
    repository_path = serializers.CharField(read_only=True)
    namespace = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    type = serializers.ChoiceField(
        source="repository_type", choices=RepositoryType.choices, read_only=True
    )
    registry_id = serializers.IntegerField(read_only=True, allow_null=True)
    registry_name = serializers.CharField(read_only=True)
    tag = serializers.CharField(read_only=True)
    digest = serializers.CharField(read_only=True)
    short_digest = serializers.SerializerMethodField()
    media_type = serializers.CharField(read_only=True)
    size = serializers.IntegerField(read_only=True, allow_null=True)
    platforms = serializers.ListField(child=serializers.CharField(), read_only=True)
    multi_arch = serializers.BooleanField(read_only=True)
    is_latest = serializers.BooleanField(read_only=True)
    image_created_at = serializers.DateTimeField(read_only=True, allow_null=True)
    registry_updated_at = serializers.DateTimeField(read_only=True, allow_null=True)
    first_seen_at = serializers.DateTimeField(read_only=True)
    last_synced_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def get_short_digest(self, interval) -> str:
        return interval.digest.split(":", 1)[-1][:12]


class TypeCountSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=RepositoryType.choices)
    label = serializers.CharField()
    count = serializers.IntegerField(
        help_text="Images; a lower bound when count_is_lower_bound is true."
    )
    count_is_lower_bound = serializers.BooleanField(
        help_text="true: more than IMAGE_COUNT_LIMIT images matched the other filters, so"
        " only the first matches found were counted."
    )


class RepositorySerializer(serializers.ModelSerializer):
    registry_id = serializers.IntegerField(read_only=True)
    registry_name = serializers.CharField(source="registry.name", read_only=True)

    class Meta:
        model = Repository
        fields = [
            "id",
            "registry_id",
            "registry_name",
            "type",
            "path",
            "namespace",
            "name",
            "image_count",
            "first_seen_at",
            "last_synced_at",
            "removed_at",
        ]
        read_only_fields = fields


def _without_nul(value, where: str = "options") -> None:
    """PostgreSQL cannot store NUL characters in JSON; refuse them with a 400."""
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError(f"{where} must not contain NUL characters.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _without_nul(key, where)
            _without_nul(item, where)
    elif isinstance(value, list):
        for item in value:
            _without_nul(item, where)


FORM_FIELDS = (
    "name",
    "kind",
    "endpoint",
    "username",
    "verify_tls",
    "ca_bundle",
    "allow_insecure_http",
    "options",
)


def _annotated(registry: Registry, annotation: str, count) -> int:
    """The count the list's query annotated, or one query for a registry just saved."""
    value = getattr(registry, annotation, None)
    return count() if value is None else value


class RegistrySerializer(serializers.ModelSerializer):
    """A registry connection. `secret` is write-only: accepted on create and update, never
    returned; a blank or missing secret keeps the stored one, `clear_secret` removes it."""

    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=4096,
        style={"input_type": "password"},
        help_text="Password, token or secret key. Write-only; blank or missing keeps the stored one.",
    )
    clear_secret = serializers.BooleanField(
        write_only=True, required=False, default=False, help_text="Remove the stored secret."
    )
    has_secret = serializers.BooleanField(read_only=True)
    options = serializers.JSONField(
        required=False,
        help_text="Kind-specific options object: SWR `region` and `project_id`, Harbor "
        "`projects`, JFrog `repo_keys`, `repositories` for an OCI registry without a catalog, "
        'and advanced ones, e.g. {"region": "cn-north-4", "project_id": "...", '
        '"max_concurrency": 4}. Checked as the console form checks them.',
    )
    repository_count = serializers.SerializerMethodField()
    image_count = serializers.SerializerMethodField()

    class Meta:
        model = Registry
        fields = [
            "id",
            *FORM_FIELDS,
            "secret",
            "clear_secret",
            "has_secret",
            *Registry.STATUS_FIELDS,
            "repository_count",
            "image_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [*Registry.STATUS_FIELDS, "created_at", "updated_at"]
        extra_kwargs = {"name": {"max_length": 128}, "username": {"max_length": 256}}

    @extend_schema_field(OpenApiTypes.INT)
    def get_repository_count(self, registry: Registry) -> int:
        present = registry.repositories.filter(removed_at__isnull=True)
        return _annotated(registry, "repository_total", present.count)

    @extend_schema_field(OpenApiTypes.INT)
    def get_image_count(self, registry: Registry) -> int:
        images = Image.objects.filter(repository__registry=registry)
        return _annotated(registry, "image_total", images.count)

    def validate_options(self, value):
        _without_nul(value)
        return value

    def validate(self, attrs: dict) -> dict:
        """Run the console's RegistryForm over the resulting values (stored ones for fields a
        PATCH leaves out), so both accept and refuse the same input with the same message.
        The `options` object feeds the form's option fields and its advanced options."""
        instance = self.instance
        data = {}
        if instance is not None:
            data = {field: getattr(instance, field) for field in FORM_FIELDS}
        data.update({field: attrs[field] for field in FORM_FIELDS if field in attrs})
        options = data.pop("options", None)
        if instance is not None and "options" not in attrs and data["kind"] != instance.kind:
            # the stored options of the old kind mean nothing to the new one
            options = {k: v for k, v in options.items() if k not in OPTION_FIELDS}
        data.update(RegistryForm.data_from_options(data.get("kind"), options or {}))
        data["secret"] = attrs.get("secret", "")
        data["clear_secret"] = attrs.get("clear_secret", False)
        form = RegistryForm(data=data, instance=instance, project=self.context["project"])
        if not form.is_valid():
            errors: dict[str, list[str]] = {}
            for field, messages in form.errors.items():
                key = "non_field_errors" if field == "__all__" else field
                errors.setdefault("options" if key in OPTION_FIELDS else key, []).extend(messages)
            raise serializers.ValidationError(errors)
        self._form = form
        return attrs

    def create(self, validated_data: dict) -> Registry:
        return self._form.save(actor=self.context["request"].user, via="API")

    def update(self, instance: Registry, validated_data: dict) -> Registry:
        return self._form.save(actor=self.context["request"].user, via="API")


class RegistryTestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    code = serializers.CharField(help_text="Stable reason code when the check failed.")
    message = serializers.CharField()
    registry = RegistrySerializer()


class SyncTaskSerializer(serializers.ModelSerializer):
    """One synchronization run, with the counters Manage Task shows."""

    scope_repositories = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    scope_types = serializers.ListField(
        child=serializers.ChoiceField(choices=RepositoryType.choices), read_only=True
    )
    retry_of = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    created_by = serializers.SerializerMethodField(help_text="Username of who started it.")
    is_active = serializers.BooleanField(read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)
    repositories_succeeded = serializers.IntegerField(read_only=True)
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = SyncTask
        fields = [
            "id",
            "trigger",
            "scope",
            "scope_types",
            "scope_repositories",
            "retry_of",
            "status",
            "is_active",
            "cancel_requested",
            "progress_percent",
            "repositories_total",
            "repositories_done",
            "repositories_succeeded",
            "repositories_failed",
            "images_added",
            "images_updated",
            "images_removed",
            "images_unchanged",
            "failure_code",
            "failure_reason",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_by(self, task: SyncTask) -> str | None:
        return task.created_by.username if task.created_by_id and task.created_by else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_seconds(self, task: SyncTask) -> float | None:
        duration = task.duration
        return round(duration.total_seconds(), 3) if duration is not None else None


class SyncTaskDetailSerializer(SyncTaskSerializer):
    result_counts = serializers.SerializerMethodField(
        help_text="Repositories of the task per result status."
    )

    class Meta(SyncTaskSerializer.Meta):
        fields = [*SyncTaskSerializer.Meta.fields, "result_counts"]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "properties": {s: {"type": "integer"} for s in SyncTaskRepository.Status.values},
        }
    )
    def get_result_counts(self, task: SyncTask) -> dict[str, int]:
        from django.db.models import Count

        counts = dict(task.results.order_by().values_list("status").annotate(n=Count("id")))
        return {status: counts.get(status, 0) for status in SyncTaskRepository.Status.values}


class SyncTaskCreateSerializer(serializers.Serializer):
    """The Synchronize Images panel's choice: all repositories, some types, or some
    repositories."""

    scope = serializers.ChoiceField(choices=SyncTask.Scope.choices, default=SyncTask.Scope.ALL)
    types = serializers.ListField(
        child=serializers.ChoiceField(choices=RepositoryType.choices),
        required=False,
        default=list,
        help_text="For scope=types: the repository types to synchronize.",
    )
    repositories = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        default=list,
        max_length=10000,
        help_text="For scope=repositories: ids of the project's repositories.",
    )

    def validate(self, attrs: dict) -> dict:
        if attrs["scope"] == SyncTask.Scope.TYPES and not attrs.get("types"):
            raise serializers.ValidationError(
                {"types": ["Select at least one repository type to synchronize."]}
            )
        if attrs["scope"] == SyncTask.Scope.REPOSITORIES and not attrs.get("repositories"):
            raise serializers.ValidationError(
                {"repositories": ["Select at least one image repository to synchronize."]}
            )
        return attrs


class SyncResultSerializer(serializers.ModelSerializer):
    """The result of one repository within a task."""

    class Meta:
        model = SyncTaskRepository
        fields = [
            "id",
            "repository",
            "registry_name",
            "repository_type",
            "repository_path",
            "status",
            "reason_code",
            "reason_message",
            "images_total",
            "images_added",
            "images_updated",
            "images_removed",
            "images_unchanged",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at", "is_active"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at", "is_active"]
        extra_kwargs = {"name": {"max_length": 100}}

    is_active = serializers.BooleanField(read_only=True)


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="The token itself. Shown only in this response: copy it now."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
