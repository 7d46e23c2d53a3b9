"""Console views of the inventory's history (imagesync/history.py): the Changes tab and the
pages that read a tag's, a digest's or the whole inventory's past.

Like Image View (imagesync/views.py, whose helpers these reuse): every queryset is the current
project's rows the user may see, so nothing of another project is ever shown, and a normal
request gets the full page, an htmx request the `_fragment` it includes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from imagesync import exports
from imagesync.filters import (
    MAX_ID,
    ChangeFilter,
    DigestPrefixField,
    MomentField,
    _day_start,
    digest_prefix_q,
)
from imagesync.history import Change, ImageInterval, history_start, inventory_diff
from imagesync.models import Project, Repository, SyncTask
from imagesync.paging import BoundedPaginator
from imagesync.tables import (
    CHANGES,
    DIGEST_SPANS,
    HISTORY_DIFF,
    PAGE_SIZES,
    TAG_CHANGES,
    TAG_STATES,
    Column,
    page_size,
)
from imagesync.views import IdsThenRows, _is_fragment, _project, _project_rows, _render

# --- Changes --------------------------------------------------------------------------------


def _change_filterset(request: HttpRequest) -> ChangeFilter:
    """The Changes tab's filters and sort, from the URL, over the changes the user may see."""
    return ChangeFilter(
        request.GET,
        queryset=_project_rows(request, Change),
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


def walks_in_order(changes) -> bool:
    """Whether `changes` is sorted by time (either way), which the (project, time, id) index
    walks in order: a deep page past the count's bound is then read forwards without a count
    (PostgreSQL). Any other sort reads a deep page from the nearer end after counting every
    row, as before the bound: reaching it forwards sorts every row before it (a page near the
    end of a million changes sorted by tag: 1.1 s instead of 0.12 s on PostgreSQL)."""
    return tuple(changes.query.order_by) in {("-time", "-id"), ("time", "id")}


@require_GET
def change_list(request: HttpRequest) -> HttpResponse:
    """Changes: every change of the project, newest first, filtered, sorted and paginated
    from the URL."""
    filterset = _change_filterset(request)
    # The page's ids first, then those rows: a deep page of a million changes is an index
    # walk, not an OFFSET over whole rows. The total is counted only up to IMAGE_COUNT_LIMIT
    # (imagesync.paging), as in Image View: past it the page says "More than N changes".
    rows = IdsThenRows(
        filterset.rows,
        details=lambda changes: changes,
        count_deep_pages=not walks_in_order(filterset.rows),
    )
    page = BoundedPaginator(rows, page_size(request.GET)).get_page(request.GET.get("page"))
    # Whether the project has any change at all (the empty state): the bounded count above,
    # or else one EXISTS probe -- never a count of every change.
    has_changes = page.paginator.count > 0 or _project_rows(request, Change).exists()
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


# --- a tag's timeline, digest lookup, diff between two moments -------------------------------


TIMELINE_PAGE_SIZE = 50
DIGESTS_PAGE_SIZE = 10
DIFF_PAGE_SIZE = 50
MIN_DIGEST_HEX = 4
MAX_TAG_LENGTH = 128  # the OCI limit; anything longer cannot be a stored tag


class DigestLookupForm(forms.Form):
    digest = DigestPrefixField(
        min_hex=MIN_DIGEST_HEX,
        label=gettext_lazy("Digest"),
        max_length=160,
        help_text=gettext_lazy("A digest (sha256:…) or at least its first 4 hex characters."),
        widget=forms.TextInput(
            attrs={"placeholder": gettext_lazy("sha256:3f4a… or 3f4a9c"), "size": 40}
        ),
    )


@dataclass
class Span:
    """A stretch of time during which one tag pointed to one digest: consecutive states with
    the same digest (only details or the "latest" mark changed) are one span."""

    digest: str
    repository_id: int | None
    registry_id: int | None
    registry_name: str
    repository_type: str
    repository_path: str
    tag: str
    valid_from: datetime
    valid_to: datetime | None

    @property
    def current(self) -> bool:
        return self.valid_to is None

    @property
    def connection_removed(self) -> bool:
        return self.registry_id is None


def digest_spans(intervals: Iterable[ImageInterval]) -> list[Span]:
    """Spans of `intervals` ordered by digest, registry, repository, tag and valid_from."""
    spans: list[Span] = []
    for row in intervals:
        last = spans[-1] if spans else None
        same_tag = last is not None and (
            last.digest,
            last.repository_id,
            last.registry_name,
            last.repository_path,
            last.tag,
        ) == (row.digest, row.repository_id, row.registry_name, row.repository_path, row.tag)
        if same_tag and last.valid_to == row.valid_from:
            last.valid_to = row.valid_to
            continue
        spans.append(
            Span(
                row.digest,
                row.repository_id,
                row.registry_id,
                row.registry_name,
                row.repository_type,
                row.repository_path,
                row.tag,
                row.valid_from,
                row.valid_to,
            )
        )
    return spans


def digests_matching(intervals, value: str):
    """The distinct digests among `intervals` that start with `value`, in order."""
    return (
        intervals.filter(digest_prefix_q("digest", value))
        .order_by("digest")
        .values_list("digest", flat=True)
        .distinct()
    )


def spans_of(intervals, digests: list[str]) -> list[tuple[str, list[Span]]]:
    """(digest, its spans) for each of `digests`."""
    rows = intervals.filter(digest__in=digests).order_by(
        "digest", "registry_name", "repository_path", "tag", "valid_from", "id"
    )
    grouped: dict[str, list[Span]] = {digest: [] for digest in digests}
    for span in digest_spans(rows.iterator(chunk_size=2000)):
        grouped[span.digest].append(span)
    return list(grouped.items())


class HistoryDiffForm(forms.Form):
    """Two moments of the project's history: each a day, an ISO instant or a finished task
    (the moment it finished). A day starts at its midnight as `from` and ends at its last
    instant as `to`, clipped to the history; `to` left out means now. Moments must lie between
    the start of the project's history and now, `from` no later than `to`."""

    def __init__(self, data=None, *, project: Project | None, now: datetime | None = None):
        super().__init__(data)
        self.project = project
        self.now = now or timezone.now()
        placeholder = {"placeholder": _("YYYY-MM-DD or 2026-11-01T08:00")}
        words = (("from", gettext_lazy("From")), ("to", gettext_lazy("To")))
        for end, word in words:
            self.fields[end] = MomentField(
                required=False,
                label=format_lazy(gettext_lazy("{} (day or time)"), word),
                widget=forms.TextInput(attrs=placeholder),
            )
        for end, word in words:
            self.fields[f"{end}_task"] = forms.IntegerField(
                required=False,
                min_value=1,
                max_value=MAX_ID,
                label=format_lazy(gettext_lazy("{} task (id)"), word),
            )

    def _task_moment(self, end: str, task_id: int) -> datetime | None:
        task = SyncTask.objects.filter(project=self.project, pk=task_id).first()
        if task is None:
            self.add_error(
                f"{end}_task",
                _("There is no task #%(task)s in this project.") % {"task": task_id},
            )
        elif task.finished_at is None:
            self.add_error(
                f"{end}_task", _("Task #%(task)s has not finished yet.") % {"task": task_id}
            )
        else:
            return task.finished_at
        return None

    def _moment(self, end: str, start_of_history: datetime) -> datetime | None:
        """The moment `end` names, clipped (days only) or checked against the history."""
        value, task_id = self.cleaned_data.get(end), self.cleaned_data.get(f"{end}_task")
        if value is not None and task_id is not None:
            self.add_error(
                f"{end}_task",
                _("Give %(end)s or %(end)s_task, not both.") % {"end": end},
            )
            return None
        if task_id is not None:
            moment = self._task_moment(end, task_id)
        elif isinstance(value, dt.datetime):
            moment = value
        elif isinstance(value, dt.date):
            if end == "from":
                moment = max(_day_start(value), start_of_history)
            else:
                moment = min(_day_start(value + dt.timedelta(days=1)), self.now)
                moment -= dt.timedelta(microseconds=1) if moment != self.now else dt.timedelta()
        else:
            return self.now if end == "to" else None
        if moment is None:
            return None
        if moment > self.now:
            self.add_error(end if task_id is None else f"{end}_task", _("That is in the future."))
            return None
        if moment < start_of_history:
            when = timezone.localtime(start_of_history).strftime("%Y-%m-%d %H:%M:%S")
            self.add_error(
                end if task_id is None else f"{end}_task",
                _("The history of this project starts at %(when)s; give a later moment.")
                % {"when": when},
            )
            return None
        return moment

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        if self.project is None:
            raise forms.ValidationError(_("Choose a project first."))
        start_of_history = history_start(self.project)
        if start_of_history is None:
            raise forms.ValidationError(_("No history has been recorded in this project yet."))
        start = self._moment("from", start_of_history)
        end = self._moment("to", start_of_history)
        if self.errors:
            return data
        if start is None:
            self.add_error("from", _("Give a start: a day, a time, or a task (from_task)."))
        elif start > end:
            raise forms.ValidationError(_("“From” is after “to”; swap them."))
        data["start"], data["end"] = start, end
        return data


def form_errors(form: forms.Form) -> dict[str, list[str]]:
    """Field -> messages, non-field errors under non_field_errors (the API's details)."""
    return {
        ("non_field_errors" if name == NON_FIELD_ERRORS else name): [str(e) for e in errors]
        for name, errors in form.errors.items()
    }


DIFF_COLUMNS = [
    Column("kind", "Change", value=attrgetter("kind")),
    Column("registry", "Registry", value=attrgetter("registry_name")),
    Column("type", "Type", value=attrgetter("repository_type")),
    Column("namespace", "Namespace", value=attrgetter("namespace")),
    Column("repository", "Repository path", value=attrgetter("repository_path")),
    Column("tag", "Tag", value=attrgetter("tag")),
    Column("old_digest", "Old digest", value=attrgetter("old_digest")),
    Column("new_digest", "New digest", value=attrgetter("new_digest")),
]


def _history_repositories(request: HttpRequest):
    project = _project(request)
    if project is None:
        return Repository.objects.none()
    return Repository.objects.for_user(request.user).of_project(project)


def _history_intervals(request: HttpRequest):
    project = _project(request)
    if project is None:
        return ImageInterval.objects.none()
    return ImageInterval.objects.for_user(request.user).filter(project=project)


def _digest_since(states, current: ImageInterval) -> datetime:
    """Since when the tag has had the current digest: the start of the run of unbroken states
    with that digest (a new state also begins when only details or the latest mark change)."""
    since = current.valid_from
    older = states.filter(valid_from__lt=since).only("digest", "valid_from", "valid_to")
    for state in older.iterator(chunk_size=100):
        if state.digest != current.digest or state.valid_to != since:
            break
        since = state.valid_from
    return since


@require_GET
def tag_history(request, repository_id: int, tag: str):
    """A tag's timeline: every state it has had (newest first) and the changes between them."""
    repository = get_object_or_404(
        _history_repositories(request).select_related("registry"), pk=repository_id
    )
    if len(tag) > MAX_TAG_LENGTH or "\x00" in tag:
        raise Http404("No such tag.")
    states = ImageInterval.objects.filter(repository=repository, tag=tag).order_by(
        "-valid_from", "-id"
    )
    changes = Change.objects.filter(repository=repository, tag=tag).order_by("-time", "-id")
    state_page = Paginator(states, TIMELINE_PAGE_SIZE).get_page(request.GET.get("page"))
    change_page = Paginator(changes, TIMELINE_PAGE_SIZE).get_page(request.GET.get("changes_page"))
    current = states.filter(valid_to__isnull=True).first()
    context = {
        "repository": repository,
        "tag": tag,
        "page": state_page,
        "change_page": change_page,
        "state_columns": TAG_STATES.headers(""),
        "change_columns": TAG_CHANGES.headers(""),
        "current": current,
        "current_since": _digest_since(states, current) if current else None,
    }
    return render(request, "imagesync/tag_history.html", context)


@require_GET
def digest_history(request):
    """Where has this digest been: every repository and tag of the project that ever pointed to
    a digest starting with what the user typed, with the intervals, grouped by digest."""
    form = DigestLookupForm(request.GET if "digest" in request.GET else None)
    context: dict = {
        "form": form,
        "groups": [],
        "page": None,
        "searched": False,
        "columns": DIGEST_SPANS.headers(""),
    }
    if form.is_valid() and _project(request) is not None:
        context["searched"] = True
        intervals = _history_intervals(request)
        digests = digests_matching(intervals, form.cleaned_data["digest"])
        page = Paginator(digests, DIGESTS_PAGE_SIZE).get_page(request.GET.get("page"))
        context["page"] = page
        context["groups"] = spans_of(intervals, list(page.object_list))
    return render(request, "imagesync/digest_history.html", context)


def _diff_form(request: HttpRequest) -> HistoryDiffForm:
    names = ("from", "to", "from_task", "to_task")
    data = request.GET if any(name in request.GET for name in names) else None
    return HistoryDiffForm(data, project=_project(request))


@require_GET
def history_diff(request):
    """The net differences between the inventory at two moments (or two tasks); with
    format=csv, the same rows as a CSV download."""
    form = _diff_form(request)
    context: dict = {"form": form, "diff": None, "page": None, "columns": HISTORY_DIFF.headers("")}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        diff = inventory_diff(_project(request), data["start"], data["end"])
        if request.GET.get("format") == "csv":
            return exports.csv_download(DIFF_COLUMNS, diff.rows, "history-diff")
        context["diff"] = diff
        context["page"] = Paginator(diff.rows, DIFF_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "imagesync/history_diff.html", context)
