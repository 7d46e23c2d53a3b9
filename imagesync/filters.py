"""FilterSets of the console's lists: Image View, Manage Task, a task's repositories, and the
repository picker of the Synchronize Images panel.

Every filter value comes from the URL, so a filtered view can be bookmarked. A value that does
not parse becomes a form error, never a server error; views then show an empty result.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone

from imagesync.models import (
    Image,
    Registry,
    Repository,
    RepositoryType,
    SyncTask,
    SyncTaskRepository,
)

MIB = 1024 * 1024


def _day_start(day: dt.date) -> dt.datetime:
    """Midnight at the start of `day` in the console's time zone, as an aware datetime."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _registries_of_request(request) -> QuerySet[Registry]:
    """The registry drop-down lists only the current project's registries."""
    if request is None or not getattr(request, "project", None):
        return Registry.objects.none()
    return Registry.objects.for_user(request.user).filter(project_id=request.project.pk)


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _in_repositories(qs: QuerySet, **lookups) -> QuerySet:
    """Filter images by repository fields through `repository_id IN (subquery)`: the database
    then reads just those repositories' images through the (repository, tag) index instead of
    joining every image of the project to its repository."""
    return qs.filter(repository__in=Repository.objects.filter(**lookups).values("pk"))


class RepositoryFieldFilter(django_filters.CharFilter):
    """A text filter on a repository field (namespace, name), as a repository subquery."""

    def filter(self, qs: QuerySet, value) -> QuerySet:
        value = (value or "").strip()
        if not value:
            return qs
        return _in_repositories(qs, **{f"{self.field_name}__{self.lookup_expr}": value})


class OnlyFilter(django_filters.Filter):
    """A checkbox: ticked keeps rows whose boolean field is true; unticked filters nothing."""

    field_class = forms.BooleanField

    def filter(self, qs: QuerySet, value) -> QuerySet:
        return qs.filter(**{self.field_name: True}) if value else qs


class DateFromFilter(django_filters.DateFilter):
    """Rows on or after the start of the given day."""

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if not value:
            return qs
        return qs.filter(**{f"{self.field_name}__gte": _day_start(value)})


class DateToFilter(django_filters.DateFilter):
    """Rows up to the end of the given day (inclusive)."""

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if not value:
            return qs
        return qs.filter(**{f"{self.field_name}__lt": _day_start(value + dt.timedelta(days=1))})


class SizeFilter(django_filters.NumberFilter):
    """A size bound typed in MiB, compared in bytes."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", Decimal(0))
        kwargs.setdefault("max_digits", 12)
        kwargs.setdefault("decimal_places", 3)
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if value is None:
            return qs
        return qs.filter(**{f"{self.field_name}__{self.lookup_expr}": int(value * MIB)})


def _date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class ImageFilter(django_filters.FilterSet):
    """Image View's filters: everything the original console offers, plus free-text search."""

    q = django_filters.CharFilter(method="search", label="Search")
    type = django_filters.MultipleChoiceFilter(
        method="filter_types",
        choices=RepositoryType.choices,
        widget=forms.CheckboxSelectMultiple,
        label="Repository type",
    )
    registry = django_filters.ModelChoiceFilter(
        method="filter_registry",
        queryset=_registries_of_request,
        label="Registry",
        empty_label="All registries",
    )
    namespace = RepositoryFieldFilter(
        field_name="namespace", lookup_expr="icontains", label="Namespace"
    )
    name = RepositoryFieldFilter(field_name="name", lookup_expr="icontains", label="Image name")
    tag = django_filters.CharFilter(field_name="tag", lookup_expr="icontains", label="Tag")
    digest = django_filters.CharFilter(method="filter_digest", label="Digest")
    multi_arch = OnlyFilter(field_name="multi_arch", label="Multi-arch only")
    latest = OnlyFilter(field_name="is_latest", label="Latest version only")
    size_min = SizeFilter(field_name="size", lookup_expr="gte", label="Size from (MiB)")
    size_max = SizeFilter(field_name="size", lookup_expr="lte", label="Size to (MiB)")
    updated_from = DateFromFilter(
        field_name="registry_updated_at", label="Updated from", widget=_date_input()
    )
    updated_to = DateToFilter(
        field_name="registry_updated_at", label="Updated to", widget=_date_input()
    )
    synced_from = DateFromFilter(
        field_name="last_synced_at", label="Synced from", widget=_date_input()
    )
    synced_to = DateToFilter(field_name="last_synced_at", label="Synced to", widget=_date_input())

    class Meta:
        model = Image
        fields: list[str] = []

    def filter_types(self, qs: QuerySet, name: str, value: list[str]) -> QuerySet:
        return _in_repositories(qs, type__in=value) if value else qs

    def filter_registry(self, qs: QuerySet, name: str, value: Registry | None) -> QuerySet:
        return _in_repositories(qs, registry=value) if value is not None else qs

    @property
    def narrows_images(self) -> bool:
        """True when a filter other than the type filter is active (valid form only)."""
        return any(
            value not in (None, "", [], False)
            for name, value in self.form.cleaned_data.items()
            if name != "type"
        )

    def search(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        """Free text matches the repository path (namespace/name), the tag or the digest."""
        value = value.strip()
        if not value:
            return qs
        return qs.filter(
            Q(repository__in=Repository.objects.filter(path__icontains=value).values("pk"))
            | Q(tag__icontains=value)
            | Q(digest__icontains=value)
        )

    def filter_digest(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        """A full digest, or the short hex form shown in the table: a prefix match written as
        a range, so the (project, digest) index serves it on SQLite (whose LIKE ignores case
        and so cannot use the index) as on PostgreSQL."""
        value = value.strip().lower()
        if not value:
            return qs
        prefixes = [value] if ":" in value else [f"sha256:{value}", f"sha512:{value}"]
        condition = Q()
        for prefix in prefixes:
            condition |= Q(digest__gte=prefix, digest__lt=_prefix_end(prefix))
        return qs.filter(condition)

    @property
    def active_filters(self) -> bool:
        """True when any filter narrows the list (used to word the empty state)."""
        if not self.is_bound or not self.form.is_valid():
            return self.is_bound and any(self.data.get(name) for name in self.filters)
        return any(value not in (None, "", [], False) for value in self.form.cleaned_data.values())


class TaskFilter(django_filters.FilterSet):
    """Manage Task's filters: status, trigger and creation time."""

    status = django_filters.ChoiceFilter(
        choices=SyncTask.Status.choices, empty_label="Any status", label="Status"
    )
    trigger = django_filters.ChoiceFilter(
        choices=SyncTask.Trigger.choices, empty_label="Any trigger", label="Trigger"
    )
    created_from = DateFromFilter(
        field_name="created_at", label="Created from", widget=_date_input()
    )
    created_to = DateToFilter(field_name="created_at", label="Created to", widget=_date_input())

    class Meta:
        model = SyncTask
        fields: list[str] = []


class TaskResultFilter(django_filters.FilterSet):
    """A task's repositories, by status."""

    status = django_filters.ChoiceFilter(
        choices=SyncTaskRepository.Status.choices, empty_label="Any status", label="Status"
    )

    class Meta:
        model = SyncTaskRepository
        fields: list[str] = []


class RepositoryPickerFilter(django_filters.FilterSet):
    """The Synchronize Images panel's repository picker: type, registry, namespace, name."""

    repo_type = django_filters.ChoiceFilter(
        field_name="type", choices=RepositoryType.choices, empty_label="All types", label="Type"
    )
    repo_registry = django_filters.ModelChoiceFilter(
        field_name="registry",
        queryset=_registries_of_request,
        label="Registry",
        empty_label="All registries",
    )
    repo_namespace = django_filters.CharFilter(
        field_name="namespace", lookup_expr="icontains", label="Namespace"
    )
    repo_name = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name")

    class Meta:
        model = Repository
        fields: list[str] = []
