"""FilterSets of the API lists. They offer every filter of the console's Image View and
repository picker, in the units automation wants: sizes in bytes, times as ISO 8601 instants
(the console's filters take MiB and calendar days, for people)."""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField

from imagesync.models import Image, Repository, RepositoryType, SyncTask, SyncTaskRepository

MAX_ID = 2**63 - 1


class SafeIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 instant the database can compare: years 1000-9000, so no conversion to UTC
    overflows (a typed "0001-01-01T00:00+01:00" is a 400, not a server error)."""

    def clean(self, value):
        value = super().clean(value)
        if value is not None and not (1000 <= value.year <= 9000):
            raise forms.ValidationError("Give a time between the years 1000 and 9000.")
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value


class InstantFilter(django_filters.IsoDateTimeFilter):
    field_class = SafeIsoDateTimeField


class IdFilter(django_filters.NumberFilter):
    """An object id: a whole number a database integer can hold."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class ByteFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class StrictBooleanField(forms.Field):
    """true/false (or 1/0); anything else is an error rather than silently no filter."""

    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        try:
            return self.VALUES[str(value).strip().lower()]
        except KeyError:
            raise forms.ValidationError("Use true or false.") from None

    def validate(self, value) -> None:
        pass


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


IMAGE_ORDERING = (
    # (model field(s), public name) -- the console's sortable columns.
    ("repository__name", "name"),
    ("repository__namespace", "namespace"),
    ("repository__path", "path"),
    ("tag", "tag"),
    ("repository__type", "type"),
    ("repository__registry__name", "registry"),
    ("digest", "digest"),
    ("size", "size"),
    ("multi_arch", "multi_arch"),
    ("image_created_at", "created"),
    ("registry_updated_at", "updated"),
    ("last_synced_at", "synced"),
    ("id", "id"),
)


class StableOrderingFilter(django_filters.OrderingFilter):
    """Ordering by the chosen columns, then by id, so paging never shows a row twice."""

    def __init__(self, *args, default: tuple[str, ...] = ("-id",), **kwargs):
        self.default = default
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if value in ([], (), {}, "", None):
            return qs.order_by(*self.default)
        fields = [self.get_ordering_value(param) for param in value]
        if not any(field.lstrip("-") == "id" for field in fields):
            fields.append("-id" if fields[-1].startswith("-") else "id")
        return qs.order_by(*fields)


class ImageFilterSet(django_filters.FilterSet):
    """Every Image View filter: type (several), registry, namespace, image name, tag, digest,
    multi-arch only, latest version only, size range, update and sync time ranges, free text."""

    q = django_filters.CharFilter(
        method="search", label="Free text: matches the repository path, the tag or the digest."
    )
    type = django_filters.MultipleChoiceFilter(
        distinct=False,  # nothing here duplicates rows; DISTINCT would only slow counts
        field_name="repository__type",
        choices=RepositoryType.choices,
        label="Repository type; repeat the parameter for several.",
    )
    registry = IdFilter(field_name="repository__registry_id", label="Registry id.")
    repository = IdFilter(field_name="repository_id", label="Repository id.")
    namespace = django_filters.CharFilter(
        field_name="repository__namespace", lookup_expr="icontains", label="Namespace contains."
    )
    name = django_filters.CharFilter(
        field_name="repository__name", lookup_expr="icontains", label="Image name contains."
    )
    tag = django_filters.CharFilter(
        field_name="tag", lookup_expr="icontains", label="Tag contains."
    )
    digest = django_filters.CharFilter(
        method="filter_digest", label="Digest, or its leading hex characters (the short form)."
    )
    multi_arch = BooleanFilter(
        field_name="multi_arch", label="true: multi-arch images only; false: single-arch only."
    )
    latest = BooleanFilter(
        field_name="is_latest", label="true: only the latest version of each repository."
    )
    size_min = ByteFilter(field_name="size", lookup_expr="gte", label="Size at least (bytes).")
    size_max = ByteFilter(field_name="size", lookup_expr="lte", label="Size at most (bytes).")
    updated_after = InstantFilter(
        field_name="registry_updated_at",
        lookup_expr="gte",
        label="Updated in the registry at or after.",
    )
    updated_before = InstantFilter(
        field_name="registry_updated_at", lookup_expr="lt", label="Updated in the registry before."
    )
    synced_after = InstantFilter(
        field_name="last_synced_at", lookup_expr="gte", label="Last synced at or after."
    )
    synced_before = InstantFilter(
        field_name="last_synced_at", lookup_expr="lt", label="Last synced before."
    )
    ordering = StableOrderingFilter(
        fields=IMAGE_ORDERING,
        default=("-registry_updated_at", "-id"),
        label="Sort by one or more of: "
        + ", ".join(name for _f, name in IMAGE_ORDERING)
        + "; prefix '-' for descending. Default: -updated.",
    )

    class Meta:
        model = Image
        fields: list[str] = []

    def search(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return qs
        return qs.filter(
            Q(repository__path__icontains=value)
            | Q(tag__icontains=value)
            | Q(digest__icontains=value)
        )

    def filter_digest(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip().lower()
        if not value:
            return qs
        if ":" in value:
            return qs.filter(digest__startswith=value)
        return qs.filter(
            Q(digest__startswith=f"sha256:{value}") | Q(digest__startswith=f"sha512:{value}")
        )


REPOSITORY_ORDERING = (
    ("path", "path"),
    ("namespace", "namespace"),
    ("name", "name"),
    ("type", "type"),
    ("registry__name", "registry"),
    ("image_count", "image_count"),
    ("last_synced_at", "synced"),
    ("id", "id"),
)


class RepositoryFilterSet(django_filters.FilterSet):
    """The repository picker's filters (type, registry, namespace, name) plus free text."""

    q = django_filters.CharFilter(
        field_name="path", lookup_expr="icontains", label="Path contains."
    )
    type = django_filters.MultipleChoiceFilter(
        distinct=False,  # nothing here duplicates rows; DISTINCT would only slow counts
        choices=RepositoryType.choices,
        label="Repository type; repeat for several.",
    )
    registry = IdFilter(field_name="registry_id", label="Registry id.")
    namespace = django_filters.CharFilter(lookup_expr="icontains", label="Namespace contains.")
    name = django_filters.CharFilter(lookup_expr="icontains", label="Name contains.")
    include_removed = BooleanFilter(
        method="filter_removed",
        label="true: also repositories a complete listing no longer showed (default false).",
    )
    ordering = StableOrderingFilter(
        fields=REPOSITORY_ORDERING,
        default=("registry__name", "type", "path", "id"),
        label="Sort by: " + ", ".join(name for _f, name in REPOSITORY_ORDERING) + ".",
    )

    class Meta:
        model = Repository
        fields: list[str] = []

    @property
    def qs(self) -> QuerySet:
        queryset = super().qs
        if not getattr(self.form, "cleaned_data", {}).get("include_removed"):
            queryset = queryset.filter(removed_at__isnull=True)
        return queryset

    def filter_removed(self, qs: QuerySet, name: str, value) -> QuerySet:
        return qs  # applied in qs, so that leaving it out hides removed repositories


TASK_ORDERING = (
    ("created_at", "created"),
    ("started_at", "started"),
    ("finished_at", "finished"),
    ("status", "status"),
    ("id", "id"),
)


class SyncTaskFilterSet(django_filters.FilterSet):
    """Manage Task's filters: status, trigger and creation time."""

    status = django_filters.MultipleChoiceFilter(
        distinct=False,  # nothing here duplicates rows; DISTINCT would only slow counts
        choices=SyncTask.Status.choices,
        label="Status; repeat for several.",
    )
    trigger = django_filters.ChoiceFilter(choices=SyncTask.Trigger.choices)
    active = BooleanFilter(method="filter_active", label="true: queued or running.")
    created_after = InstantFilter(field_name="created_at", lookup_expr="gte")
    created_before = InstantFilter(field_name="created_at", lookup_expr="lt")
    ordering = StableOrderingFilter(
        fields=TASK_ORDERING,
        default=("-created_at", "-id"),
        label="Sort by: " + ", ".join(name for _f, name in TASK_ORDERING) + ". Default: -created.",
    )

    class Meta:
        model = SyncTask
        fields: list[str] = []

    def filter_active(self, qs: QuerySet, name: str, value) -> QuerySet:
        if value is None:
            return qs
        if value:
            return qs.filter(status__in=SyncTask.ACTIVE_STATUSES)
        return qs.exclude(status__in=SyncTask.ACTIVE_STATUSES)


class SyncResultFilterSet(django_filters.FilterSet):
    """A task's repositories, by status and type."""

    status = django_filters.MultipleChoiceFilter(
        distinct=False,  # nothing here duplicates rows; DISTINCT would only slow counts
        choices=SyncTaskRepository.Status.choices,
        label="Status; repeat for several.",
    )
    type = django_filters.MultipleChoiceFilter(
        distinct=False,  # nothing here duplicates rows; DISTINCT would only slow counts
        field_name="repository_type",
        choices=RepositoryType.choices,
    )

    class Meta:
        model = SyncTaskRepository
        fields: list[str] = []
