from django.urls import path, re_path

from imagesync import history_views, receiver, views

app_name = "imagesync"

urlpatterns = [
    path("project/select/", views.select_project, name="project-select"),
    path("images/", views.image_list, name="image-list"),
    path("images/export.csv", views.image_export, name="image-export"),
    path("images/usage/", views.image_usage, name="image-usage"),
    path("changes/", history_views.change_list, name="change-list"),
    path("changes/export.csv", history_views.change_export, name="change-export"),
    path(
        "images/<int:repository_id>/tags/<str:tag>/history/",
        history_views.tag_history,
        name="tag-history",
    ),
    path("history/digests/", history_views.digest_history, name="digest-history"),
    path("history/diff/", history_views.history_diff, name="history-diff"),
    path("images/synchronize/", views.sync_panel, name="sync-panel"),
    path("images/synchronize/repositories/", views.sync_repositories, name="sync-repositories"),
    path("tasks/", views.task_list, name="task-list"),
    path("tasks/<int:pk>/", views.task_detail, name="task-detail"),
    path("tasks/<int:pk>/cancel/", views.task_cancel, name="task-cancel"),
    path("tasks/<int:pk>/retry/", views.task_retry, name="task-retry"),
    path("registries/", views.registry_list, name="registry-list"),
    path("registries/new/", views.registry_create, name="registry-create"),
    path("registries/<int:pk>/edit/", views.registry_edit, name="registry-edit"),
    path("registries/<int:pk>/delete/", views.registry_delete, name="registry-delete"),
    path("registries/<int:pk>/test/", views.registry_test, name="registry-test"),
    path("registries/<int:pk>/events/", views.registry_events, name="registry-events"),
    path("audit/", views.audit_list, name="audit-list"),
    re_path(
        receiver.PATH,
        receiver.receive,
        name="registry-events-receiver",
    ),
]
