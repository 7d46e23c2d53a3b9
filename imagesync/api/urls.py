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


def _route(route: str, viewset, actions: dict, name: str, **initkwargs):
    """One URL of a viewset: `actions` maps HTTP methods to the viewset's actions."""
    return path(route, api(viewset.as_view(actions, **initkwargs)), name=name)


LIST, READ = {"get": "list"}, {"get": "retrieve"}
LIST_CREATE = {"get": "list", "post": "create"}
READ_WRITE = {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}

project = "projects/<api_id:project_id>"
task = f"{project}/sync-tasks/<api_id:pk>"
Registries, SyncTasks, History = (
    views.RegistryViewSet,
    views.SyncTaskViewSet,
    history.HistoryReadViewSet,
)

# fmt: off
v1 = [
    path("schema/", api(docs.SchemaView.as_view()), name="schema"),
    path("docs/", api(docs.DocsView.as_view()), name="docs"),
    _route("projects/", views.ProjectViewSet, LIST, "project-list"),
    _route("projects/<api_id:pk>/", views.ProjectViewSet, READ, "project-detail"),
    _route(f"{project}/images/type-counts/", views.ImageViewSet, {"get": "type_counts"},
           "image-type-counts", pagination_class=None),
    _route(f"{project}/images/", views.ImageViewSet, LIST, "image-list"),
    _route(f"{project}/images/<api_id:pk>/", views.ImageViewSet, READ, "image-detail"),
    _route(f"{project}/repositories/", views.RepositoryViewSet, LIST, "repository-list"),
    _route(f"{project}/repositories/<api_id:pk>/", views.RepositoryViewSet, READ,
           "repository-detail"),
    _route(f"{project}/changes/", history.ChangeViewSet, LIST, "change-list"),
    _route(f"{project}/repositories/<api_id:repository_id>/tags/<str:tag>/history/", History,
           {"get": "timeline"}, "tag-history", pagination_class=None),
    _route(f"{project}/digests/", History, {"get": "digests"}, "digest-history"),
    _route(f"{project}/history/diff/", History, {"get": "diff"}, "history-diff"),
    _route(f"{project}/registries/", Registries, LIST_CREATE, "registry-list"),
    _route(f"{project}/registries/<api_id:pk>/", Registries, READ_WRITE, "registry-detail"),
    _route(f"{project}/registries/<api_id:pk>/events/", Registries,
           {"get": "events", "post": "events"}, "registry-events"),
    _route(f"{project}/registries/<api_id:pk>/test/", Registries, {"post": "test"},
           "registry-test"),
    _route(f"{project}/sync-tasks/", SyncTasks, LIST_CREATE, "synctask-list"),
    _route(f"{task}/", SyncTasks, READ, "synctask-detail"),
    _route(f"{project}/sync-tasks/<api_id:task_id>/results/", views.SyncResultViewSet, LIST,
           "synctask-results"),
    _route(f"{task}/cancel/", SyncTasks, {"post": "cancel"}, "synctask-cancel"),
    _route(f"{task}/retry/", SyncTasks, {"post": "retry"}, "synctask-retry"),
    _route("tokens/", views.ApiTokenViewSet, LIST_CREATE, "token-list"),
    _route("tokens/<api_id:pk>/", views.ApiTokenViewSet, {"get": "retrieve", "delete": "destroy"},
           "token-detail"),
]
# fmt: on

urlpatterns = [
    path("v1/", api(docs.index), name="index"),
    path("v1/", include(v1)),
    re_path(r"^.*$", api(docs.not_found), name="not-found"),
]
