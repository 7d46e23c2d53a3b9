"""API views of the inventory's history (imagesync/history.py): the changes list and the reads
of a tag's, a digest's or the inventory's past. Scoped like every other project endpoint
(`ProjectScopedMixin`): another project's id is a 404, any member reads."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from imagesync.api.views import ProjectScopedMixin
from imagesync.filters import ChangeFilter
from imagesync.history import Change
from imagesync.models import RepositoryType

# --- changes ----------------------------------------------------------------------------------


class ChangeSerializer(serializers.ModelSerializer):
    """One observed change, with the names of its registry and repository as they were (kept
    when the connection is removed; then registry_id and repository_id are null)."""

    registry_id = serializers.IntegerField(read_only=True, allow_null=True)
    repository_id = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="Null when the repository is no longer stored (its connection was removed).",
    )
    task_id = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The sync task that saw the change."
    )
    type = serializers.ChoiceField(
        source="repository_type", choices=RepositoryType.choices, read_only=True
    )
    registry_removed = serializers.SerializerMethodField(
        help_text="True when the registry connection has since been removed."
    )

    class Meta:
        model = Change
        fields = [
            "id",
            "time",
            "kind",
            "registry_id",
            "registry_name",
            "registry_removed",
            "repository_id",
            "type",
            "repository_path",
            "namespace",
            "name",
            "tag",
            "old_digest",
            "new_digest",
            "registry_pushed_at",
            "task_id",
            "source",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "time": {"help_text": "When the console observed the change."},
            "registry_pushed_at": {
                "help_text": "The registry's own push time of the new state, where it reports one."
            },
        }

    def get_registry_removed(self, change: Change) -> bool:
        return change.registry_id is None


@extend_schema_view(
    list=extend_schema(
        summary="Changes: every added, re-pushed or removed tag of the project, newest first",
        description="The Changes tab as JSON: the same filters (since/until take a day or an "
        "ISO 8601 time; digest takes a digest or its leading hex and matches the old or the "
        "new digest; task and repository take ids) and the same ordering keys.",
    )
)
class ChangeViewSet(ProjectScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The project's changes; viewers and up."""

    serializer_class = ChangeSerializer
    filterset_class = ChangeFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Change.objects.none()
        return (
            Change.objects.for_user(self.request.user)
            .filter(project=self.project)
            .order_by("-time", "-id")
        )
