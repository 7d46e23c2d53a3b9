"""One FilterSet per list -- Image View, repositories, sync tasks, a task's results -- used by
the console's pages and by the API alike, so a parameter name means one thing everywhere.

Every value comes from the URL, so a filtered view can be bookmarked. A value that does not
parse is a form error on a page (which then shows no rows) and a 400 in the API.

Names: the API's v1 names are the canonical ones (`ordering`, `updated_after`, `size_min` in
bytes, ...). The console's older names still work: `sort` is `ordering`, `*_from` is
`*_after`; `*_to` (a whole day, inclusive) and the MiB sizes (`size_min_mib`) have names of
their own. Times accept a calendar day (day boundaries in the console's time zone) or an
ISO 8601 instant.
"""

from __future__ import annotations

import copy
import datetime as dt
import operator
import re
from collections import Counter
from decimal import Decimal

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import OperationalError, connection
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    DateTimeField,
    Exists,
    Expression,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql.where import WhereNode
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from imagesync import usage
from imagesync.history import (
    STABBING_PARTS,
    Change,
    ImageInterval,
    RepositoryName,
    digests_containing,
    has_odd_digests,
    history_start,
    stabbing_parts,
)
from imagesync.models import (
    Image,
    Project,
    Registry,
    Repository,
    RepositoryType,
    SyncTask,
    SyncTaskRepository,
)
from imagesync.paging import first_matches, under_condition
from imagesync.tables import (
    CHANGES,
    IMAGES,
    IMAGES_AS_OF,
    REPOSITORIES,
    TASK_RESULTS,
    TASKS,
    Table,
)

MIB = 1024 * 1024
MAX_ID = 2**63 - 1


# --- fields -------------------------------------------------------------------------------------


class StrictBooleanField(forms.Field):
    """true/false, 1/0, or a ticked checkbox ("on"); anything else is an error rather than
    silently no filter."""

    VALUES = {"true": True, "1": True, "on": True, "false": False, "0": False}

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        try:
            return self.VALUES[str(value).strip().lower()]
        except KeyError:
            raise forms.ValidationError(_("Use true or false.")) from None

    def validate(self, value) -> None:
        pass


class CheckboxFlag(forms.CheckboxInput):
    """A checkbox that hands the raw value to StrictBooleanField (Django's own turns any text,
    "maybe" included, into True) and is ticked only for a true value."""

    def __init__(self, attrs=None):
        super().__init__(attrs, check_test=self.is_true)

    @staticmethod
    def is_true(value) -> bool:
        return value is True or StrictBooleanField.VALUES.get(str(value).strip().lower()) is True

    def value_from_datadict(self, data, files, name):
        return data.get(name)


class DropDownList(forms.SelectMultiple):
    """A drop-down with an "any" option for a filter that takes a list: a page picks one
    value, the API may repeat the parameter."""

    allow_multiple_selected = False

    def __init__(self, empty_label: str, attrs=None):
        super().__init__(attrs)
        self.empty_label = empty_label

    def optgroups(self, name, value, attrs=None):
        choices = self.choices
        self.choices = [("", self.empty_label), *choices]
        try:
            return super().optgroups(name, value, attrs)
        finally:
            self.choices = choices

    def value_from_datadict(self, data, files, name):
        values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name)]
        return [value for value in values if value not in (None, "")]


class MomentField(forms.Field):
    """A calendar day (YYYY-MM-DD) or an ISO 8601 instant (a naive one is in the console's
    time zone), between the years 1000 and 9000 so that no conversion to UTC overflows."""

    widget = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")

    def to_python(self, value) -> dt.date | dt.datetime | None:
        if isinstance(value, dt.date):
            return value
        text = str(value or "").strip()
        if not text:
            return None
        try:
            moment = dt.date.fromisoformat(text) if len(text) == 10 else parse_datetime(text)
        except ValueError:
            moment = None
        if moment is None:
            raise forms.ValidationError(_("Give a day (YYYY-MM-DD) or an ISO 8601 time."))
        if not 1000 <= moment.year <= 9000:
            raise forms.ValidationError(_("Give a time between the years 1000 and 9000."))
        if isinstance(moment, dt.datetime) and timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        return moment


class AsOfField(MomentField):
    """The moment of a historical Image View: an ISO 8601 instant, or a day (its end, so "as of
    2026-11-20" is the inventory at the close of that day; today's end is now). Not later than
    now; `AsOfForm` checks that the project's history reaches back that far."""

    widget = forms.DateTimeInput(
        attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"
    )

    def to_python(self, value) -> dt.datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        now = timezone.now()
        if not isinstance(moment, dt.datetime):
            if _day_start(moment) > now:
                raise forms.ValidationError(
                    _("That day is in the future; choose today or earlier.")
                )
            moment = min(_day_start(moment + dt.timedelta(days=1)) - dt.timedelta.resolution, now)
        elif moment > now:
            raise forms.ValidationError(_("That time is in the future; choose now or earlier."))
        return moment


def complete_history_start(project: Project) -> dt.datetime | None:
    """The earliest moment the project's history describes completely: its first interval,
    or the retention cutoff once older closed intervals may have been purged. None: nothing
    has been recorded yet."""
    first = history_start(project)
    if first is None:
        return None
    return max(first, timezone.now() - dt.timedelta(days=settings.HISTORY_RETENTION_DAYS))


class AsOfForm(forms.Form):
    """Image View's filter form: an `as_of` before the project's history is an error (the
    console cannot know what was there), with the first moment it can show."""

    project: Project | None = None

    def clean_as_of(self) -> dt.datetime | None:
        moment = self.cleaned_data.get("as_of")
        if moment is None or self.project is None:
            return moment
        start = complete_history_start(self.project)
        if start is None:
            raise forms.ValidationError(
                _("This project has no inventory history yet; it starts with the first sync.")
            )
        if moment < start:
            first = timezone.localtime(start).strftime("%Y-%m-%d %H:%M:%S")
            raise forms.ValidationError(
                gettext("The inventory history starts at %(first)s; choose that time or later.")
                % {"first": first}
            )
        return moment


@extend_schema_field(OpenApiTypes.DATETIME)
class AsOfFilter(django_filters.Filter):
    """Chooses the rows (the live images or the intervals at the moment), so it filters
    nothing itself; see `image_filter_class`."""

    field_class = AsOfField

    def filter(self, qs: QuerySet, value) -> QuerySet:
        return qs


def _finished_results(moment: dt.datetime) -> QuerySet:
    return SyncTaskRepository.objects.filter(
        status=SyncTaskRepository.Status.FINISHED, finished_at__lte=moment
    )


def last_synced_as_of(moment: dt.datetime) -> Expression:
    """An interval's "Last synced" as of `moment`: the latest finished sync result of its
    repository at or before then (a result's finished_at is when the repository's images were
    stored). A removed connection's results lost their repository link, as its intervals did,
    so theirs are found by the identity both kept."""
    latest = ("-finished_at",)
    by_identity = (
        _finished_results(moment)
        .filter(
            repository__isnull=True,
            task__project_id=OuterRef("project_id"),
            registry_name=OuterRef("registry_name"),
            repository_type=OuterRef("repository_type"),
            repository_path=OuterRef("repository_path"),
        )
        .order_by(*latest)
        .values("finished_at")[:1]
    )
    return Case(
        When(repository__isnull=True, then=Subquery(by_identity)),
        default=_synced_by_repository_id(moment),
    )


def _synced_by_repository_id(moment: dt.datetime, outer: str = "repository_id") -> Subquery:
    """The last finished sync at or before `moment` of the repository whose id is the outer
    row's `outer`."""
    return Subquery(
        _finished_results(moment)
        .filter(repository_id=OuterRef(outer))
        .order_by("-finished_at")
        .values("finished_at")[:1]
    )


def repositories_synced_as_of(project: Project, moment: dt.datetime) -> dict:
    """Each repository of `project` -> its last finished sync at or before `moment` (None:
    none yet): one probe of (repository, status, finished_at) per repository."""
    latest = _synced_by_repository_id(moment, outer="pk")
    repositories = Repository.objects.filter(registry__project=project).order_by()
    return dict(repositories.annotate(last=latest).values_list("pk", "last"))


def last_synced_by_repository(moment: dt.datetime, synced: dict, removed: bool) -> Expression:
    """`last_synced_as_of(moment)` of a project's intervals, from its repositories' values
    `synced` (`repositories_synced_as_of`): read from the interval's repository id, which the
    as-of indexes hold, instead of a subquery per row. With `removed` (some intervals lost
    their repository with its connection), those rows compute theirs from their own row,
    found by id (still no column outside the indexes), and a repository `synced` does not
    know gets the subquery; without, the expression has no subquery at all (PostgreSQL
    costs each CASE branch for every row, and compiled the subqueries' CASE with its JIT for
    ~2 s). An interval's repository is always one of its project's (`RepositoryIdentity.
    identify`)."""
    groups: dict = {}
    for repository_id, last in synced.items():
        groups.setdefault(last, []).append(repository_id)
    whens = []
    if removed:
        own = (
            ImageInterval.objects.filter(pk=OuterRef("pk"))
            .order_by()
            .annotate(synced=last_synced_as_of(moment))
        )
        whens.append(When(repository__isnull=True, then=Subquery(own.values("synced")[:1])))
    for last, ids in groups.items():
        if last is not None:  # the repositories never synced then: the default, NULL
            value = Value(last, output_field=DateTimeField())
            whens.append(When(repository_id__in=sorted(ids), then=value))
    if removed:
        unknown = ~Q(repository_id__in=sorted(synced))
        whens.append(When(unknown, then=_synced_by_repository_id(moment)))
    if not whens:
        return Value(None, output_field=DateTimeField())
    return Case(*whens, default=Value(None), output_field=DateTimeField())


def _not_indexed(name: str, output_field) -> Expression:
    """The column, written so that SQLite's planner does not read it through an index (its
    documented unary "+"): it cannot tell that the other range of the query is the narrower
    one. PostgreSQL's planner can, from its statistics."""
    if connection.vendor == "sqlite":
        return Func(F(name), template="+%(expressions)s", output_field=output_field)
    return F(name)


def inventory_as_of(queryset: QuerySet, moment: dt.datetime) -> QuerySet:
    """`queryset` (intervals) as the inventory at `moment`, each with its `last_synced_at`."""
    return queryset.at(moment).annotate(last_synced_at=last_synced_as_of(moment))


# --- filters ------------------------------------------------------------------------------------


def _day_start(day: dt.date) -> dt.datetime:
    """Midnight at the start of `day` in the console's time zone, as an aware datetime."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


@extend_schema_field(OpenApiTypes.DATETIME)
class MomentFilter(django_filters.Filter):
    """`after`: at or after; `before`: strictly before; `to`: up to and including (a day's
    end, for people picking a "to" date)."""

    field_class = MomentField

    def __init__(self, *args, bound: str, **kwargs):
        self.bound = bound
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if value is None:
            return qs
        lookup, moment = self.comparison(value)
        return qs.filter(**{f"{self.field_name}__{lookup}": moment})

    def comparison(self, value: dt.date | dt.datetime) -> tuple[str, dt.datetime]:
        """The lookup (gte, lt, lte) and the instant that this bound compares with."""
        if isinstance(value, dt.datetime):
            return {"after": "gte", "before": "lt", "to": "lte"}[self.bound], value
        moment = _day_start(value + dt.timedelta(days=1 if self.bound == "to" else 0))
        return ("gte" if self.bound == "after" else "lt"), moment


def _moments(
    field_name: str, noun: str, kind: type[MomentFilter] = MomentFilter
) -> tuple[MomentFilter, MomentFilter, MomentFilter]:
    """The after (label "<noun> from"), before and to filters of one time field."""
    return tuple(
        kind(field_name=field_name, bound=bound, label=format_lazy("{} {}", noun, word))
        for bound, word in (("after", _("from")), ("before", _("before")), ("to", _("to")))
    )


class RepositoryMomentFilter(MomentFilter):
    """A bound on a repository's time that images show as theirs ("Last synced": an image's
    is its repository's), through `repository_id IN (subquery)` (see `_in_repositories`)."""

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if value is None:
            return qs
        lookup, moment = self.comparison(value)
        return _in_repositories(qs, **{f"{self.field_name}__{lookup}": moment})


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", CheckboxFlag())
        super().__init__(*args, **kwargs)


class WholeNumberFilter(django_filters.NumberFilter):
    """A whole number a database integer can hold: an object id (at least 1) or a size in
    bytes (at least 0)."""

    field_class = forms.IntegerField

    def __init__(self, *args, min_value: int = 0, **kwargs):
        super().__init__(*args, min_value=min_value, max_value=MAX_ID, **kwargs)


class UsageDaysFilter(django_filters.NumberFilter):
    """A number of days for "not pulled in the last N days" (1 to 100 years)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=36500, **kwargs)


TAGGED_CHOICES = [("tagged", _("Tagged")), ("untagged", _("Untagged")), ("all", _("All"))]
PULLED_CHOICES = [("never", _("Never pulled")), ("unknown", _("Pull data unknown"))]


class MibFilter(django_filters.NumberFilter):
    """A size bound typed in MiB (the console's inputs), compared in bytes."""

    def __init__(self, *args, **kwargs):
        kwargs.update(min_value=Decimal(0), max_digits=12, decimal_places=3)
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if value is None:
            return qs
        return qs.filter(**{f"{self.field_name}__{self.lookup_expr}": int(value * MIB)})


class SortField(forms.CharField):
    """Column keys of the list's table, comma-separated, '-' for descending."""

    def __init__(self, *args, table: Table, **kwargs):
        self.table = table
        super().__init__(*args, **kwargs)

    def clean(self, value) -> str:
        value = super().clean(value)
        if not value:
            return ""
        canonical = self.table.canonical_sort(value)
        if canonical is None:
            raise forms.ValidationError(
                "Sort by one or more of: " + ", ".join(self.table.sort_keys) + "."
            )
        return canonical


@extend_schema_field(OpenApiTypes.STR)
class SortFilter(django_filters.Filter):
    """Orders by the table's sort fields; no value means the table's default sort."""

    field_class = SortField

    def __init__(self, table: Table, **kwargs):
        kwargs.setdefault(
            "label",
            "Sort by one or more of: "
            + ", ".join(table.sort_keys)
            + f"; prefix '-' for descending. Default: {table.default_sort}.",
        )
        super().__init__(table=table, **kwargs)

    def filter(self, qs: QuerySet, value) -> QuerySet:
        return qs.order_by(*self.extra["table"].order_by(value or self.extra["table"].default_sort))


class UnderscorePrefixForm(forms.Form):
    """A prefix joined with "_" (repo_type), the names the sync panel's picker always used."""

    def add_prefix(self, field_name: str) -> str:
        return f"{self.prefix}_{field_name}" if self.prefix else field_name


# --- the FilterSets -----------------------------------------------------------------------------


class ListFilterSet(django_filters.FilterSet):
    """What every list's FilterSet shares: older parameter names, a sort from its table, and
    the project whose registries a registry filter offers.

    `lenient=True` (the pages) drops a sort the table does not know, so an old bookmark still
    shows rows; the API calls it an error."""

    table: Table
    aliases = {"sort": "ordering"}
    page_fields = ""  # the fields the page's filter form shows, space-separated, in order
    not_narrowing = frozenset({"ordering"})

    def __init__(
        self, data=None, queryset=None, *, request=None, prefix=None, project=None, lenient=False
    ):
        self.project = project
        super().__init__(
            self._canonical(data, prefix, lenient), queryset, request=request, prefix=prefix
        )
        if "registry" in self.filters and project is not None:
            registries = Registry.objects.filter(project=project)
            user = getattr(request, "user", None)
            if user is not None:
                registries = registries.for_user(user)
            self.filters["registry"].queryset = registries

    def _canonical(self, data, prefix: str | None, lenient: bool):
        data = data.copy() if data is not None else {}
        if prefix is None:
            for old, new in self.aliases.items():
                if old in data and new not in data:
                    data[new] = data[old]  # a QueryDict keeps the last value, like a form would
                data.pop(old, None)
        name = f"{prefix}_ordering" if prefix else "ordering"
        if lenient and data.get(name) and self.table.canonical_sort(str(data.get(name))) is None:
            data.pop(name)
        return data

    @property
    def page_form_fields(self) -> list:
        return [self.form[name] for name in self.page_fields.split()]

    @property
    def invalid(self) -> bool:
        return not self.is_valid()

    @property
    def rows(self) -> QuerySet:
        """The filtered, sorted rows; none while a filter is not valid."""
        return self.queryset.none() if self.invalid else self.qs

    @property
    def sort(self) -> str:
        """The sort in effect, as column keys."""
        chosen = self.form.cleaned_data.get("ordering") if self.is_valid() else ""
        return chosen or self.table.default_sort

    def narrows(self, ignore: frozenset[str] = frozenset()) -> bool:
        """True when a filter (other than the sort and `ignore`) is set; invalid counts."""
        if self.invalid:
            return any(self.data.get(self.form.add_prefix(name)) for name in self.filters)
        skipped = self.not_narrowing | ignore
        return any(
            value is not None and value not in ("", [], ())
            for name, value in self.form.cleaned_data.items()
            if name not in skipped
        )

    @property
    def active_filters(self) -> bool:
        return self.narrows()


def _in_repositories(qs: QuerySet, **lookups) -> QuerySet:
    """Filter images by repository fields through `repository_id IN (subquery)`: the database
    then reads just those repositories' images through the (repository, tag) index instead of
    joining every image of the project to its repository."""
    return qs.filter(repository__in=Repository.objects.filter(**lookups).values("pk"))


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _registry_filter(**kwargs) -> django_filters.ModelChoiceFilter:
    """A registry of the project, by id (the FilterSet narrows the choices to the project)."""
    return django_filters.ModelChoiceFilter(
        queryset=Registry.objects.none(),
        label=_("Registry"),
        empty_label=_("All registries"),
        **kwargs,
    )


def _one_or_more(choices, label: str, empty_label: str, **kwargs) -> django_filters.Filter:
    """A filter on several values (the API repeats the parameter), a drop-down on a page."""
    return django_filters.MultipleChoiceFilter(
        distinct=False,  # nothing here duplicates rows; DISTINCT would only slow counts
        choices=choices,
        widget=DropDownList(empty_label),
        label=label,
        help_text=_("Repeat the parameter for several."),
        **kwargs,
    )


def _per_type(rows: QuerySet, limit: int | None, walk: tuple[str, ...] = ()) -> dict[str, int]:
    """Rows of `rows` per repository type, or of the first `limit` + 1 of them that the
    database finds (a LIMIT in a subquery: it stops there instead of reading every match):
    one GROUP BY repository over the images (no join), then those groups joined to their
    repositories for the type.

    `walk`: on SQLite, the order of an index that tests a filter by itself (a tag's
    substring in the (project, tagged, tag) index), for a sample of `limit` + 1 rows: walking
    it reads a table row only for a match, where the repository index's walk reads every
    row to test it (100,000 images, 2% matching: 40 ms -> 31 ms)."""
    rows = rows.order_by().values_list("repository_id")
    if connection.vendor == "sqlite" and limit is not None and walk and _walks_in_order(rows, walk):
        rows = rows.order_by(*walk)
    elif connection.vendor == "sqlite" and (
        limit is None or _walks_in_order(rows, ("repository_id",))
    ):
        # Read in the repository index's order, as its GROUP BY would: SQLite otherwise
        # reads the sample through a (project, tagged) index and sorts it to group it (twice
        # as long when few rows match and all are read).
        rows = rows.order_by("repository_id")
    if limit is None:
        return _grouped_by_type(*rows.query.sql_with_params())
    with first_matches():  # the same sample costs the same every time on PostgreSQL
        return _grouped_by_type(*rows[: limit + 1].query.sql_with_params())


def _per_type_of_ids(ids: QuerySet) -> dict[str, int]:
    """The rows whose ids `ids` (a query of ids) selects, per repository type: the ids are
    read by the filter's own plan, then each row by its id."""
    sql, params = ids.query.sql_with_params()
    table = connection.ops.quote_name(ids.model._meta.db_table)
    return _grouped_by_type(f"SELECT i.repository_id FROM {table} i WHERE i.id IN ({sql})", params)


def _grouped_by_type(repository_ids: str, params) -> dict[str, int]:
    """Per repository type, the rows of `repository_ids` (SQL selecting a repository id per
    row): one GROUP BY repository (no join), then those groups joined to their repositories."""
    repositories = connection.ops.quote_name(Repository._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.type, SUM(g.n) FROM (SELECT s.repository_id, COUNT(*) AS n"
            f" FROM ({repository_ids}) s GROUP BY s.repository_id) g"
            f" INNER JOIN {repositories} r ON r.id = g.repository_id GROUP BY r.type",
            params,
        )
        return {type_: int(n) for type_, n in cursor.fetchall()}


def _walks_in_order(rows: QuerySet, order: tuple[str, ...]) -> bool:
    """SQLite: whether its plan for the first of `rows` in `order` walks an index in that
    order (stopping at the sample's end) rather than reading every match through a filter's
    own index (a time range, a digest prefix) and sorting them all, which costs more than
    grouping an unordered sample (one EXPLAIN QUERY PLAN: the planner knows which index it
    would take, the filters do not)."""
    sql, params = rows.order_by(*order)[:1].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return not any("TEMP B-TREE FOR ORDER BY" in str(row[-1]) for row in cursor.fetchall())


class ImageFilter(ListFilterSet):
    """Image View: type (several), registry, repository, namespace, image name, tag, digest,
    multi-arch, latest version, size range, update and sync time ranges, free text."""

    table = IMAGES
    aliases = {
        "sort": "ordering",
        "updated_from": "updated_after",
        "synced_from": "synced_after",
    }
    not_narrowing = frozenset({"ordering", "as_of"})

    as_of = AsOfFilter(
        label=_("As of"),
        help_text=_(
            "The inventory as the console knew it at this time (ISO 8601) or at the end"
            " of this day (YYYY-MM-DD); not in the future, not before the history starts."
        ),
    )

    q = django_filters.CharFilter(
        method="search",
        label=_("Search"),
        help_text=_("Matches the repository path, the tag or the digest."),
    )
    type = django_filters.MultipleChoiceFilter(
        method="filter_types",
        choices=RepositoryType.choices,
        widget=forms.CheckboxSelectMultiple,
        label=_("Repository type"),
        help_text=_("Repeat the parameter for several."),
    )
    registry = _registry_filter(method="filter_registry")
    repository = WholeNumberFilter(
        field_name="repository_id", min_value=1, label=_("Repository id")
    )
    namespace = django_filters.CharFilter(method="filter_repository", label=_("Namespace"))
    name = django_filters.CharFilter(method="filter_repository", label=_("Image name"))
    tag = django_filters.CharFilter(field_name="tag", lookup_expr="icontains", label=_("Tag"))
    digest = django_filters.CharFilter(
        method="filter_digest",
        label=_("Digest"),
        help_text=_("A digest or its leading hex characters."),
    )
    multi_arch = BooleanFilter(field_name="multi_arch", label=_("Multi-arch only"))
    latest = BooleanFilter(field_name="is_latest", label=_("Latest version only"))
    size_min = WholeNumberFilter(
        field_name="size", lookup_expr="gte", label=_("Size at least (bytes)")
    )
    size_max = WholeNumberFilter(
        field_name="size", lookup_expr="lte", label=_("Size at most (bytes)")
    )
    size_min_mib = MibFilter(field_name="size", lookup_expr="gte", label=_("Size from (MiB)"))
    size_max_mib = MibFilter(field_name="size", lookup_expr="lte", label=_("Size to (MiB)"))
    updated_after, updated_before, updated_to = _moments("registry_updated_at", _("Updated"))
    synced_after, synced_before, synced_to = _moments(
        "last_synced_at", _("Synced"), RepositoryMomentFilter
    )
    # Usage (imagesync.usage); the inventory as of a moment has no usage and ignores them.
    tagged = django_filters.ChoiceFilter(
        method="filter_tagged",
        choices=TAGGED_CHOICES,
        empty_label=None,
        label=_("Tagged / untagged"),
        help_text=_("tagged (default), untagged (artifacts no tag names) or all."),
    )
    not_pulled_days = UsageDaysFilter(
        method="filter_not_pulled",
        label=_("Not pulled in the last N days"),
        help_text=_("Images the registry says were not pulled for N days (or never)."),
    )
    pulled = django_filters.ChoiceFilter(
        method="filter_pulled",
        choices=PULLED_CHOICES,
        empty_label=_("Any"),
        label=_("Pull data"),
        help_text=_("never: the registry says never pulled; unknown: it gives no pull data."),
    )
    ordering = SortFilter(IMAGES)

    page_fields = (
        "namespace name tag digest size_min_mib size_max_mib"
        " updated_after updated_to synced_after synced_to tagged not_pulled_days pulled"
    )

    class Meta:
        model = Image
        fields: list[str] = []
        form = AsOfForm

    @property
    def form(self) -> AsOfForm:
        if not hasattr(self, "_form"):
            super().form.project = self.project  # AsOfForm checks as_of against its history
        return self._form

    @property
    def moment(self) -> dt.datetime | None:
        """The moment shown: None for the live inventory."""
        return None

    # What no row of the page or the CSV shows of its repository and registry: not read (a
    # page of 100 rows built 200 such instances, their settings and times, for names only).
    UNSHOWN = (
        *(f"repository__{name}" for name in ("extra", "image_count", "pull_count")),
        *(f"repository__{name}" for name in ("first_seen_at", "removed_at", "listing_started_at")),
        *(
            f"repository__registry__{name}"
            for name in (
                "endpoint",
                "username",
                "secret_encrypted",
                "verify_tls",
                "ca_bundle",
                "allow_insecure_http",
                "options",
                "connection_status",
                "connection_reason_code",
                "connection_message",
                "connection_checked_at",
                "last_synced_at",
                "usage_missing_code",
                "usage_missing_message",
                "created_at",
                "updated_at",
            )
        ),
    )

    def with_details(self, queryset: QuerySet) -> QuerySet:
        """`queryset` with what the page and the exports show of each row."""
        return queryset.select_related("repository__registry").defer(*self.UNSHOWN)

    def present(self, image: Image) -> Image:
        """A row as Image View's table shows it."""
        return image

    def filter_types(self, qs: QuerySet, name: str, value: list[str]) -> QuerySet:
        return _in_repositories(qs, type__in=value) if value else qs

    def filter_registry(self, qs: QuerySet, name: str, value: Registry | None) -> QuerySet:
        return _in_repositories(qs, registry=value) if value is not None else qs

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        """The filters, and Tagged unless `tagged` says otherwise (today's view unchanged)."""
        rows = super().filter_queryset(queryset)
        if self.moment is None and not self.form.cleaned_data.get("tagged"):
            rows = rows.filter(usage.TAGGED)
        return rows

    def filter_tagged(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        if self.moment is not None:
            return qs  # the history holds tags only
        if value == "untagged":
            return qs.filter(usage.UNTAGGED)
        return qs if value == "all" else qs.filter(usage.TAGGED)

    def filter_not_pulled(self, qs: QuerySet, name: str, value: int | None) -> QuerySet:
        if value is None or self.moment is not None:
            return qs
        return qs.filter(usage.not_pulled_since(timezone.now() - dt.timedelta(days=value)))

    def filter_pulled(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        if self.moment is not None:
            return qs
        if value == "never":
            return qs.filter(usage.NEVER_PULLED)
        return qs.filter(usage.UNKNOWN) if value == "unknown" else qs

    def filter_repository(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        return _in_repositories(qs, **{f"{name}__icontains": value}) if value else qs

    # Repositories a search names by their ids (up to this many; more: a subquery).
    SEARCH_REPOSITORY_IDS = 1000
    SEARCH_REPOSITORY_IDS_SQLITE = 50

    def search(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        """Free text matches the repository path (namespace/name), the tag or the digest.

        The matching repositories are read first and named by their ids, so that PostgreSQL
        can OR three index reads (the repository's images by the repository index, the tag
        and the digest by their trigram indexes, migration 0024) instead of testing every
        image against a subquery. Many matching repositories stay a subquery: on SQLite past a
        few (`SEARCH_REPOSITORY_IDS_SQLITE`), since it reads a subquery once as it would a
        list, and Django then builds no query with a parameter per repository (~10 ms of a
        search matching 1,000 of them).

        A text that no digest of the standard form (`sha256:` and 64 lowercase hex digits)
        can contain tests no digest while every image of the project has that form (one
        probe of a partial index, migration 0030): on SQLite, comparing every row's digest
        was half of a search's cost."""
        value = value.strip()
        if not value:
            return qs
        repositories = Repository.objects.filter(path__icontains=value).order_by()
        if self.project is not None:
            repositories = repositories.filter(registry__project=self.project)
        limit = self.SEARCH_REPOSITORY_IDS
        if connection.vendor != "postgresql":
            limit = self.SEARCH_REPOSITORY_IDS_SQLITE
        ids = list(repositories.values_list("pk", flat=True)[: limit + 1])
        if len(ids) > limit:
            ids = repositories.values("pk")
        matches = Q(repository_id__in=ids) | Q(tag__icontains=value)
        if (
            self.project is None
            or digests_containing(value) != "none"
            or has_odd_digests(self.project.pk, Image)
        ):
            matches |= Q(digest__icontains=value)
        return qs.filter(matches)

    def filter_digest(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        """A full digest, or the short hex form shown in the table: a prefix match written as
        a range, so the (project, digest) index serves it on SQLite (whose LIKE ignores case
        and so cannot use the index) as on PostgreSQL."""
        value = value.strip().lower()
        return qs.filter(digest_prefix_q("digest", value)) if value else qs

    def type_counts(self) -> dict[str, int]:
        """Images per repository type under every filter except the type filter itself, so
        each type says how many rows choosing it would show ({} while a filter is invalid),
        every match counted."""
        return self.counted_types(None)[0]

    def counted_types(
        self, limit: int | None, lower_bounds: bool = True
    ) -> tuple[dict[str, int], bool]:
        """`type_counts`, and whether they are exact: under a filter, at most `limit` + 1
        matching rows are counted (None: all); past that the counts are those of the first
        rows the database found, each a lower bound of its type's, or none when not
        `lower_bounds` (Image View shows no count on its type chips then).

        With no other filter than the repository's (`_repositories_matching`) the counts come
        from the repositories' image counts (kept by the sync engine in the same transaction as
        the images), so a million images are not scanned. Otherwise the filtered images per
        type (`_per_type`).

        Without lower bounds, on SQLite, the matches are first counted up to the bound by the
        filter's own plan (often a covering index: 1-7 ms for 10,001 rows of 100,000, where
        grouping them by repository reads each row: 6-25 ms), and only a count within the
        bound is grouped, by those rows' ids. A text filter (a tag, a search) tests every row
        whatever the plan: there the sample is grouped as it is read (`_per_type`)."""
        if self.invalid or self.project is None:
            return {}, True
        repositories = self._repositories_matching()
        if repositories is not None:
            rows = repositories.order_by().values_list("type").annotate(n=Sum("image_count"))
            return {type_: n or 0 for type_, n in rows}, True
        data = self.data.copy()
        data.pop("type", None)
        others = type(self)(
            data, queryset=self.queryset, request=self.request, project=self.project
        )
        text = {name: (self.form.cleaned_data.get(name) or "").strip() for name in ("tag", "q")}
        if limit is not None and not lower_bounds and connection.vendor == "sqlite":
            if not any(text.values()):
                sample = others.qs.order_by().values("pk")[: limit + 1]
                if sample.count() > limit:
                    return {}, False
                return _per_type_of_ids(sample), True
        counts = _per_type(others.qs, limit, ("tagged", "tag") if text["tag"] else ())
        return counts, limit is None or sum(counts.values()) <= limit

    # The filters that select whole repositories (an image's "Last synced" is its
    # repository's), and what each tests on the repository.
    REPOSITORY_LOOKUPS = {
        "registry": "registry",
        "repository": "pk",
        "namespace": "namespace__icontains",
        "name": "name__icontains",
    }
    REPOSITORY_MOMENTS = frozenset({"synced_after", "synced_before", "synced_to"})

    def _repositories_matching(self, with_type: bool = False) -> QuerySet | None:
        """The project's repositories whose tagged images are exactly the rows, when every
        filter set (but the type, which the counts are per, unless `with_type`) selects whole
        repositories and the rows are the tagged images (the default); else None. Their image
        counts, which the sync keeps with the images, then count the rows without reading
        them."""
        repositories = Repository.objects.of_project(self.project)
        for name, value in self.form.cleaned_data.items():
            if name == "type" and with_type and value:
                repositories = repositories.filter(type__in=value)
                continue
            if name in self.not_narrowing or name == "type":
                continue
            if name == "tagged" and value in ("", None, "tagged"):
                continue
            if isinstance(value, str):
                value = value.strip()
            if value is None or value in ("", [], ()):
                continue
            if name in self.REPOSITORY_MOMENTS:
                lookup, moment = self.filters[name].comparison(value)
                repositories = repositories.filter(**{f"last_synced_at__{lookup}": moment})
            elif name in self.REPOSITORY_LOOKUPS:
                repositories = repositories.filter(**{self.REPOSITORY_LOOKUPS[name]: value})
            else:
                return None
        return repositories

    # SQLite, a page of rows under a filter on the image's own columns (a time or size range,
    # multi-arch, latest, a digest prefix, usage): SQLite reads every match through that
    # column's index and sorts them all for one page, even when most rows match (it keeps no
    # statistics of a column's values). Walking the sort's index instead, testing each row,
    # finds a page after a few hundred rows when matches are common. Which plan is cheaper
    # depends on the data, so the walk gets a budget of SQLite VM steps: past it, the usual
    # plan answers. Either plan gives the same ids, in the same order.
    WALK_PAGE_LIMIT = 2_000  # rows before the page's end: deeper pages use the usual plan
    WALK_STEP_OPS = 1000  # SQLite VM instructions between two calls of the progress handler
    WALK_BUDGET_STEPS = 400  # calls of the progress handler: about 10 ms of SQLite

    def page_ids(self, start: int, stop: int) -> list[int] | None:
        """The ids of rows start..stop by a cheaper plan than the page query's, or None (the
        page query then): on PostgreSQL, a sort that starts with the registry, one registry
        at a time (`_registry_order_ids`; SQLite walks the registry-name index, migration
        0021); on SQLite, a walk of the sort's index (`_walked_ids`)."""
        if self.invalid:
            return None
        if connection.vendor == "postgresql" and self.sort.split(",")[0].lstrip("-") == "registry":
            return self._registry_order_ids(start, stop)
        if connection.vendor == "postgresql" and self.form.cleaned_data.get("tagged") == "all":
            return self._both_tagged_ids(start, stop)
        return self._walked_ids(start, stop)

    MERGE_PAGE_LIMIT = 10_000  # rows before the page's end: deeper pages use the usual plan

    def _both_tagged_ids(self, start: int, stop: int) -> list[int] | None:
        """PostgreSQL, tagged and untagged images together, sorted by the image's own columns:
        every sort's index leads with `tagged` and PostgreSQL 15 has no skip scan, so the
        usual plan reads and sorts every image of the project (a million: 320 ms). Here the
        first `stop` rows of each of the two `tagged` ranges are read in the sort's order (two
        index walks) and the database merges them, in the same order, for the page."""
        if stop > self.MERGE_PAGE_LIMIT:
            return None
        rows = self.rows
        columns = []
        for key in rows.query.order_by:
            name = key.lstrip("-") if isinstance(key, str) else None
            if name is None and isinstance(getattr(key, "expression", None), F):
                name = key.expression.name
            if name is None or "__" in name:
                return None  # an expression, or a repository column: its join decides
            columns.append("id" if name == "pk" else name)
        columns = list(dict.fromkeys(["id", *columns]))
        halves = [
            rows.filter(tagged=tagged).values_list(*columns)[:stop] for tagged in (True, False)
        ]
        merged = halves[0].union(halves[1], all=True).order_by(*rows.query.order_by)
        return [row[0] for row in merged[start:stop]]

    def _registry_order_ids(self, start: int, stop: int) -> list[int] | None:
        """The page's ids for a sort that starts with the registry's name: a project has a
        few registries, each with a fifth of its images, and the database sorted every image
        of the first registry for one page (PostgreSQL: 200,000 rows, 300 ms at a million
        images). Here each registry's rows are read in turn, in the rest of the sort's order,
        through the repository index. A registry the page starts after is counted (up to the
        rows it must skip). A project's registry names are unique: no ties between them."""
        if self.project is None:
            return None
        rows = self.rows
        first, *rest = rows.query.order_by
        names = Registry.objects.filter(project=self.project).order_by(
            first.replace("repository__registry__", "")
        )
        skip, wanted, ids = start, stop - start, []
        for registry_id in names.values_list("pk", flat=True):
            if wanted <= 0:
                break
            group = rows.filter(
                repository__in=Repository.objects.filter(registry_id=registry_id).values("pk")
            ).order_by(*rest)
            found = list(group.values_list("pk", flat=True)[skip : skip + wanted])
            if not found and skip:
                skip -= group.order_by()[:skip].count()
                continue
            ids += found
            skip, wanted = 0, wanted - len(found)
        return ids

    def _walked_ids(self, start: int, stop: int) -> list[int] | None:
        """The ids of rows start..stop by a walk of the sort's index, or None (the usual plan
        then): on SQLite only, when a filter on the image's own columns is set (or filters of
        repositories that hold many of the rows), the sort is on the image's columns and the
        page is among the first rows."""
        if connection.vendor != "sqlite" or stop > self.WALK_PAGE_LIMIT:
            return None
        rows = self.rows
        if any("__" in name.lstrip("-") for name in rows.query.order_by):
            return None  # a repository column: its join decides the plan
        where, walked = _walk_sort_index(rows.query.where, self._walk_past_repositories(stop))
        if not walked:
            return None
        walk = under_condition(rows, where)
        connection.ensure_connection()
        calls = 0

        def give_up() -> int:
            nonlocal calls
            calls += 1
            return calls > self.WALK_BUDGET_STEPS

        connection.connection.set_progress_handler(give_up, self.WALK_STEP_OPS)
        try:
            # No atomic block around it: SQLite opens its transactions IMMEDIATE (a write
            # lock), and an interrupted SELECT rolls nothing back.
            return list(walk.values_list("pk", flat=True)[start:stop])
        except OperationalError:
            if calls <= self.WALK_BUDGET_STEPS:
                raise
            return None
        finally:
            connection.connection.set_progress_handler(None, 0)

    def _walk_past_repositories(self, stop: int) -> bool:
        """Whether the walk should test the rows' repositories too, when only filters that
        select whole repositories are set (a type, a registry, a last sync range...): SQLite
        reads every image of the chosen repositories through the repository index and sorts
        them all, which costs about as many row reads as they hold images; the walk reads
        about `stop` / (their share of the project's images). Both are known from the
        repositories' image counts (one query)."""
        if self.project is None:
            return False
        repositories = self._repositories_matching(with_type=True)
        if repositories is None or not self.narrows():
            return False
        counts = Repository.objects.of_project(self.project).aggregate(
            total=Sum("image_count"),
            matching=Sum("image_count", filter=Q(pk__in=repositories.values("pk"))),
        )
        total, matching = counts["total"] or 0, counts["matching"] or 0
        return matching > 0 and stop * total < matching * matching


# The columns every Image View query narrows by equality: the leading columns of each sort's
# index, which the walk reads through.
_WALK_KEEP = frozenset({"project_id", "tagged"})


def _walk_sort_index(node: WhereNode, repositories: bool = False) -> tuple[WhereNode, bool]:
    """`node` with every condition on an image column (but project and tagged) compared
    through SQLite's unary "+", which keeps the planner from reading that column's index, and
    whether there was such a condition. Conditions on the repository (a subquery of
    repositories) stay as they are unless `repositories`: the walk is for the image's own
    columns, and for repositories that hold many of the rows (`_walk_past_repositories`)."""
    changed = False
    children = []
    for child in node.children:
        if isinstance(child, WhereNode):
            child, walked = _walk_sort_index(child, repositories)
            changed |= walked
        elif (
            isinstance(child, Lookup)
            and isinstance(child.lhs, Col)
            and child.lhs.alias == Image._meta.db_table
            and child.lhs.target.column not in _WALK_KEEP
            and (repositories or child.lhs.target.column != "repository_id")
        ):
            child = copy.copy(child)
            child.lhs = Func(
                child.lhs, template="+%(expressions)s", output_field=child.lhs.output_field
            )
            changed = True
        children.append(child)
    clone = WhereNode(children, connector=node.connector, negated=node.negated)
    return clone, changed


class SyncedAsOfFilter(MomentFilter):
    """A "Last synced" bound as of the filterset's moment: the repositories whose value then
    passes it (`ImageAsOfFilter.repositories_synced`), read in the as-of indexes; with rows
    of a removed connection, each row's value (`ImageAsOfFilter.last_synced`)."""

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if value is None:
            return qs
        lookup, bound = self.comparison(value)
        ids = self.parent.repositories_synced(lookup, bound)
        if ids is not None:
            # The shorter list: those that pass, or those that do not (every row has one of
            # the project's repositories here); none when every repository passes.
            every = self.parent.repositories_synced("all", bound)
            repository = _not_indexed("repository_id", BigIntegerField())
            qs = qs.alias(synced_repository=repository)
            if len(ids) == len(every):
                return qs
            if 2 * len(ids) > len(every):
                failing = sorted(set(every) - set(ids))
                return qs.exclude(synced_repository__in=failing)
            return qs.filter(synced_repository__in=ids)
        synced = qs.alias(synced_as_of=self.parent.last_synced())
        return synced.filter(**{f"synced_as_of__{lookup}": bound})


class RepositoryRank(Func):
    """A number per repository id (`ranks`), NULL for the others, written inline (no
    parameters): `CASE repository_id WHEN 7 THEN 0 ... ELSE NULL END`."""

    output_field = IntegerField()

    def __init__(self, ranks: dict[int, int]):
        whens = " ".join(f"WHEN {int(pk)} THEN {int(rank)}" for pk, rank in sorted(ranks.items()))
        # Without any: still an expression of the column (PostgreSQL refuses ORDER BY NULL).
        whens = whens or "WHEN NULL THEN 0"
        super().__init__(F("repository_id"), template=f"CASE %(expressions)s {whens} ELSE NULL END")


class AsOfSortFilter(SortFilter):
    """A sort of the inventory as of a moment; "Last synced" is computed only when sorted by."""

    def filter(self, qs: QuerySet, value) -> QuerySet:
        fields = self.extra["table"].order_by(value or self.extra["table"].default_sort)
        if any(name.lstrip("-") == "synced_as_of" for name in fields):
            # Selectable: the page's ids may be read with it (ImageAsOfFilter._covered_ids).
            qs = qs.annotate(synced_as_of=self.parent.synced_order())
        return qs.order_by(*fields)


def _from_as_of_index(kind: type[django_filters.Filter]) -> type[django_filters.Filter]:
    """`kind` over an alias (its field_name) of a column that the as-of indexes hold, written
    so that SQLite reads it there, not through the column's own index: SQLite keeps no
    statistics of a column's values and took a size range for narrow (reading 200,000 rows
    through (project, size) to keep 24,000: 1.4 s instead of 0.1 s)."""

    class FromAsOfIndex(kind):
        def filter(self, qs: QuerySet, value) -> QuerySet:
            if value is None:
                return qs
            column = ImageInterval._meta.get_field(AS_OF_ALIASES[self.field_name])
            alias = _not_indexed(column.attname, type(column)())
            return super().filter(qs.alias(**{self.field_name: alias}), value)

    return FromAsOfIndex


AS_OF_ALIASES = {"as_of_size": "size", "as_of_updated": "registry_updated_at"}


class ImageAsOfFilter(ImageFilter):
    """Image View as of a moment: the same parameters over the intervals open at `as_of`
    (absent: now). The repository filters read the interval's own copy of the repository's
    identity, so the rows of a removed connection still filter and display."""

    table = IMAGES_AS_OF
    synced_after, synced_before, synced_to = _moments("synced_as_of", _("Synced"), SyncedAsOfFilter)
    size_min = _from_as_of_index(WholeNumberFilter)(
        field_name="as_of_size", lookup_expr="gte", label=_("Size at least (bytes)")
    )
    size_max = _from_as_of_index(WholeNumberFilter)(
        field_name="as_of_size", lookup_expr="lte", label=_("Size at most (bytes)")
    )
    size_min_mib = _from_as_of_index(MibFilter)(
        field_name="as_of_size", lookup_expr="gte", label=_("Size from (MiB)")
    )
    size_max_mib = _from_as_of_index(MibFilter)(
        field_name="as_of_size", lookup_expr="lte", label=_("Size to (MiB)")
    )
    updated_after, updated_before, updated_to = _moments(
        "as_of_updated", _("Updated"), _from_as_of_index(MomentFilter)
    )
    ordering = AsOfSortFilter(IMAGES_AS_OF)

    class Meta:
        model = ImageInterval
        fields: list[str] = []
        form = AsOfForm

    def __init__(self, *args, branch: str | None = None, shared: dict | None = None, **kwargs):
        self.branch = branch  # only part of the intervals at the moment (see type_counts)
        self.only_repositories: set[int] | None = None  # the rows' repositories, when known
        # What this filterset and its parts (`_part_filterset`) compute once per request.
        self.shared = shared if shared is not None else {}
        super().__init__(*args, **kwargs)

    def _part_filterset(
        self,
        branch: str,
        queryset: QuerySet | None = None,
        without: str = "",
        ordered: bool = False,
    ) -> ImageAsOfFilter:
        """The same filters (but `without`) over one part of the moment's intervals (`branch`,
        see `_part`), at this filterset's instant (a day of today ends "now"); with the same
        sort if `ordered` (a part read for ids or counts needs none)."""
        data = self.data.copy()
        data.pop(without, None)
        if not ordered:
            data.pop("ordering", None)
        data["as_of"] = self.moment.isoformat()
        # One filterset (and its queryset) per part and data, over the whole queryset: the
        # rows, the counts and the page ask for the same parts.
        values = data.lists() if hasattr(data, "lists") else data.items()
        key = ("part", branch, tuple(sorted((k, str(v)) for k, v in values)))
        if queryset is None and key in self.shared:
            return self.shared[key]
        part = type(self)(
            data,
            queryset=self.queryset if queryset is None else queryset,
            request=self.request,
            project=self.project,
            branch=branch,
            shared=self.shared,
        )
        if queryset is None:
            self.shared[key] = part
        return part

    def repositories_synced(self, lookup: str, bound: dt.datetime) -> list[int] | None:
        """The repositories whose last sync as of the moment passes `lookup` (gte, lt, lte;
        "all": every repository of the project) `bound`, when every row has a repository
        (else None: each row is compared)."""
        if self.project is None:
            return None
        synced, removed = self._synced_values()
        if removed:
            return None
        if lookup == "all":
            return sorted(synced)
        passes = {"gte": operator.ge, "lt": operator.lt, "lte": operator.le}[lookup]
        return sorted(pk for pk, last in synced.items() if last is not None and passes(last, bound))

    def last_synced(self) -> Expression:
        """The rows' "Last synced" as of the moment, from their repositories' values, which
        are read once (see `last_synced_by_repository`)."""
        if self.project is None:
            return last_synced_as_of(self.moment)
        return last_synced_by_repository(self.moment, *self._synced_values())

    def _synced_values(self) -> tuple[dict, bool]:
        """The project's repositories' last sync as of the moment (`repositories_synced_as_of`)
        and whether some rows have no repository (a removed connection), read once."""
        key = ("synced", self.moment)
        if key not in self.shared:
            synced = repositories_synced_as_of(self.project, self.moment)
            self.shared[key] = (synced, self._has_removed())
        return self.shared[key]

    def synced_order(self) -> Expression:
        """What the rows sort by for "Last synced": without a removed connection, the rank of
        their repository's value among the project's (NULL: never synced then), written
        inline by repository id (`RepositoryRank`: a CASE of a few thousand branches that
        Django would take longer to build than the database to run on a page's rows); else
        the values themselves (`last_synced`)."""
        if self.project is None:
            return self.last_synced()
        synced, removed = self._synced_values()
        if removed:
            return self.last_synced()
        ranks = {last: rank for rank, last in enumerate(sorted(set(synced.values()) - {None}))}
        only = self.only_repositories  # a part over these repositories' rows needs no others
        by_repository = {
            pk: ranks[last]
            for pk, last in synced.items()
            if last is not None and (only is None or pk in only)
        }
        return RepositoryRank(by_repository)

    @property
    def moment(self) -> dt.datetime:
        cleaned = getattr(self.form, "cleaned_data", {})
        return cleaned.get("as_of") or timezone.now()

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        """ImageInterval.objects.at(moment) and the filters, written as the ids of the parts of
        the moment's intervals (see imagesync.history.stabbing_parts: still open, and the
        closed ones registered at the nodes of the moment's path in a relational interval
        tree), each read from ranges of a covering index that return only matching rows, and
        narrowed there by every filter; the page sorts what they return. On SQLite the page
        reads those rows (about the inventory's size, whatever the moment) and sorts them;
        PostgreSQL may instead walk the sort's index and test ids against the parts. Testing
        at() row by row, or walking the sort's index with the filters left outside the parts,
        passes for a moment long ago every interval opened since (most of a million)."""
        if self.branch is not None:
            return super().filter_queryset(self._part(queryset, self.branch))
        if self._narrow_lead():
            # A digest prefix or one repository: their own index finds a few hundred
            # intervals of the whole history at most, each tested against the moment.
            part = self._part(queryset, "window")
            return super().filter_queryset(part)
        # SQLite follows the ids unless told (unary "+") to walk the sort's index instead,
        # which is cheaper only when the newest rows of the default sort are the moment's.
        member = _not_indexed("id", BigIntegerField()) if self._walk_newest() else F("id")
        parts = Q()
        for branch in STABBING_PARTS:
            part = self._part_filterset(branch, queryset)
            parts |= Q(member__in=part.qs.order_by().values("pk"))
        # Every filter is in the parts (each narrows the rows its part reads); only the sort
        # is left to the page.
        return self.filters["ordering"].filter(
            queryset.alias(member=member).filter(parts), self.form.cleaned_data.get("ordering")
        )

    WALK_OPENED_SINCE = 20000

    def _narrow_lead(self) -> bool:
        """Whether a filter that its own index answers with few rows of the whole history is
        set: a digest prefix of 3 hex characters or more ((project, digest): one interval in
        4,096) or a repository ((repository, tag, valid_from))."""
        if self.invalid:
            return False
        data = self.form.cleaned_data
        digest = (data.get("digest") or "").strip().rpartition(":")[2]
        return len(digest) >= 3 or bool(data.get("repository"))

    def _walk_newest(self) -> bool:
        """On SQLite, for the default sort (newest push first), whether few intervals were
        opened after the moment: the walk down the sort's index then passes those few and
        finds the moment's rows (3 days back: 40 ms, against ~150 ms to read the moment's
        ~100,000 rows); for a moment long ago it would pass most of the history."""
        if connection.vendor != "sqlite" or self.sort != self.table.default_sort:
            return False
        opened = ImageInterval.objects.filter(project=self.project, valid_from__gt=self.moment)
        return opened.values("pk")[: self.WALK_OPENED_SINCE].count() < self.WALK_OPENED_SINCE

    def _part(self, queryset: QuerySet, branch: str) -> QuerySet:
        if branch == "window":
            # The intervals of a window of the sort's index that hold the moment, tested row
            # by row (unary "+": SQLite must follow the window's ids, not the time indexes).
            started = _not_indexed("valid_from", DateTimeField())
            ended = _not_indexed("valid_to", DateTimeField())
            return queryset.alias(started=started, ended=ended).filter(
                Q(ended__isnull=True) | Q(ended__gt=self.moment), started__lte=self.moment
            )
        started = _not_indexed("valid_from", DateTimeField())
        return stabbing_parts(queryset, self.moment, valid_from=started)[branch]

    # Sorts whose index is not ordered by time: about one interval in nine of any stretch of
    # it holds a moment long ago (the moment's rows among the whole history), so the first
    # pages are found in the first few thousand entries. A time sort ("updated", "created")
    # would pass every interval opened since the moment first.
    WINDOW_SORTS = frozenset({"tag", "-tag", "size", "-size", "digest", "-digest"})
    WINDOWS = (2000, 20000)  # entries of the sort's index read, the larger if needed
    WINDOW_MAX_STOP = 1000

    def page_ids(self, start: int, stop: int) -> list[int] | None:
        """The ids of rows [start:stop] by a cheaper plan than `rows`, or None (the page then
        takes them from `rows`): with a filter that reads rows, its few matches, sorted
        (`_matches`); for a sort by the repository's names or last sync, the rows of the
        repositories that hold the page (`_repository_order_ids`); a bounded walk of the sort's
        index for the first pages of a sort not ordered by time (`_window_ids`); else the
        moment's parts read with the sort's columns when the as-of indexes hold them
        (`_covered_ids`)."""
        if self.invalid or self._narrow_lead():
            return None  # (a narrow lead's rows are few: the page sorts them)
        matches = self._matches()
        if matches is not None:
            chosen = self.form.cleaned_data.get("type") or list(matches)
            ids = [pk for type_ in chosen for pk in matches.get(type_, ())]
            rows = self.queryset.filter(pk__in=ids)
            ordered = self.filters["ordering"].filter(rows, self.form.cleaned_data.get("ordering"))
            return list(ordered.values_list("pk", flat=True)[start:stop])
        ids = self._repository_order_ids(start, stop)
        if ids is not None:
            return ids
        # A search or a repository's names keep a few of the moment's rows, fewer than a
        # window of the sort's index holds: the parts give them at once.
        searched = any(self.form.cleaned_data.get(name) for name in self.ROW_FILTERS)
        if self.sort in self.WINDOW_SORTS and stop <= self.WINDOW_MAX_STOP and not searched:
            ids = self._window_ids(start, stop)
            if ids is not None:
                return ids
        return self._covered_ids(start, stop)

    # Filters that the as-of indexes do not hold: each of the moment's rows is read to test them.
    ROW_FILTERS = ("q", "namespace", "name")
    MATCHES_BUDGET = 5000

    def _matches(self) -> dict[str, list[int]] | None:
        """With a filter that reads the moment's rows (search, namespace, image name, when
        the as-of indexes cannot answer them: see `search` and `filter_repository`), the
        ids of the rows that pass every filter but the type, by type, read once for both the
        type counts and the page (each would read the moment's ~100,000 rows again); None
        without such a filter or when more than MATCHES_BUDGET rows match."""
        if self.invalid or self._narrow_lead():
            return None
        if not any(self.form.cleaned_data.get(name) for name in self.ROW_FILTERS):
            return None
        self.qs  # noqa: B018 (building it, the filters note whether they read rows)
        if not self.shared.get("reads rows"):
            return None
        if "matches" not in self.shared:
            parts = [
                self._part_filterset(branch, without="type")
                .qs.order_by()
                .values_list("id", "repository_type")
                for branch in STABBING_PARTS
            ]
            rows = list(parts[0].union(*parts[1:], all=True)[: self.MATCHES_BUDGET + 1])
            matches: dict[str, list[int]] | None = {}
            for pk, type_ in rows:
                matches.setdefault(type_, []).append(pk)
            self.shared["matches"] = None if len(rows) > self.MATCHES_BUDGET else matches
        return self.shared["matches"]

    def _window_ids(self, start: int, stop: int) -> list[int] | None:
        """The first N entries of the project's intervals in the page's order (ids from the
        sort's index), those of them that hold the moment and pass the filters (their rows),
        in that order. Exact when they are at least `stop` (they are the first of all, the
        order being total: it ends with id) or when the window held every interval; None when
        the windows held too few."""
        fields = self.table.order_by(self.sort)
        ordered = self.queryset.order_by(*fields).values("pk")
        for size in self.WINDOWS:
            window = self._part_filterset("window", self.queryset.filter(pk__in=ordered[:size]))
            ids = list(window.qs.order_by(*fields).values_list("pk", flat=True)[:stop])
            if len(ids) >= stop or not ordered[size : size + 1].exists():
                return ids[start:stop]
        return None

    # The sort fields the as-of indexes hold (ImageInterval.Meta, AS_OF_COVERED).
    # "Last synced" is its repository's value, read from the repository id they hold.
    COVERED_SORT_FIELDS = frozenset(
        {"registry_updated_at", "size", "tag", "digest", "id", "synced_as_of"}
    )

    def _covered_ids(
        self,
        start: int,
        stop: int,
        fields: list[str] | None = None,
        queryset: QuerySet | None = None,
    ) -> list[int] | None:
        """The page's ids straight from the moment's parts, each selecting the sort's columns
        (UNION ALL, sorted, sliced), when the as-of indexes hold them: then neither the page
        nor the filters those indexes hold read a row; the full plan (`rows`) would read the
        row of each of the moment's ~100,000 intervals to sort them (0.3 s on SQLite).
        `fields` and `queryset`: another order (default: the sort's) over fewer intervals."""
        fields = self.table.order_by(self.sort) if fields is None else fields
        names = list(dict.fromkeys(name.lstrip("-") for name in fields))
        if not self.COVERED_SORT_FIELDS.issuperset(names):
            return None
        ordered = "synced_as_of" in names  # an annotation of the sort's
        parts = [
            self._part_filterset(branch, queryset, ordered=ordered)
            .qs.order_by()
            .values_list(*names)
            for branch in STABBING_PARTS
        ]
        # Sorted outside the union: asked to sort a UNION ALL itself, SQLite merges its parts
        # in order, walking the sort's index in each (row reads again), and PostgreSQL may too.
        # The subquery's "no limit" keeps both from pulling its parts up into the sort.
        try:
            sql, params = parts[0].union(*parts[1:], all=True).query.sql_with_params()
        except EmptyResultSet:
            return []  # a filter no row can pass (e.g. no repository of that namespace)
        fence = "LIMIT -1" if connection.vendor == "sqlite" else "OFFSET 0"
        quote = connection.ops.quote_name
        order = ", ".join(
            f"{quote(field.lstrip('-'))} {'DESC' if field.startswith('-') else 'ASC'}"
            for field in fields
        )
        query = (
            f"SELECT {quote('id')} FROM ({sql} {fence}) moment ORDER BY {order} LIMIT %s OFFSET %s"
        )
        with connection.cursor() as cursor:
            cursor.execute(query, [*params, stop - start, start])
            return [row[0] for row in cursor.fetchall()]

    def filter_types(self, qs: QuerySet, name: str, value: list[str]) -> QuerySet:
        return qs.filter(repository_type__in=value) if value else qs

    def filter_registry(self, qs: QuerySet, name: str, value: Registry | None) -> QuerySet:
        if value is None:
            return qs
        # Read in the as-of indexes (see _from_as_of_index), not through (registry).
        registry = _not_indexed("registry_id", BigIntegerField())
        return qs.alias(as_of_registry=registry).filter(as_of_registry=value.pk)

    def filter_repository(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        """The namespace or image name an interval was written with contains `value`: by the
        repository ids whose names (RepositoryName) all match, read in the as-of indexes;
        only the rows whose repository has several names, none listed, or none at all (a
        removed connection) are read to test their own copy."""
        value = value.strip()
        if not value:
            return qs
        if self.project is None:
            return qs.filter(**{f"{name}__icontains": value})
        every, unsure = self._repositories_named(name, value)
        repository = _not_indexed("repository_id", BigIntegerField())
        condition = Q(named_repository__in=every)
        if unsure is not None:
            self.shared["reads rows"] = True
            own = ImageInterval.objects.filter(pk=OuterRef("pk"), **{f"{name}__icontains": value})
            condition |= unsure & Exists(own)
        return qs.alias(named_repository=repository).filter(condition)

    def _repositories_named(self, field: str, value: str) -> tuple[list[int], Q | None]:
        """The repositories whose every listed name's `field` contains `value`, and the rows
        that must be read to tell (None: none can be, no row then needs reading)."""
        key = ("named", field, value)
        if key not in self.shared:
            names, missing = self._listed_names()
            listed = self._repository_names()
            matching = listed.filter(**{f"{field}__icontains": value})
            matched = Counter(matching.values_list("repository_id", flat=True))
            every = sorted(pk for pk, n in matched.items() if n == names[pk])
            some = sorted(pk for pk, n in matched.items() if n < names[pk])
            self.shared[key] = (every, some, sorted(names), bool(some) or missing)
        every, some, listed_ids, read = self.shared[key]
        if not read:
            return every, None
        unsure = (
            Q(named_repository__in=some)
            | Q(repository__isnull=True)
            | ~Q(named_repository__in=listed_ids)
        )
        return every, unsure

    def _repository_names(self) -> QuerySet:
        """The names (RepositoryName) listed for the project's repositories."""
        return RepositoryName.objects.filter(repository__registry__project=self.project)

    def _listed_names(self) -> tuple[Counter, bool]:
        """How many names (RepositoryName) each repository of the project has listed, and
        whether some intervals' names are not listed: a repository with none, or intervals
        without a repository (a removed connection)."""
        if "names" not in self.shared:
            listed = self._repository_names()
            names = Counter(listed.values_list("repository_id", flat=True))
            repositories = Repository.objects.filter(registry__project=self.project)
            missing = repositories.exclude(pk__in=list(names)).exists() or self._has_removed()
            self.shared["names"] = (names, missing)
        return self.shared["names"]

    # The sort fields that are a repository's (an interval's path is its repository's, which
    # never changes; its namespace and name are those listed when a repository has one).
    NAME_SORT_FIELDS = {
        "namespace": "namespace",
        "name": "name",
        "repository_path": "repository__path",
    }

    def _names_order(self) -> list[str] | None:
        """For a sort that starts with the repository's names (namespace, name, path), that
        start as RepositoryName's order_by, when every repository has one listed name and every
        interval a repository (each row's names are then its repository's); else None."""
        if self.invalid or self.project is None or self._narrow_lead():
            return None
        order = []
        for field in self.table.order_by(self.sort):
            name = self.NAME_SORT_FIELDS.get(field.lstrip("-"))
            if name is None:
                break
            order.append(("-" if field.startswith("-") else "") + name)
        if not order:
            return None
        names, missing = self._listed_names()
        return None if missing or any(n != 1 for n in names.values()) else order

    def _per_repository_type(self) -> dict[tuple[int, str], int]:
        """(repository id, type) -> the moment's rows that pass every filter but the type,
        counted in the as-of indexes (each part apart, like `type_counts`)."""
        if "per_repository" not in self.shared:
            counts: dict[tuple[int, str], int] = {}
            for branch in STABBING_PARTS:
                part = self._part_filterset(branch, without="type").qs.order_by()
                rows = part.values_list("repository_id", "repository_type").annotate(n=Count("*"))
                for repository_id, type_, n in rows:
                    counts[repository_id, type_] = counts.get((repository_id, type_), 0) + n
            self.shared["per_repository"] = counts
        return self.shared["per_repository"]

    def _synced_order(self) -> list[list[int]] | None:
        """For a sort that starts with "Last synced", the project's repositories in that order
        (their last sync as of the moment, NULL where the database puts it: PostgreSQL after
        every value, SQLite before), those with the same value together, when every interval
        has a repository (a removed connection's rows compute theirs from their own row);
        else None."""
        if self.invalid or self.project is None or self._narrow_lead():
            return None
        first = self.table.order_by(self.sort)[0]
        if first.lstrip("-") != "synced_as_of":
            return None
        synced, removed = self._synced_values()
        if removed:
            return None
        descending = first.startswith("-")
        values: dict = {}
        for repository_id, last in synced.items():
            values.setdefault(last, []).append(repository_id)
        never = values.pop(None, [])
        groups = [sorted(values[last]) for last in sorted(values, reverse=descending)]
        if never:
            nulls_first = (connection.vendor == "postgresql") == descending
            groups.insert(0 if nulls_first else len(groups), sorted(never))
        return groups

    def _repository_groups(self) -> list[list[int]] | None:
        """For a sort that starts with a repository's value (its names, `_names_order`, or its
        last sync, `_synced_order`), the project's repositories in the sort's order, those with
        equal values together; else None."""
        if "groups" not in self.shared:
            groups = self._synced_order()
            order = None if groups is not None else self._names_order()
            if order is not None:
                listed = self._repository_names()
                keys = [name.lstrip("-") for name in order]
                rows = listed.order_by(*order, "repository_id").values_list("repository_id", *keys)
                named: list[tuple[list, list[int]]] = []  # (names, their repositories)
                for repository_id, *names in rows:
                    if not named or named[-1][0] != names:
                        named.append((names, []))
                    named[-1][1].append(repository_id)
                groups = [ids for _names, ids in named]
            self.shared["groups"] = groups
        return self.shared["groups"]

    def _group_rest(self) -> list[str]:
        """The sort's fields after those of `_repository_groups`' values: the order of the
        rows within a group."""
        fields = self.table.order_by(self.sort)
        if self._synced_order() is not None:
            return fields[1:]
        leading = len(self._names_order() or ())
        return fields[leading:]

    # A group of repositories with more of the moment's rows than this is read from the
    # moment's parts in the as-of indexes (`_covered_ids`) rather than through its
    # repositories' whole history (each row read and tested against the moment).
    GROUP_WINDOW_ROWS = 1000

    def _repository_order_ids(self, start: int, stop: int) -> list[int] | None:
        """The page's ids for a sort that starts with a repository's value
        (`_repository_groups`): the repositories in that order, the moment's rows of each
        counted from the as-of indexes, and only the rows of the groups that hold the page
        read, in the page's order: a small group's through its repositories' own index (their
        whole history, each row tested against the moment), a large one's from the moment's
        parts. Repositories with equal values go together: their rows interleave by the rest
        of the sort. When every repository has the same value (one sync stored them all),
        the rest of the sort alone orders the page."""
        groups = self._repository_groups()
        if groups is None:
            return None
        rest = self._group_rest()
        if len(groups) == 1:
            ids = self._covered_ids(start, stop, rest)
            if ids is not None:
                return ids
        chosen_types = self.form.cleaned_data.get("type")
        counts: dict[int, int] = {}
        for (repository_id, type_), n in self._per_repository_type().items():
            if not chosen_types or type_ in chosen_types:
                counts[repository_id] = counts.get(repository_id, 0) + n
        position, found = 0, []
        small: list[int] = []  # the repositories of consecutive small groups, read together
        small_first = small_count = 0
        for ids in groups:
            n = sum(counts.get(pk, 0) for pk in ids)
            if position >= stop:
                break
            if not n or position + n <= start:
                position += n
                continue
            first, last = max(start - position, 0), min(stop - position, n)
            position += n
            large = None
            if n > self.GROUP_WINDOW_ROWS:
                repository = _not_indexed("repository_id", BigIntegerField())
                rows = self.queryset.alias(grouped=repository).filter(grouped__in=ids)
                large = self._covered_ids(first, last, rest, rows)
            if large is None:
                small_first = small_first if small else first
                small += ids
                small_count += last - first
                continue
            found += self._repositories_rows(small, small_first, small_count)
            small, small_count = [], 0
            found += large
        return found + self._repositories_rows(small, small_first, small_count)

    def _repositories_rows(self, repositories: list[int], first: int, count: int) -> list[int]:
        """The ids of the moment's rows [first:first + count] of `repositories`, in the page's
        order, read through their own index (their whole history, tested against the moment)."""
        if not repositories or count <= 0:
            return []
        rows = self.queryset.filter(repository_id__in=repositories)
        part = self._part_filterset("window", rows, ordered=True)
        part.only_repositories = set(repositories)
        return list(part.qs.values_list("pk", flat=True)[first : first + count])

    # Repositories a search names by their ids (up to this many; more: each row is read).
    SEARCH_REPOSITORY_IDS = 5000

    def search(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        """Free text matches the interval's repository path, tag or digest, tested in the as-of
        indexes alone: the tag and the digest there (migration 0027), the path as the ids of
        the repositories whose path holds it (an interval's path is its repository's); only
        the rows of a removed connection are read, for their own path. While every digest of
        the project's history is `sha256:` and 64 lowercase hex digits (`has_odd_digests`),
        the digest is compared only when such a digest can hold the text
        (`digests_containing`), and then case-sensitively with the text in lowercase (the
        same answer; PostgreSQL's case-insensitive test cost ~1.5 µs an entry)."""
        value = value.strip()
        if not value:
            return qs
        plain = Q(repository_path__icontains=value) | Q(tag__icontains=value)
        if self.project is None:
            self.shared["reads rows"] = True
            return qs.filter(plain | Q(digest__icontains=value))
        digests = "odd" if self._odd_digests() else digests_containing(value)
        if digests == "all":
            return qs
        if digests == "some" and value.isascii():
            in_digest = Q(digest__contains=value.lower())
        else:
            in_digest = Q() if digests == "none" else Q(digest__icontains=value)
        key = ("searched", value)  # read once for the parts of every filterset
        if key not in self.shared:
            repositories = Repository.objects.filter(
                registry__project=self.project, path__icontains=value
            ).order_by()
            limit = self.SEARCH_REPOSITORY_IDS + 1
            self.shared[key] = list(repositories.values_list("pk", flat=True)[:limit])
        ids = self.shared[key]
        if len(ids) > self.SEARCH_REPOSITORY_IDS:
            self.shared["reads rows"] = True
            return qs.filter(plain | in_digest)
        repository = _not_indexed("repository_id", BigIntegerField())
        condition = Q(searched_repository__in=ids) | Q(tag__icontains=value) | in_digest
        if self._has_removed():
            self.shared["reads rows"] = True
            own = ImageInterval.objects.filter(pk=OuterRef("pk"), repository_path__icontains=value)
            condition |= Q(repository__isnull=True) & Exists(own)
        return qs.alias(searched_repository=repository).filter(condition)

    def _odd_digests(self) -> bool:
        if "odd digests" not in self.shared:
            self.shared["odd digests"] = has_odd_digests(self.project.pk)
        return self.shared["odd digests"]

    def _has_removed(self) -> bool:
        """Whether some of the project's intervals lost their repository with its connection."""
        if "removed" not in self.shared:
            # The project's, whichever part asks first (a part may read fewer intervals).
            removed = ImageInterval.objects.filter(project=self.project, repository__isnull=True)
            self.shared["removed"] = removed.exists()
        return self.shared["removed"]

    def type_counts(self) -> dict[str, int]:
        """As ImageFilter.type_counts, always one GROUP BY type over the intervals at the
        moment (the repositories' image counts are today's)."""
        if self.invalid or self.project is None:
            return {}
        matches = self._matches()
        if matches is not None:
            return {type_: len(ids) for type_, ids in matches.items()}
        counts: dict[str, int] = {}
        groups = self._repository_groups()
        if groups is not None and len(groups) > 1:  # the page needs them per repository
            for (_repository_id, type_), n in self._per_repository_type().items():
                counts[type_] = counts.get(type_, 0) + n
            return counts
        # Each part of the moment's intervals apart: ranges of a covering index, counted from
        # the index alone, where at() would be a scan of every interval of the project; with
        # a digest prefix or a repository, the few rows their index finds.
        for branch in ("window",) if self._narrow_lead() else STABBING_PARTS:
            others = self._part_filterset(branch, without="type")
            rows = others.qs.order_by().values_list("repository_type").annotate(n=Count("*"))
            for type_, n in rows:
                counts[type_] = counts.get(type_, 0) + n
        return counts

    def counted_types(
        self, limit: int | None, lower_bounds: bool = True
    ) -> tuple[dict[str, int], bool]:
        """Always exact: the moment's rows are counted in the as-of indexes."""
        return self.type_counts(), True

    def with_details(self, queryset: QuerySet) -> QuerySet:
        return queryset.annotate(last_synced_at=last_synced_as_of(self.moment))

    def present(self, interval: ImageInterval) -> ImageInterval:
        """`interval` shaped like an Image for Image View's table: its `repository` (with its
        registry) is the identity the interval kept, not today's row (or none, once the
        connection was removed), so the page shows what the CSV exports."""
        repository = Repository(
            pk=interval.repository_id,
            registry_id=interval.registry_id,
            type=interval.repository_type,
            path=interval.repository_path,
            namespace=interval.namespace,
            name=interval.name,
        )
        repository.registry = Registry(pk=interval.registry_id, name=interval.registry_name)
        interval.repository = repository
        interval.repository_id = repository.pk
        interval.short_digest = interval.digest.split(":", 1)[-1][:12]
        return interval


def image_filter_class(data) -> type[ImageFilter]:
    """The live Image View, or the inventory as of a moment when `as_of` is given (an invalid
    one is then the as-of FilterSet's form error)."""
    return ImageAsOfFilter if str(data.get("as_of") or "").strip() else ImageFilter


class RepositoryFilter(ListFilterSet):
    """Repositories (the sync panel's picker and the API): type, registry, namespace, name,
    free text; repositories a complete listing no longer showed only when asked for."""

    table = REPOSITORIES

    q = django_filters.CharFilter(
        field_name="path", lookup_expr="icontains", label=_("Path contains")
    )
    type = _one_or_more(RepositoryType.choices, _("Type"), _("All types"))
    registry = _registry_filter(field_name="registry")
    namespace = django_filters.CharFilter(lookup_expr="icontains", label=_("Namespace"))
    name = django_filters.CharFilter(lookup_expr="icontains", label=_("Name"))
    include_removed = BooleanFilter(
        method="filter_removed",
        label=_("Include removed"),
        help_text=_("true: also repositories a complete listing no longer showed."),
    )
    ordering = SortFilter(REPOSITORIES)

    page_fields = "type registry namespace name"

    class Meta:
        model = Repository
        fields: list[str] = []
        form = UnderscorePrefixForm

    @property
    def qs(self) -> QuerySet:
        queryset = super().qs
        if not getattr(self.form, "cleaned_data", {}).get("include_removed"):
            queryset = queryset.filter(removed_at__isnull=True)
        return queryset

    def filter_removed(self, qs: QuerySet, name: str, value) -> QuerySet:
        return qs  # applied in qs, so that leaving it out hides removed repositories


class TaskFilter(ListFilterSet):
    """Manage Task: status, trigger, active or not, creation time."""

    table = TASKS
    aliases = {"sort": "ordering", "created_from": "created_after"}

    status = _one_or_more(SyncTask.Status.choices, _("Status"), _("Any status"))
    trigger = django_filters.ChoiceFilter(
        choices=SyncTask.Trigger.choices, empty_label=_("Any trigger"), label=_("Trigger")
    )
    active = BooleanFilter(
        method="filter_active", label=_("Active"), help_text=_("true: queued or running.")
    )
    created_after, created_before, created_to = _moments("created_at", _("Created"))
    ordering = SortFilter(TASKS)

    page_fields = "status trigger created_after created_to"

    class Meta:
        model = SyncTask
        fields: list[str] = []

    def filter_active(self, qs: QuerySet, name: str, value) -> QuerySet:
        if value is None:
            return qs
        if value:
            return qs.filter(status__in=SyncTask.ACTIVE_STATUSES)
        return qs.exclude(status__in=SyncTask.ACTIVE_STATUSES)


class TaskResultFilter(ListFilterSet):
    """A task's repositories, by status and type."""

    table = TASK_RESULTS

    status = _one_or_more(SyncTaskRepository.Status.choices, _("Status"), _("Any status"))
    type = _one_or_more(
        RepositoryType.choices, _("Repository type"), _("All types"), field_name="repository_type"
    )
    ordering = SortFilter(TASK_RESULTS)

    page_fields = "status"

    class Meta:
        model = SyncTaskRepository
        fields: list[str] = []


# --- history --------------------------------------------------------------------------------


# Digest algorithms the registries use, with the length of their hex part.
DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}


class DigestPrefixField(forms.CharField):
    """A digest (`sha256:<hex>`) or its leading hex characters, at least `min_hex` of them;
    returned lower-case. Anything else is an error that says what to type, rather than a
    search that silently finds nothing."""

    def __init__(self, *args, min_hex: int = 1, **kwargs):
        self.min_hex = min_hex
        super().__init__(*args, **kwargs)

    def to_python(self, value) -> str:
        text = super().to_python(value).strip().lower()
        if not text:
            return ""
        algorithm, colon, hex_part = text.rpartition(":")
        if colon and algorithm not in DIGEST_ALGORITHMS:
            raise forms.ValidationError(
                _("A digest starts with sha256: or sha512: (or give only its hex characters).")
            )
        if not re.fullmatch(r"[0-9a-f]*", hex_part):
            raise forms.ValidationError(
                _("A digest is made of hex characters (0-9, a-f) after sha256: or sha512:.")
            )
        if len(hex_part) < self.min_hex:
            raise forms.ValidationError(
                gettext("Give at least %(count)s hex characters.") % {"count": self.min_hex}
            )
        if len(hex_part) > DIGEST_ALGORITHMS.get(algorithm, max(DIGEST_ALGORITHMS.values())):
            raise forms.ValidationError(_("That is longer than a digest."))
        return text


def digest_prefix_q(field_name: str, value: str) -> Q:
    """Rows whose `field_name` starts with the digest or hex prefix `value`, written as a range
    so that a (project, digest) index serves it on SQLite (whose LIKE ignores case and so
    cannot use the index) as on PostgreSQL."""
    prefixes = [value] if ":" in value else [f"{name}:{value}" for name in DIGEST_ALGORITHMS]
    condition = Q()
    for prefix in prefixes:
        condition |= Q(**{f"{field_name}__gte": prefix, f"{field_name}__lt": _prefix_end(prefix)})
    return condition


class DigestPrefixFilter(django_filters.CharFilter):
    field_class = DigestPrefixField


DISTINCT_TAGS_BUDGET = 5000


def distinct_tags(project: Project, budget: int = DISTINCT_TAGS_BUDGET) -> list[str] | None:
    """The distinct tags of the project's changes, by a loose scan of the (project, tag)
    index (each next tag is one index probe, in a recursive query both databases run; the
    first one's `>= ''` makes SQLite read it through that index too), or None when there are
    more than `budget` of them."""
    quote = connection.ops.quote_name
    table, tag, project_id = (quote(name) for name in (Change._meta.db_table, "tag", "project_id"))
    sql = (
        f"WITH RECURSIVE tags(tag, n) AS ("
        f"SELECT (SELECT {tag} FROM {table} WHERE {project_id} = %s AND {tag} >= ''"
        f" ORDER BY {tag} LIMIT 1), 1"
        f" UNION ALL SELECT (SELECT {tag} FROM {table} WHERE {project_id} = %s"
        f" AND {tag} > tags.tag ORDER BY {tag} LIMIT 1), n + 1"
        f" FROM tags WHERE tags.tag IS NOT NULL AND n <= %s"
        f") SELECT tag FROM tags WHERE tag IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [project.pk, project.pk, budget])
        tags = [row[0] for row in cursor.fetchall()]
    return None if len(tags) > budget else tags


class ChangeFilter(ListFilterSet):
    """Changes: time range, kind, repository type, registry, repository (path or id), tag,
    digest (old or new) and the task that saw them."""

    table = CHANGES

    since = MomentFilter(
        field_name="time",
        bound="after",
        label=_("Since"),
        help_text=_("A day or an ISO 8601 time: changes seen at or after it."),
    )
    until = MomentFilter(
        field_name="time",
        bound="to",
        label=_("Until"),
        help_text=_("A day (included) or an ISO 8601 time: changes seen up to it."),
    )
    kind = _one_or_more(Change.Kind.choices, _("Change"), _("Any change"))
    type = _one_or_more(
        RepositoryType.choices, _("Repository type"), _("All types"), field_name="repository_type"
    )
    registry = _registry_filter(field_name="registry")
    path = django_filters.CharFilter(
        field_name="repository_path", lookup_expr="icontains", label=_("Repository path contains")
    )
    repository = WholeNumberFilter(
        field_name="repository_id", min_value=1, label=_("Repository id")
    )
    tag = django_filters.CharFilter(method="filter_tag", label=_("Tag"))
    digest = DigestPrefixFilter(
        method="filter_digest",
        label=_("Digest"),
        help_text=_("A digest or its leading hex characters; matches the old or the new digest."),
    )
    task = WholeNumberFilter(field_name="task_id", min_value=1, label=_("Task"))
    ordering = SortFilter(CHANGES)

    page_fields = "since until kind type registry path tag digest"

    class Meta:
        model = Change
        fields: list[str] = []

    def filter_digest(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        if not value:
            return qs
        return qs.filter(
            digest_prefix_q("old_digest", value) | digest_prefix_q("new_digest", value)
        )

    def filter_tag(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        """Tags containing `value` (any case). A project's distinct tags are few next to its
        changes, so they are listed from the (project, tag) index, one probe each, and the
        changes of the matching ones read through it -- not a LIKE over every change, which
        the page must count too (a million changes: 100-200 ms). OCI tags are ASCII, so
        comparing lowered text here matches the database's case-insensitive LIKE. A project
        with more distinct tags than the probes allowed gets the LIKE."""
        if not value:
            return qs
        tags = distinct_tags(self.project) if self.project is not None else None
        if tags is None:
            return qs.filter(tag__icontains=value)
        wanted = value.lower()
        return qs.filter(tag__in=[tag for tag in tags if wanted in tag.lower()])
