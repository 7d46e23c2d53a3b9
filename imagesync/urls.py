from django.urls import path

from imagesync import views

app_name = "imagesync"

urlpatterns = [
    path("project/select/", views.select_project, name="project-select"),
    path("images/", views.image_list, name="image-list"),
    path("tasks/", views.task_list, name="task-list"),
    path("registries/", views.registry_list, name="registry-list"),
]
