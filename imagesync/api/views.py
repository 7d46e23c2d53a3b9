"""API views: the console's pages as JSON. Every queryset starts from the model's
`for_user(user)` and is narrowed to the project in the URL; the user's role in that project
decides writes exactly as on the pages (viewer reads, operator syncs, admin manages
registries)."""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from apitokens.models import ApiToken
from imagesync import events as registry_events
from imagesync.api import serializers
from imagesync.api.errors import Conflict
from imagesync.api.filters import ProjectFilterBackend
from imagesync.api.pagination import ImagePagination
from imagesync.filters import (
    ImageFilter,
    RepositoryFilter,
    TaskFilter,
    TaskResultFilter,
    image_filter_class,
)
from imagesync.history import ImageInterval
from imagesync.models import (
    AuditEvent,
    Image,
    Project,
    ProjectMembership,
    Registry,
    Repository,
    RepositoryType,
    SyncRefused,
    SyncTask,
    SyncTaskRepository,
    has_role,
)
from imagesync.paging import IdsThenRows, count_limit

ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _conflict(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ERROR_REF, description=description)


# --- projects -------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Your projects, with your role in each"),
    retrieve=extend_schema(summary="One of your projects"),
)
class ProjectViewSet(viewsets.ReadOnlyModelViewSet):
    """The projects you belong to; every other endpoint is under one of them."""

    serializer_class = serializers.ProjectSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        user = self.request.user
        role = ProjectMembership.objects.filter(project=OuterRef("pk"), user=user).values("role")
        return (
            Project.objects.for_user(user)
            .annotate(member_role=Subquery(role[:1]))
            .order_by("name", "id")
        )


# --- project-scoped views -------------------------------------------------------------------


class ProjectScopedMixin:
    """The project comes from the URL: another project's id is a 404 (its existence is not
    revealed), and a role below the action's needed role is a 403."""

    read_role = "viewer"
    write_role = "operator"
    action_roles: dict[str, str] = {}
    filter_backends = [ProjectFilterBackend]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if getattr(self, "swagger_fake_view", False):
            return
        self.project = get_object_or_404(
            Project.objects.for_user(request.user), pk=self.kwargs["project_id"]
        )
        self.project_role = self.project.role_of(request.user)
        needed = self.action_roles.get(self.action) or (
            self.read_role if request.method in ("GET", "HEAD", "OPTIONS") else self.write_role
        )
        if not has_role(self.project_role, needed):
            raise PermissionDenied(
                _("Your role in this project (%(role)s) does not allow this; it needs %(needed)s.")
                % {"role": self.project_role, "needed": needed}
            )

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["project"] = getattr(self, "project", None)
        return context


@extend_schema_view(
    list=extend_schema(summary="Image View: the project's images, filtered, sorted and paged"),
    retrieve=extend_schema(summary="One image"),
)
class ImageViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Image View: every filter, sort and paging of the page; viewers and up. With `as_of`
    the list and the type counts are the inventory as the console knew it then."""

    serializer_class = serializers.ImageSerializer
    pagination_class = ImagePagination

    @property
    def as_of_requested(self) -> bool:
        request = getattr(self, "request", None)
        return (
            self.action != "retrieve"
            and request is not None
            and image_filter_class(request.query_params) is not ImageFilter
        )

    @property
    def filterset_class(self):
        return (
            image_filter_class(self.request.query_params) if self.as_of_requested else ImageFilter
        )

    def filter_queryset(self, queryset):
        # As the filter backend does, keeping the FilterSet: as of a moment, its moment gives
        # the page's rows their "Last synced" then (computed for one page, not for every
        # interval); live, it finds a page's ids (ImageFilter.page_ids) as Image View does.
        filterset = ProjectFilterBackend().get_filterset(self.request, queryset, self)
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        if self.as_of_requested:
            self.as_of_filterset = filterset
        else:
            self.image_filterset = filterset
        return filterset.qs

    def paginate_queryset(self, queryset):
        if not self.as_of_requested:
            # As Image View pages: the page's ids first (an index walk, no joins), then those
            # rows with their repository and registry; a page in the second half read from
            # the other end. An OFFSET over the joined rows built every skipped row.
            filterset = getattr(self, "image_filterset", None)
            return super().paginate_queryset(
                IdsThenRows(
                    queryset.select_related(None),
                    details=lambda rows: rows.select_related("repository__registry"),
                    page_ids=filterset.page_ids if filterset is not None else None,
                )
            )
        page = super().paginate_queryset(queryset)
        if page is None:
            return page
        ids = [row.pk for row in page]
        rows = self.as_of_filterset.with_details(ImageInterval.objects.all()).in_bulk(ids)
        return [rows[pk] for pk in ids]

    def get_serializer_class(self):
        if self.as_of_requested:
            return serializers.ImageAsOfSerializer
        return serializers.ImageSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Image.objects.none()
        if self.as_of_requested:
            # The FilterSet narrows the intervals to the moment and adds "Last synced" then.
            return ImageInterval.objects.for_user(self.request.user).filter(project=self.project)
        # The project is one the user may see (`initial` checked it): its id, not for_user's
        # `project_id IN (subquery)`, with which SQLite sorts all the project's rows for
        # every ORDER BY instead of walking the sort's index (as imagesync.views does).
        return (
            Image.objects.filter(project_id__in=[self.project.pk])
            .select_related("repository__registry")
            .order_by("-registry_updated_at", "-id")
        )

    @extend_schema(
        summary="Images per repository type under every other filter (Image View's type counts)",
        filters=True,
        responses=serializers.TypeCountSerializer(many=True),
    )
    def type_counts(self, request, project_id=None):
        """How many images choosing each type would show: the same filters as the list,
        except the type filter itself. Under a filter that more than IMAGE_COUNT_LIMIT
        images match, the counts are those of the first matches found, each a lower bound
        (`count_is_lower_bound`)."""
        filterset = self.filterset_class(
            request.query_params,
            queryset=self.get_queryset(),
            request=request,
            project=self.project,
        )
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        counts, exact = filterset.counted_types(count_limit())
        rows = [
            {
                "type": value,
                "label": label,
                "count": counts.get(value, 0),
                "count_is_lower_bound": not exact,
            }
            for value, label in RepositoryType.choices
        ]
        return Response(serializers.TypeCountSerializer(rows, many=True).data)


@extend_schema_view(
    list=extend_schema(summary="The project's image repositories"),
    retrieve=extend_schema(summary="One image repository"),
)
class RepositoryViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Image repositories found in the project's registries; viewers and up. Removed
    repositories are hidden unless include_removed=true."""

    serializer_class = serializers.RepositorySerializer
    filterset_class = RepositoryFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Repository.objects.none()
        return (
            Repository.objects.for_user(self.request.user)
            .of_project(self.project)
            .select_related("registry")
        )

    def filter_queryset(self, queryset):
        if self.action == "retrieve":
            return queryset  # a removed repository can still be read by id
        return super().filter_queryset(queryset)


def _count(model, filters: dict):
    """A correlated COUNT, so two counts on one row do not multiply through joins."""
    group = "repository__registry" if model is Image else "registry"
    counted = (
        model.objects.filter(**filters).order_by().values(group).annotate(n=Count("id")).values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


@extend_schema_view(
    list=extend_schema(summary="Registry connections of the project"),
    retrieve=extend_schema(summary="One registry connection"),
    create=extend_schema(summary="Connect a registry (project admins)"),
    update=extend_schema(summary="Edit a registry connection (project admins)"),
    partial_update=extend_schema(summary="Edit some fields of a registry connection"),
    destroy=extend_schema(summary="Remove a registry with its repositories and images"),
)
class RegistryViewSet(ProjectScopedMixin, viewsets.ModelViewSet):
    """Registry connections: viewers read them; project admins connect, edit, remove and test
    them. The secret is write-only."""

    serializer_class = serializers.RegistrySerializer
    write_role = "admin"
    action_roles = {"events": "admin"}  # the receiver URL and setup are for admins only
    filterset_class = None
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Registry.objects.none()
        return (
            Registry.objects.for_user(self.request.user)
            .filter(project=self.project)
            .annotate(
                repository_total=_count(
                    Repository, {"registry": OuterRef("pk"), "removed_at__isnull": True}
                ),
                image_total=_count(Image, {"repository__registry": OuterRef("pk")}),
            )
            .order_by("name", "id")
        )

    def perform_destroy(self, instance):
        instance.remove(self.request.user, via="API")

    @extend_schema(
        summary="Test connection: check the endpoint and credentials and store the result",
        request=None,
        responses={200: serializers.RegistryTestResultSerializer},
    )
    @action(detail=True, methods=["post"])
    def test(self, request, project_id=None, pk=None):
        registry = self.get_object()
        result = registry.test_connection(request.user)
        ok, code, message = result.ok, result.code, result.message
        registry = self.get_queryset().get(pk=registry.pk)
        data = {
            "ok": ok,
            "code": code or "",
            "message": message or "",
            "registry": self.get_serializer(registry).data,
        }
        return Response(data)

    @extend_schema(
        summary="Registry events: receiver URL, header, setup and health (project admins); "
        'POST {"action": "enable" | "disable" | "rotate"} changes them, and only that answer '
        "carries the new secret",
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get", "post"])
    def events(self, request, project_id=None, pk=None):
        registry = self.get_object()
        secret = None
        if request.method == "POST":
            action_name = request.data.get("action") if hasattr(request.data, "get") else None
            if action_name not in ("enable", "disable", "rotate"):
                raise ValidationError({"action": ["Choose enable, disable or rotate."]})
            receiver = registry_events.EventReceiver.of(registry)
            if action_name == "enable":
                secret = receiver.enable(request.user, via="API")
            elif action_name == "disable":
                receiver.disable(request.user, via="API")
            else:
                secret = receiver.rotate(request.user, via="API")
        shown = registry_events.summary(registry, request.build_absolute_uri("/"), secret)
        receiver = registry_events.EventReceiver.objects.filter(registry=registry).first()
        health = receiver.health() if receiver else None
        if health:
            health["drift_recent"] = [
                {"time": c.time, "kind": c.kind, "repository": c.repository_path, "tag": c.tag}
                for c in health["drift_recent"]
            ]
        return Response({**shown, "health": health})


def _refused(refused: SyncRefused, *, default_conflict: bool) -> Exception:
    """A refusal because a sync is active is a 409 naming the active task; any other is a
    409 (retry: nothing to retry) or a 400 (create: the scope is not valid)."""
    if refused.active_task is not None:
        return Conflict(refused.message, details={"active_task_id": refused.active_task.pk})
    if default_conflict:
        return Conflict(refused.message)
    return ValidationError({"non_field_errors": [refused.message]})


@extend_schema_view(
    list=extend_schema(summary="Manage Task: the project's sync tasks"),
    retrieve=extend_schema(
        summary="One sync task with its counters and result counts per status",
        responses=serializers.SyncTaskDetailSerializer,
    ),
)
class SyncTaskViewSet(
    ProjectScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Sync tasks, as on Manage Task: viewers read them; operators start, cancel and retry."""

    serializer_class = serializers.SyncTaskSerializer
    filterset_class = TaskFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SyncTask.objects.none()
        return (
            SyncTask.objects.for_user(self.request.user)
            .filter(project=self.project)
            .select_related("created_by")
            .prefetch_related("scope_repositories")
            .order_by("-created_at", "-id")
        )

    def get_serializer_class(self):
        if self.action == "retrieve":
            return serializers.SyncTaskDetailSerializer
        if self.action == "create":
            return serializers.SyncTaskCreateSerializer
        return super().get_serializer_class()

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    @extend_schema(
        summary="Synchronize Images: start a sync of all repositories, some types or some "
        "repositories (operators)",
        request=serializers.SyncTaskCreateSerializer,
        responses={
            201: serializers.SyncTaskSerializer,
            409: _conflict(
                "conflict: a sync of the project is already active (details.active_task_id)."
            ),
        },
    )
    def create(self, request, project_id=None):
        chosen = serializers.SyncTaskCreateSerializer(data=request.data)
        chosen.is_valid(raise_exception=True)
        data = chosen.validated_data
        try:
            task = SyncTask.objects.request(
                self.project,
                trigger=SyncTask.Trigger.MANUAL,
                scope=data["scope"],
                types=tuple(data.get("types") or ()),
                repositories=tuple(data.get("repositories") or ()),
                user=request.user,
            )
        except SyncRefused as refused:
            raise _refused(refused, default_conflict=False) from None
        task = self.get_queryset().get(pk=task.pk)
        return Response(
            serializers.SyncTaskSerializer(task, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Cancel an active task; it stops between repositories (operators)",
        request=None,
        responses={
            200: serializers.SyncTaskSerializer,
            409: _conflict("conflict: the task is no longer active."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, project_id=None, pk=None):
        task = self.get_object()
        if not task.cancel(user=request.user):
            raise Conflict(_("%(task)s is no longer active; nothing to cancel.") % {"task": task})
        task = self.get_queryset().get(pk=task.pk)
        return Response(self.get_serializer(task).data)

    @extend_schema(
        summary="Retry the failed repositories of a task as a new task (operators)",
        request=None,
        responses={
            201: serializers.SyncTaskSerializer,
            409: _conflict(
                "conflict: a sync is already active (details.active_task_id), or the task has "
                "no failed repositories."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, project_id=None, pk=None):
        task = self.get_object()
        try:
            new_task = task.retry_failed(user=request.user)
        except SyncRefused as refused:
            raise _refused(refused, default_conflict=True) from None
        new_task = self.get_queryset().get(pk=new_task.pk)
        return Response(self.get_serializer(new_task).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="The per-repository results of a task, filterable by status")
)
class SyncResultViewSet(ProjectScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """A task's repositories, as on the task's page: status, reason and image counts."""

    serializer_class = serializers.SyncResultSerializer
    filterset_class = TaskResultFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SyncTaskRepository.objects.none()
        task = get_object_or_404(
            SyncTask.objects.for_user(self.request.user).filter(project=self.project),
            pk=self.kwargs["task_id"],
        )
        return task.results.order_by("registry_name", "repository_type", "repository_path", "id")


# --- API tokens -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Your API tokens (never the secrets)"),
    retrieve=extend_schema(summary="One of your API tokens"),
    destroy=extend_schema(summary="Revoke one of your API tokens; it stops working at once"),
)
class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens. Send one as `Authorization: Bearer <token>`."""

    serializer_class = serializers.ApiTokenSerializer
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user).order_by("-created_at", "-id")

    @extend_schema(
        summary="Create an API token for yourself; the token is shown only in this response",
        request=serializers.ApiTokenSerializer,
        responses={201: serializers.ApiTokenCreatedSerializer},
    )
    def create(self, request):
        serializer = serializers.ApiTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, raw = ApiToken.issue(
            request.user, serializer.validated_data["name"], created_by=request.user
        )
        AuditEvent.record(
            "api_token.create", actor=request.user, target=str(token), detail="via API"
        )
        data = serializers.ApiTokenCreatedSerializer(token).data
        data["token"] = raw
        response = Response(data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def perform_destroy(self, instance):
        if instance.revoke():
            AuditEvent.record(
                "api_token.revoke", actor=self.request.user, target=str(instance), detail="via API"
            )
