"""Console views: parse input, call one thing, render.

Every queryset starts from the model's `for_user(user)` and is narrowed to the current project
(`request.project`), so an object of another project is a 404, never a 403 that reveals it
exists. Viewers see everything in their project but no action buttons, and their POSTs get a
403. A normal request gets the full page; an htmx request gets the `_fragment` that the full
page includes.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from imagesync import events, exports, usage
from imagesync.filters import (
    ImageFilter,
    RepositoryFilter,
    TaskFilter,
    TaskResultFilter,
    image_filter_class,
)
from imagesync.forms import RegistryForm, SyncForm
from imagesync.middleware import SESSION_KEY
from imagesync.models import (
    AuditEvent,
    Image,
    Project,
    Registry,
    Repository,
    RepositoryType,
    SyncRefused,
    SyncTask,
    SyncTaskRepository,
    has_role,
)
from imagesync.paging import BoundedPaginator, IdsThenRows, MatchCount, count_limit
from imagesync.tables import (
    AUDIT_EVENTS,
    PAGE_SIZES,
    REGISTRIES,
    TASK_RESULTS,
    TASKS,
    page_size,
)

REPOSITORY_PICKER_PAGE_SIZE = 10
TASK_RESULTS_PAGE_SIZE = 50


# --- helpers ------------------------------------------------------------------------------


def _project(request: HttpRequest) -> Project | None:
    """The current project as a plain model instance (the middleware's value is lazy)."""
    project = getattr(request, "project", None)
    if not project:
        return None
    return getattr(project, "_wrapped", project)


def _role(request: HttpRequest) -> str | None:
    if not _project(request):
        return None
    role = request.project_role
    return str(role) if role else None


def _require_role(request: HttpRequest, needed: str) -> Project:
    """The current project, if the user's role there is at least `needed`; else 403."""
    project = _project(request)
    if project is None or not has_role(_role(request), needed):
        raise PermissionDenied(_("Your role in this project does not allow this action."))
    return project


def _is_fragment(request: HttpRequest) -> bool:
    """An htmx request that swaps a part of the page (history restores want the full page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _render(request, full: str, fragment: str, context: dict, status: int = 200) -> HttpResponse:
    """Full page on a normal request, the fragment on an htmx request."""
    template = fragment if _is_fragment(request) else full
    response = render(request, template, context, status=status)
    response["Vary"] = "HX-Request"
    return response


MAX_ROW_ID = 2**63 - 1


def _row_ids(values) -> tuple[list[int], bool]:
    """The values that can be row ids (ASCII digits within a 64-bit id), and whether any
    value was dropped. str.isdigit() alone accepts "²" and 40-digit numbers, which the
    database then refuses with a server error."""
    ids, dropped = [], False
    for value in values:
        value = str(value).strip()
        if value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ROW_ID:
            ids.append(int(value))
        else:
            dropped = True
    return ids, dropped


def _active_task(project: Project | None) -> SyncTask | None:
    """The project's active sync, which a new one would wait for (an event refresh runs
    beside syncs and is not one: see imagesync.events)."""
    if project is None:
        return None
    # The current project is one of the user's own (`user_projects`): no membership subquery.
    tasks = SyncTask.objects.filter(project=project).active()
    return tasks.exclude(trigger=SyncTask.Trigger.EVENT).first()


def _has_registries(project: Project | None) -> bool:
    """Whether the current project (one of the user's own, `user_projects`) has a registry."""
    return project is not None and Registry.objects.filter(project=project).exists()


def _task_link(task: SyncTask) -> str:
    return format_html(
        '<a href="{}">{}</a>', reverse("imagesync:task-detail", args=[task.pk]), str(task)
    )


# --- project scope --------------------------------------------------------------------------


@require_POST
def select_project(request):
    """Switch the project scope; only the user's own projects can be chosen."""
    try:
        project_id = int(request.POST.get("project", ""))
    except ValueError:
        return HttpResponseBadRequest(_("Choose a project from the list."))
    project = Project.objects.for_user(request.user).filter(pk=project_id).first()
    if project is None:
        messages.error(request, _("That project does not exist or you are not a member of it."))
    else:
        request.session[SESSION_KEY] = project.pk
    target = request.POST.get("next") or ""
    # Only a path of this site; anything else (another host, or a bare word that redirect()
    # would take for a URL name) goes to Image View.
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(
        target, {request.get_host()}, request.is_secure()
    ):
        target = reverse("imagesync:image-list")
    return HttpResponseRedirect(target)


# --- Image View -----------------------------------------------------------------------------


def _project_rows(request: HttpRequest, model=Image):
    """The current project's rows of `model` (images, their history intervals, changes), if
    the user may see the project.

    This is `model.objects.for_user(user).filter(project=project)` with the project check
    resolved first: for_user's `project_id IN (subquery)` makes SQLite sort all 100,000 rows
    for every ORDER BY, while a known project id lets it read them in index order. The
    current project is one of the user's own, read by this request (`user_projects`)."""
    project = _project(request)
    if project is None:
        return model.objects.none()
    return model.objects.filter(project_id__in=[project.pk])


def _image_filterset(request: HttpRequest) -> ImageFilter:
    """Image View's filters and sort, from the URL, over the images the user may see, or over
    the inventory as of a moment when the URL has `as_of`."""
    filter_class = image_filter_class(request.GET)
    return filter_class(
        request.GET,
        queryset=_project_rows(request, filter_class._meta.model),
        request=request,
        project=_project(request),
        lenient=True,
    )


def _type_chips(
    request: HttpRequest, filterset: ImageFilter, limit: int
) -> tuple[list[dict], MatchCount | None]:
    """The type chips (how many rows choosing each type would show; None where more than
    `limit` rows matched, so the chips were not counted), and the total the page shows when
    the counts already tell it."""
    selected = set(request.GET.getlist("type"))
    counts, exact = filterset.counted_types(limit, lower_bounds=False)
    total = None
    if filterset.invalid:
        total = MatchCount(0)
    elif not exact and not selected:
        total = MatchCount(limit + 1, exact=False)  # the chips counted the same rows
    elif exact and (filterset.narrows(ignore=frozenset({"type"})) or filterset.moment is not None):
        total = MatchCount(
            sum(n for type_, n in counts.items() if not selected or type_ in selected)
        )
    chips = [
        {
            "value": value,
            "label": label,
            "count": counts.get(value, 0) if exact else None,
            "selected": value in selected,
        }
        for value, label in RepositoryType.choices
    ]
    return chips, total


@require_GET
def image_list(request):
    """Image View: the project's images, filtered, sorted and paginated from the URL."""
    project = _project(request)
    filterset = _image_filterset(request)
    limit = count_limit()
    type_counts, total = _type_chips(request, filterset, limit) if project else ([], MatchCount(0))
    rows = IdsThenRows(filterset.rows, None, filterset.with_details, filterset.page_ids)
    if total is None:
        total = rows.count_up_to(limit)
    page = BoundedPaginator(rows, page_size(request.GET), total=total).get_page(
        request.GET.get("page")
    )
    page.object_list = [filterset.present(row) for row in page.object_list]
    has_registries = (
        project is not None and filterset.moment is not None  # a removed connection's history
    ) or _has_registries(project)
    has_images = page.paginator.count > 0 or (
        # As of a moment, an empty result is what was there (the page says so).
        project is not None and (filterset.moment is not None or _project_rows(request).exists())
    )
    context = {
        "filterset": filterset,
        "more_filters_open": filterset.narrows(ignore=frozenset({"q", "type", "registry"})),
        "page": page,
        "sort": filterset.sort,
        "page_sizes": PAGE_SIZES,
        "per_page": page.paginator.per_page,
        "type_counts": type_counts,
        "count_limit": limit,
        "has_registries": has_registries,
        "has_images": has_images,
        "filters_invalid": filterset.invalid,
        "active_task": _active_task(project),
        "columns": filterset.table.headers(filterset.sort),
        "is_fragment": _is_fragment(request),
        "usage_summary_shown": project is not None and filterset.moment is None and has_images,
        "as_of": filterset.moment,
        # A datetime-local input shows only its own format; a day given in the URL shows the
        # moment it stands for (the end of that day).
        "as_of_input": (
            timezone.localtime(filterset.moment).strftime("%Y-%m-%dT%H:%M:%S")
            if filterset.moment is not None and not filterset.invalid
            else request.GET.get("as_of", "")
        ),
    }
    return _render(request, "imagesync/image_list.html", "imagesync/_image_table.html", context)


@require_GET
def image_usage(request):
    """Image View's usage summary (loaded when it is opened): per repository type, the images
    not pulled in 30 / 90 / 365 days, never pulled, with unknown pull data, untagged."""
    project = _project(request)
    totals = usage.cached_usage_counts(project, _project_rows(request)) if project else {}
    context = {"usage_summary": usage.usage_summary(totals), "usage_days": usage.SUMMARY_DAYS}
    return render(request, "imagesync/_usage_summary_table.html", context)


@require_GET
def image_export(request):
    """CSV of exactly the rows the same filter and sort show in Image View (all pages), with
    the columns of `manage.py export_images`; as of a moment when the URL has `as_of`."""
    filterset = _image_filterset(request)
    images = filterset.with_details(filterset.rows)
    name = "images" if filterset.moment is None else "images-as-of"
    return exports.csv_download(filterset.table.exported, images.iterator(chunk_size=2000), name)


# --- Synchronize Images panel ---------------------------------------------------------------


def _picker_repositories(request: HttpRequest, project: Project | None):
    if project is None:
        return Repository.objects.none()
    return (
        Repository.objects.for_user(request.user)
        .of_project(project)
        .present()
        .select_related("registry")
        .order_by("registry__name", "type", "path", "id")
    )


def _picker_context(request: HttpRequest, project: Project | None, data) -> dict:
    """The repository picker: filtered, paginated checkboxes that keep the selection made on
    other pages (as hidden inputs)."""
    repositories = _picker_repositories(request, project)
    picker = RepositoryFilter(
        data, queryset=repositories, request=request, project=project, prefix="repo", lenient=True
    )
    page = Paginator(picker.rows, REPOSITORY_PICKER_PAGE_SIZE).get_page(data.get("repo_page"))
    wanted = set(_row_ids(data.getlist("repositories"))[0])
    selected_ids = (
        set(repositories.filter(pk__in=wanted).values_list("pk", flat=True)) if wanted else set()
    )
    on_page = {repository.pk for repository in page.object_list}
    return {
        "picker": picker,
        "picker_page": page,
        "selected_ids": selected_ids,
        "selected_elsewhere": sorted(selected_ids - on_page),
        "repository_count": repositories.count(),
    }


def _panel_context(request: HttpRequest, project: Project | None, form: SyncForm, data) -> dict:
    context = {
        "form": form,
        "active_task": _active_task(project),
        "can_operate": has_role(_role(request), "operator"),
        "has_registries": _has_registries(project),
    }
    context.update(_picker_context(request, project, data))
    return context


@require_http_methods(["GET", "POST"])
def sync_panel(request):
    """The Synchronize Images slide-out: GET shows it, POST starts a sync task."""
    project = _project(request)
    if request.method == "GET":
        form = SyncForm(repositories=_picker_repositories(request, project))
        context = _panel_context(request, project, form, request.GET)
        return _render(request, "imagesync/sync_panel.html", "imagesync/_sync_panel.html", context)

    project = _require_role(request, "operator")
    repositories = _picker_repositories(request, project)
    data = request.POST.copy()
    ids, dropped = _row_ids(data.getlist("repositories"))
    data.setlist("repositories", [str(pk) for pk in ids])
    form = SyncForm(data, repositories=repositories)
    if dropped:
        form.add_error("repositories", _("Select repositories from the list."))
    refusal = None
    if form.is_valid():
        try:
            task = SyncTask.objects.request(
                project,
                trigger=SyncTask.Trigger.MANUAL,
                scope=form.cleaned_data["sync_type"],
                types=tuple(form.cleaned_data["types"] or ()),
                repositories=tuple(form.cleaned_data["repositories"] or ()),
                user=request.user,
            )
        except SyncRefused as refused:
            refusal = refused
        else:
            message = format_html(_("Synchronization started: {}."), _task_link(task))
            if _is_fragment(request):
                return render(
                    request, "imagesync/_sync_started.html", {"task": task, "message": message}
                )
            messages.success(request, message)
            return redirect("imagesync:image-list")
    context = _panel_context(request, project, form, request.POST)
    context["refusal"] = refusal
    if refusal is not None and refusal.active_task is not None:
        context["active_task"] = refusal.active_task
    # Re-rendered with 200 so htmx swaps the panel with its inline errors.
    return _render(request, "imagesync/sync_panel.html", "imagesync/_sync_panel.html", context)


@require_GET
def sync_repositories(request):
    """The repository picker of the panel, re-rendered when its filters or page change."""
    context = _picker_context(request, _project(request), request.GET)
    return render(request, "imagesync/_repository_picker.html", context)


# --- Manage Task ----------------------------------------------------------------------------


def _task_queryset(request: HttpRequest):
    project = _project(request)
    if project is None:
        return SyncTask.objects.none()
    return SyncTask.objects.for_user(request.user).filter(project=project)


@require_GET
def task_list(request):
    """Manage Task > Image Synchronization: every sync task of the project, live while active."""
    tasks = _task_queryset(request).select_related("created_by", "retry_of")
    filterset = TaskFilter(
        request.GET, queryset=tasks, request=request, project=_project(request), lenient=True
    )
    page = Paginator(filterset.rows, page_size(request.GET)).get_page(request.GET.get("page"))
    context = {
        "filterset": filterset,
        "page": page,
        "columns": TASKS.headers(filterset.sort),
        "polling": any(task.is_active for task in page.object_list),
        "filters_invalid": filterset.invalid,
    }
    return _render(request, "imagesync/task_list.html", "imagesync/_task_table.html", context)


def _get_task(request: HttpRequest, pk: int) -> SyncTask:
    return get_object_or_404(
        _task_queryset(request).select_related("created_by", "retry_of"), pk=pk
    )


@require_GET
def task_detail(request, pk: int):
    """One task: its counters and the result of each repository, filterable by status."""
    task = _get_task(request, pk)
    results = task.results.select_related("repository")
    filterset = TaskResultFilter(request.GET, queryset=results, request=request, lenient=True)
    page = Paginator(filterset.rows, TASK_RESULTS_PAGE_SIZE).get_page(request.GET.get("page"))
    status_counts = dict(
        task.results.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    context = {
        "task": task,
        "filterset": filterset,
        "page": page,
        "status_summary": [
            {"value": value, "label": label, "count": status_counts[value]}
            for value, label in SyncTaskRepository.Status.choices
            if status_counts.get(value)
        ],
        "polling": task.is_active,
        "retries": task.retries.order_by("-created_at")[:5],
        # Changes the task recorded, by kind (the task page links each to the Changes tab).
        "change_totals": dict(task.changes.order_by().values_list("kind").annotate(n=Count("id"))),
        "columns": TASK_RESULTS.headers(filterset.sort),
        "filters_invalid": filterset.invalid,
    }
    return _render(request, "imagesync/task_detail.html", "imagesync/_task_detail.html", context)


@require_POST
def task_cancel(request, pk: int):
    """Ask an active task to stop; it stops between repositories."""
    task = _get_task(request, pk)
    _require_role(request, "operator")
    if task.cancel(user=request.user):
        messages.success(request, _("Cancellation requested for %(task)s.") % {"task": task})
    else:
        messages.info(
            request, _("%(task)s is no longer active; nothing to cancel.") % {"task": task}
        )
    return redirect("imagesync:task-detail", pk=task.pk)


@require_POST
def task_retry(request, pk: int):
    """Start a new task with just the failed repositories of this one."""
    task = _get_task(request, pk)
    _require_role(request, "operator")
    try:
        new_task = task.retry_failed(user=request.user)
    except SyncRefused as refused:
        if refused.active_task is not None:
            messages.error(
                request,
                format_html(_("{} See {}."), refused.message, _task_link(refused.active_task)),
            )
        else:
            messages.error(request, refused.message)
        return redirect("imagesync:task-detail", pk=task.pk)
    messages.success(request, format_html(_("Retry started: {}."), _task_link(new_task)))
    return redirect("imagesync:task-detail", pk=new_task.pk)


# --- Registry connections -------------------------------------------------------------------


def _registry_queryset(request: HttpRequest):
    project = _project(request)
    if project is None:
        return Registry.objects.none()
    return Registry.objects.for_user(request.user).filter(project=project)


def _count_subquery(model, filters: dict):
    """A correlated COUNT, so two counts on one row do not multiply through joins."""
    counted = (
        model.objects.filter(**filters)
        .order_by()
        .values("repository__registry" if model is Image else "registry")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


@require_GET
def registry_list(request):
    """Registry connections: kind, endpoint, connection status, last sync and counts."""
    registries = _registry_queryset(request).annotate(
        repository_total=_count_subquery(
            Repository, {"registry": OuterRef("pk"), "removed_at__isnull": True}
        ),
        image_total=_count_subquery(Image, {"repository__registry": OuterRef("pk")}),
    )
    # The row actions are an admin's; the column goes with them.
    can_admin = has_role(_role(request), "admin")
    columns = [h for h in REGISTRIES.headers("") if h.key != "actions" or can_admin]
    return render(
        request, "imagesync/registry_list.html", {"registries": registries, "columns": columns}
    )


def _get_registry(request: HttpRequest, pk: int) -> Registry:
    return get_object_or_404(_registry_queryset(request), pk=pk)


@require_http_methods(["GET", "POST"])
def registry_create(request):
    """Connect a registry (project admins)."""
    project = _require_role(request, "admin")
    form = RegistryForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        registry = form.save(actor=request.user)
        messages.success(
            request,
            _("Registry “%(name)s” connected. Test the connection, then synchronize.")
            % {"name": registry.name},
        )
        return redirect("imagesync:registry-list")
    return render(request, "imagesync/registry_form.html", {"form": form, "registry": None})


@require_http_methods(["GET", "POST"])
def registry_edit(request, pk: int):
    """Edit a registry connection; a blank secret keeps the stored one."""
    registry = _get_registry(request, pk)
    project = _require_role(request, "admin")
    form = RegistryForm(request.POST or None, instance=registry, project=project)
    if request.method == "POST" and form.is_valid():
        registry = form.save(actor=request.user)
        messages.success(request, _("Registry “%(name)s” saved.") % {"name": registry.name})
        return redirect("imagesync:registry-list")
    context = {"form": form, "registry": registry, **_events_context(request, registry)}
    return render(request, "imagesync/registry_form.html", context)


def _events_context(request: HttpRequest, registry: Registry, secret: str | None = None) -> dict:
    """The registry events panel of a connection's page (admins only reach it): receiver
    URL, setup, the secret when it was just created or rotated, and the health."""
    receiver = events.EventReceiver.objects.filter(registry=registry).first()
    if receiver is None:
        return {"events": None}
    shown = events.summary(registry, request.build_absolute_uri("/"), secret)
    return {"events": {**shown, "receiver": receiver, "health": receiver.health()}}


@require_POST
def registry_events(request, pk: int):
    """Turn a connection's registry events on or off, or rotate their secret (project
    admins). The new secret is in this answer only: it is stored encrypted and never shown
    again."""
    registry = _get_registry(request, pk)
    project = _require_role(request, "admin")
    action = request.POST.get("action")
    if action not in ("enable", "disable", "rotate"):
        return HttpResponseBadRequest()
    receiver = events.EventReceiver.of(registry)
    secret = None
    if action == "enable":
        secret = receiver.enable(request.user)
    elif action == "disable":
        receiver.disable(request.user)
    else:
        secret = receiver.rotate(request.user)
    form = RegistryForm(instance=registry, project=project)
    context = {"form": form, "registry": registry, **_events_context(request, registry, secret)}
    response = render(request, "imagesync/registry_form.html", context)
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
def registry_delete(request, pk: int):
    """Remove a registry connection and, with it, its repositories and images."""
    registry = _get_registry(request, pk)
    _require_role(request, "admin")
    if request.method == "POST":
        name = registry.name
        registry.remove(request.user)
        messages.success(
            request,
            _("Registry “%(name)s” removed with its repositories and images.") % {"name": name},
        )
        return redirect("imagesync:registry-list")
    counts = {
        "repositories": registry.repositories.count(),
        "images": Image.objects.filter(repository__registry=registry).count(),
    }
    return render(
        request, "imagesync/registry_delete.html", {"registry": registry, "counts": counts}
    )


@require_POST
def registry_test(request, pk: int):
    """Test connection: check the endpoint and credentials, store and show the result inline."""
    registry = _get_registry(request, pk)
    _require_role(request, "admin")
    result = registry.test_connection(request.user)
    ok, message = result.ok, result.message
    if _is_fragment(request):
        return render(
            request, "imagesync/_registry_status.html", {"registry": registry, "tested": True}
        )
    if ok:
        messages.success(
            request, _("Connection to “%(name)s” succeeded.") % {"name": registry.name}
        )
    else:
        messages.error(
            request,
            _("Connection to “%(name)s” failed: %(message)s")
            % {"name": registry.name, "message": message},
        )
    return redirect("imagesync:registry-list")


AUDIT_PAGE_SIZE = 50


@require_GET
def audit_list(request):
    """Audit log of the current project (admins only): who started, cancelled or retried syncs,
    who changed registries and grants, and when."""
    project = _require_role(request, "admin")
    events = AuditEvent.objects.filter(project=project).select_related("actor")
    action = request.GET.get("action", "")
    if action:
        events = events.filter(action=action)
    actions = (
        AuditEvent.objects.filter(project=project)
        .order_by("action")
        .values_list("action", flat=True)
        .distinct()
    )
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "imagesync/audit_list.html",
        {
            "page": page,
            "events": page.object_list,
            "actions": actions,
            "action": action,
            "columns": AUDIT_EVENTS.headers(""),
        },
    )
