"""API views of the inventory's history (imagesync/history.py): the changes list and the reads
of a tag's, a digest's or the inventory's past. Scoped like every other project endpoint
(`ProjectScopedMixin`): another project's id is a 404, any member reads."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from imagesync.api.pagination import ChangePagination
from imagesync.api.views import ProjectScopedMixin
from imagesync.filters import ChangeFilter
from imagesync.history import Change, ImageInterval, inventory_diff
from imagesync.history_views import (
    MAX_TAG_LENGTH,
    DigestLookupForm,
    HistoryDiffForm,
    digests_matching,
    form_errors,
    spans_of,
    walks_in_order,
)
from imagesync.models import Repository, RepositoryType
from imagesync.paging import IdsThenRows

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
    pagination_class = ChangePagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Change.objects.none()
        # The project is one the user may see (`initial` checked it): its id, not for_user's
        # `project_id IN (subquery)`, as the Changes tab and the image list read it.
        return Change.objects.filter(project_id__in=[self.project.pk]).order_by("-time", "-id")

    def paginate_queryset(self, queryset):
        # As the Changes tab pages: the total counted up to IMAGE_COUNT_LIMIT (a lower bound
        # past it, `count_is_lower_bound`), the page's ids first, then those rows.
        rows = IdsThenRows(
            queryset,
            details=lambda changes: changes,
            count_deep_pages=not walks_in_order(queryset),
        )
        return super().paginate_queryset(rows)


# --- a tag's timeline, digest lookup, diff between two moments -------------------------------

TIMELINE_LIMIT = 1000  # states and changes each; a tag re-pushed more often is cut, and says so


class TimelineRepositorySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    path = serializers.CharField()
    type = serializers.CharField()
    namespace = serializers.CharField()
    name = serializers.CharField()
    registry_id = serializers.IntegerField()
    registry_name = serializers.CharField(source="registry.name")
    removed = serializers.SerializerMethodField(
        help_text="True when a complete listing of the registry no longer showed it."
    )

    def get_removed(self, repository: Repository) -> bool:
        return repository.removed_at is not None


class TimelineStateSerializer(serializers.ModelSerializer):
    """One state of the tag: its digest and details from valid_from until valid_to (null:
    still current)."""

    current = serializers.SerializerMethodField()
    opened_by_task_id = serializers.IntegerField(
        source="opened_by_id", allow_null=True, help_text="The sync task that saw this state."
    )
    closed_by_task_id = serializers.IntegerField(
        source="closed_by_id", allow_null=True, help_text="The sync task that saw it end."
    )
    registry_pushed_at = serializers.DateTimeField(
        source="registry_updated_at",
        allow_null=True,
        help_text="The registry's own push time of this state, where it reports one.",
    )
    platforms = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = ImageInterval
        fields = [
            "digest",
            "media_type",
            "size",
            "platforms",
            "multi_arch",
            "valid_from",
            "valid_to",
            "current",
            "opened_by_task_id",
            "closed_by_task_id",
            "registry_pushed_at",
        ]
        read_only_fields = fields

    def get_current(self, state: ImageInterval) -> bool:
        return state.valid_to is None


class TimelineChangeSerializer(serializers.ModelSerializer):
    task_id = serializers.IntegerField(allow_null=True)
    kind = serializers.CharField(help_text="added, repushed or removed.")

    class Meta:
        model = Change
        fields = ["time", "kind", "old_digest", "new_digest", "registry_pushed_at", "task_id"]
        read_only_fields = fields


class TagTimelineSerializer(serializers.Serializer):
    repository = TimelineRepositorySerializer()
    tag = serializers.CharField()
    states = TimelineStateSerializer(many=True, help_text="Newest first.")
    changes = TimelineChangeSerializer(many=True, help_text="Newest first.")
    truncated = serializers.BooleanField(
        help_text=f"True when states or changes were cut to the newest {TIMELINE_LIMIT}."
    )


class DigestSpanSerializer(serializers.Serializer):
    registry_name = serializers.CharField()
    registry_removed = serializers.BooleanField(source="connection_removed")
    repository_id = serializers.IntegerField(allow_null=True)
    type = serializers.CharField(source="repository_type")
    repository_path = serializers.CharField()
    tag = serializers.CharField()
    valid_from = serializers.DateTimeField()
    valid_to = serializers.DateTimeField(allow_null=True)
    current = serializers.BooleanField()


class DigestPlacesSerializer(serializers.Serializer):
    digest = serializers.CharField()
    spans = DigestSpanSerializer(many=True)


class DiffRowSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="added, repushed or removed.")
    registry_name = serializers.CharField()
    repository_id = serializers.IntegerField(allow_null=True)
    type = serializers.CharField(source="repository_type")
    repository_path = serializers.CharField()
    namespace = serializers.CharField()
    name = serializers.CharField()
    tag = serializers.CharField()
    old_digest = serializers.CharField(help_text="Empty for an added tag.")
    new_digest = serializers.CharField(help_text="Empty for a removed tag.")


class DiffCountsSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    repushed = serializers.IntegerField()
    removed = serializers.IntegerField()


class HistoryDiffSerializer(serializers.Serializer):
    """A page of the diff, with the two moments and the counts of the whole diff."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    counts = DiffCountsSerializer()
    results = DiffRowSerializer(many=True)

    def get_fields(self) -> dict:
        # "from" is a Python keyword, so the two moments are added here.
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(help_text="The first moment.")
        fields["to"] = serializers.DateTimeField(help_text="The second moment.")
        return fields


def _invalid(form) -> ValidationError:
    return ValidationError(form_errors(form))


MOMENT_HELP = "A day (YYYY-MM-DD: from its start, to its end) or an ISO 8601 time."


class HistoryReadViewSet(ProjectScopedMixin, viewsets.GenericViewSet):
    """A tag's timeline, digest lookup and the diff between two moments; viewers and up."""

    filter_backends: list = []
    serializer_class = TagTimelineSerializer

    @extend_schema(
        summary="A tag's timeline: every state it has had and the changes, newest first",
        responses=TagTimelineSerializer,
    )
    def timeline(self, request, project_id=None, repository_id=None, tag=None):
        repository = get_object_or_404(
            Repository.objects.for_user(request.user)
            .of_project(self.project)
            .select_related("registry"),
            pk=repository_id,
        )
        if len(tag) > MAX_TAG_LENGTH or "\x00" in tag:
            raise NotFound("No history of this tag.")
        states = list(
            ImageInterval.objects.filter(repository=repository, tag=tag).order_by(
                "-valid_from", "-id"
            )[: TIMELINE_LIMIT + 1]
        )
        changes = list(
            Change.objects.filter(repository=repository, tag=tag).order_by("-time", "-id")[
                : TIMELINE_LIMIT + 1
            ]
        )
        if not states and not changes:
            raise NotFound("No history of this tag in this repository.")
        data = {
            "repository": repository,
            "tag": tag,
            "states": states[:TIMELINE_LIMIT],
            "changes": changes[:TIMELINE_LIMIT],
            "truncated": len(states) > TIMELINE_LIMIT or len(changes) > TIMELINE_LIMIT,
        }
        return Response(TagTimelineSerializer(data).data)

    @extend_schema(
        summary="Where has this digest been: every repository and tag of the project that "
        "pointed to a digest starting with the given characters, grouped by digest",
        parameters=[
            OpenApiParameter(
                "digest",
                str,
                required=True,
                description="A digest (sha256:…) or at least its first 4 hex characters.",
            ),
            OpenApiParameter("page", int, description="Page number (digests per page)."),
            OpenApiParameter("page_size", int, description="Digests per page (at most 200)."),
        ],
        responses=DigestPlacesSerializer(many=True),
    )
    def digests(self, request, project_id=None):
        form = DigestLookupForm(request.query_params)
        if not form.is_valid():
            raise _invalid(form)
        intervals = ImageInterval.objects.for_user(request.user).filter(project=self.project)
        digests = digests_matching(intervals, form.cleaned_data["digest"])
        paginator = self.paginator
        page = paginator.paginate_queryset(digests, request, view=self)
        groups = [{"digest": d, "spans": s} for d, s in spans_of(intervals, list(page))]
        return paginator.get_paginated_response(DigestPlacesSerializer(groups, many=True).data)

    @extend_schema(
        summary="The net differences between the inventory at two moments (or two tasks): "
        "added, re-pushed and removed tags, with counts",
        parameters=[
            OpenApiParameter("from", str, description=MOMENT_HELP),
            OpenApiParameter("to", str, description=MOMENT_HELP + " Default: now."),
            OpenApiParameter("from_task", int, description="The moment this task finished."),
            OpenApiParameter("to_task", int, description="The moment this task finished."),
            OpenApiParameter("page", int, description="Page number."),
            OpenApiParameter("page_size", int, description="Rows per page (at most 200)."),
        ],
        responses=HistoryDiffSerializer,
    )
    def diff(self, request, project_id=None):
        form = HistoryDiffForm(request.query_params, project=self.project)
        if not form.is_valid():
            raise _invalid(form)
        diff = inventory_diff(self.project, form.cleaned_data["start"], form.cleaned_data["end"])
        paginator = self.paginator
        rows = paginator.paginate_queryset(diff.rows, request, view=self)
        response = paginator.get_paginated_response(DiffRowSerializer(rows, many=True).data)
        response.data["counts"] = diff.counts
        response.data["from"] = serializers.DateTimeField().to_representation(diff.start)
        response.data["to"] = serializers.DateTimeField().to_representation(diff.end)
        return response
