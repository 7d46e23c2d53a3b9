"""Console views: parse input, call one thing, render."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from imagesync.middleware import SESSION_KEY
from imagesync.models import Project


@require_POST
def select_project(request):
    """Switch the project scope; only the user's own projects can be chosen."""
    try:
        project_id = int(request.POST.get("project", ""))
    except ValueError:
        return HttpResponseBadRequest("Choose a project from the list.")
    project = Project.objects.for_user(request.user).filter(pk=project_id).first()
    if project is None:
        messages.error(request, "That project does not exist or you are not a member of it.")
    else:
        request.session[SESSION_KEY] = project.pk
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = "imagesync:image-list"
    return redirect(target)


def image_list(request):
    return render(request, "imagesync/image_list.html", {})


def task_list(request):
    return render(request, "imagesync/task_list.html", {})


def registry_list(request):
    return render(request, "imagesync/registry_list.html", {})
