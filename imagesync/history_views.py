"""Console views of the inventory's history (imagesync/history.py): the Changes tab and the
pages that read a tag's, a digest's or the whole inventory's past.

Like Image View (imagesync/views.py, whose helpers these reuse): every queryset is the current
project's rows the user may see, so nothing of another project is ever shown, and a normal
request gets the full page, an htmx request the `_fragment` it includes.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from imagesync import exports
from imagesync.filters import ChangeFilter
from imagesync.history import Change
from imagesync.models import Project
from imagesync.tables import CHANGES, PAGE_SIZES, page_size
from imagesync.views import _is_fragment, _project, _render

# --- Changes --------------------------------------------------------------------------------


def _change_queryset(request: HttpRequest):
    """The current project's changes, if the user may see the project (the project check
    resolved first, as for Image View, so the database walks the (project, time) index)."""
    project = _project(request)
    if project is None:
        return Change.objects.none()
    allowed = list(
        Project.objects.for_user(request.user).filter(pk=project.pk).values_list("pk", flat=True)
    )
    return Change.objects.filter(project_id__in=allowed)


def _change_filterset(request: HttpRequest) -> ChangeFilter:
    """The Changes tab's filters and sort, from the URL, over the changes the user may see."""
    return ChangeFilter(
        request.GET,
        queryset=_change_queryset(request),
        request=request,
        project=_project(request),
        lenient=True,
    )


def _scope(filterset: ChangeFilter) -> dict:
    """The task and repository the list is narrowed to (Manage Task links here), if any."""
    if filterset.invalid:
        return {}
    data = filterset.form.cleaned_data
    scope = {"task": data.get("task"), "repository": data.get("repository")}
    if scope["repository"]:
        scope["repository_path"] = (
            filterset.queryset.filter(repository_id=scope["repository"])
            .values_list("repository_path", flat=True)
            .first()
        )
    return scope if scope["task"] or scope["repository"] else {}


@require_GET
def change_list(request: HttpRequest) -> HttpResponse:
    """Changes: every change of the project, newest first, filtered, sorted and paginated
    from the URL."""
    filterset = _change_filterset(request)
    page = Paginator(filterset.rows, page_size(request.GET)).get_page(request.GET.get("page"))
    has_changes = page.paginator.count > 0 or _change_queryset(request).exists()
    context = {
        "filterset": filterset,
        "page": page,
        "sort": filterset.sort,
        "page_sizes": PAGE_SIZES,
        "per_page": page.paginator.per_page,
        "has_changes": has_changes,
        "filters_invalid": filterset.invalid,
        "columns": CHANGES.headers(filterset.sort),
        "is_fragment": _is_fragment(request),
        "scope": _scope(filterset),
    }
    return _render(request, "imagesync/change_list.html", "imagesync/_change_table.html", context)


@require_GET
def change_export(request: HttpRequest) -> HttpResponse:
    """CSV of exactly the changes the same filter and sort show on the Changes tab (all pages),
    with the fields of `manage.py export_changes`."""
    rows = _change_filterset(request).rows
    return exports.csv_download(CHANGES.exported, rows.iterator(chunk_size=2000), "changes")
