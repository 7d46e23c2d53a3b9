"""URLs of the JSON API, mounted at /api/ by console/urls.py. Version 1 lives under /api/v1/;
a later incompatible version gets its own prefix beside it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path, register_converter

from imagesync.api import docs, history, views


class ApiIdConverter:
    """An object id of at most 18 digits: anything longer cannot be a row id, and would
    overflow a 64-bit database integer (a 404, not a server error)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)


register_converter(ApiIdConverter, "api_id")

app_name = "api"


def api(view):
    """API views answer 401 JSON themselves; the console's login redirect must not step in."""
    return login_not_required(view)


def _routes(prefix: str, viewset, name: str, *, writable: bool = False, detail_extra=()) -> list:
    collection = {"get": "list", **({"post": "create"} if writable else {})}
    item = {"get": "retrieve"}
    if writable:
        item.update({"put": "update", "patch": "partial_update", "delete": "destroy"})
    routes = [
        path(f"{prefix}/", api(viewset.as_view(collection)), name=f"{name}-list"),
        path(f"{prefix}/<api_id:pk>/", api(viewset.as_view(item)), name=f"{name}-detail"),
    ]
    for action, method in detail_extra:
        routes.append(
            path(
                f"{prefix}/<api_id:pk>/{action}/",
                api(viewset.as_view({method: action})),
                name=f"{name}-{action}",
            )
        )
    return routes


project = "projects/<api_id:project_id>"

v1 = [
    path("schema/", api(docs.SchemaView.as_view()), name="schema"),
    path("docs/", api(docs.DocsView.as_view()), name="docs"),
    path("projects/", api(views.ProjectViewSet.as_view({"get": "list"})), name="project-list"),
    path(
        "projects/<api_id:pk>/",
        api(views.ProjectViewSet.as_view({"get": "retrieve"})),
        name="project-detail",
    ),
    path(
        f"{project}/images/type-counts/",
        api(views.ImageViewSet.as_view({"get": "type_counts"}, pagination_class=None)),
        name="image-type-counts",
    ),
    *_routes(f"{project}/images", views.ImageViewSet, "image"),
    *_routes(f"{project}/repositories", views.RepositoryViewSet, "repository"),
    path(
        f"{project}/changes/",
        api(history.ChangeViewSet.as_view({"get": "list"})),
        name="change-list",
    ),
    path(
        f"{project}/repositories/<api_id:repository_id>/tags/<str:tag>/history/",
        api(history.HistoryReadViewSet.as_view({"get": "timeline"}, pagination_class=None)),
        name="tag-history",
    ),
    path(
        f"{project}/digests/",
        api(history.HistoryReadViewSet.as_view({"get": "digests"})),
        name="digest-history",
    ),
    path(
        f"{project}/history/diff/",
        api(history.HistoryReadViewSet.as_view({"get": "diff"})),
        name="history-diff",
    ),
    *_routes(
        f"{project}/registries",
        views.RegistryViewSet,
        "registry",
        writable=True,
        detail_extra=[("test", "post")],
    ),
    path(
        f"{project}/sync-tasks/",
        api(views.SyncTaskViewSet.as_view({"get": "list", "post": "create"})),
        name="synctask-list",
    ),
    path(
        f"{project}/sync-tasks/<api_id:pk>/",
        api(views.SyncTaskViewSet.as_view({"get": "retrieve"})),
        name="synctask-detail",
    ),
    path(
        f"{project}/sync-tasks/<api_id:task_id>/results/",
        api(views.SyncResultViewSet.as_view({"get": "list"})),
        name="synctask-results",
    ),
    path(
        f"{project}/sync-tasks/<api_id:pk>/cancel/",
        api(views.SyncTaskViewSet.as_view({"post": "cancel"})),
        name="synctask-cancel",
    ),
    path(
        f"{project}/sync-tasks/<api_id:pk>/retry/",
        api(views.SyncTaskViewSet.as_view({"post": "retry"})),
        name="synctask-retry",
    ),
    path(
        "tokens/",
        api(views.ApiTokenViewSet.as_view({"get": "list", "post": "create"})),
        name="token-list",
    ),
    path(
        "tokens/<api_id:pk>/",
        api(views.ApiTokenViewSet.as_view({"get": "retrieve", "delete": "destroy"})),
        name="token-detail",
    ),
]

urlpatterns = [
    path("v1/", api(docs.index), name="index"),
    path("v1/", include(v1)),
    re_path(r"^.*$", api(docs.not_found), name="not-found"),
]
