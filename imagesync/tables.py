"""The column definitions of the console's lists: Image View, repositories, sync tasks and a
task's results (NetBox keeps its `tables/` the same way, one definition per list).

A column has a key, a label, the fields it sorts by and the value it exports. The one
definition drives the page's headers and sorting, the FilterSet's `sort`/`ordering` parameter
(so the API sorts exactly as the page), the page's CSV and `manage.py export_images`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils.translation import gettext_lazy as _

PAGE_SIZES = (10, 20, 50, 100)
DEFAULT_PAGE_SIZE = 20
# Both names mean "rows per page" on the pages and in the API (the console wrote per_page).
PAGE_SIZE_PARAMS = ("page_size", "per_page")


@dataclass(frozen=True)
class Column:
    """One column. `order_by` empty: not sortable. `value` None: not exported."""

    key: str
    label: str
    order_by: tuple[str, ...] = ()
    value: Callable[[Any], Any] | None = None
    aliases: tuple[str, ...] = ()  # older sort names that still work (bookmarks, API v1)
    sub: str = ""  # a second header line, e.g. "added / updated / removed"
    css: str = ""
    # Read by screen readers only: a column whose cells say what they are (row actions).
    label_hidden: bool = False

    def __deepcopy__(self, memo) -> Column:
        return self  # immutable; FilterSets deep-copy their filters for every request


@dataclass(frozen=True)
class Header:
    """A page header: its column and the sort state the current sort gives it."""

    key: str
    label: str
    sub: str
    css: str
    sortable: bool
    state: str  # aria-sort: ascending, descending or none
    next: str  # the sort a click on it switches to
    label_hidden: bool = False


@dataclass(frozen=True)
class Table:
    """The columns of one list, which of them the page shows (in its order), and its default
    sort. Exports use every column that has a value, in definition order."""

    columns: tuple[Column, ...]
    page: str  # the keys of the page's columns, space-separated, in the page's order
    default_sort: str
    by_key: Mapping[str, Column] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        keys: dict[str, Column] = {}
        for column in self.columns:
            for name in (column.key, *column.aliases):
                if column.order_by or name == column.key:
                    keys[name] = column
        object.__setattr__(self, "by_key", keys)

    def __deepcopy__(self, memo) -> Table:
        return self  # immutable; FilterSets deep-copy their filters for every request

    @property
    def sort_keys(self) -> list[str]:
        return [column.key for column in self.columns if column.order_by]

    @property
    def exported(self) -> list[Column]:
        return [column for column in self.columns if column.value is not None]

    def canonical_sort(self, sort: str) -> str | None:
        """`sort` ("size", "-updated", "name,-tag") with aliases replaced by column keys, or
        None when a key is not a sortable column."""
        keys = []
        for part in sort.split(","):
            part = part.strip()
            descending = part.startswith("-")
            column = self.by_key.get(part.lstrip("-"))
            if column is None or not column.order_by:
                return None
            keys.append(("-" if descending else "") + column.key)
        return ",".join(keys) or None

    def order_by(self, sort: str) -> list[str]:
        """The order_by fields of a canonical sort, ending with id so that paging never shows
        a row twice. The last key brings its whole tuple (repository columns end with
        repository_id, tag: the database then walks the (repository, tag) index instead of
        sorting every image); keys before it bring their first field only, so "registry,path"
        means registry name, then path."""
        keys = sort.split(",")
        fields: list[str] = []
        seen: set[str] = set()
        for position, key in enumerate(keys):
            prefix = "-" if key.startswith("-") else ""
            own = self.by_key[key.lstrip("-")].order_by
            for name in own if position == len(keys) - 1 else own[:1]:
                if name not in seen:
                    seen.add(name)
                    fields.append(prefix + name)
        if "id" not in seen:
            fields.append(("-" if keys[-1].startswith("-") else "") + "id")
        return fields

    def headers(self, sort: str) -> list[Header]:
        """The page's headers, with aria-sort for the column the sort starts with."""
        first = sort.split(",")[0]
        result = []
        for key in self.page.split():
            column = self.by_key[key]
            state, next_sort = "none", key
            if first == key:
                state, next_sort = "ascending", f"-{key}"
            elif first == f"-{key}":
                state, next_sort = "descending", key
            result.append(
                Header(
                    key,
                    column.label,
                    column.sub,
                    column.css,
                    bool(column.order_by),
                    state,
                    next_sort,
                    column.label_hidden,
                )
            )
        return result

    def record(self, row: Any) -> dict[str, Any]:
        """The exported values of one row, by column key (JSON-ready)."""
        return {column.key: column.value(row) for column in self.exported}


def page_size(params: Mapping[str, str], sizes: Iterable[int] = PAGE_SIZES) -> int:
    """Rows per page from per_page or page_size; anything not offered is the default."""
    for name in PAGE_SIZE_PARAMS:
        value = str(params.get(name, "")).strip()
        if value.isascii() and value.isdigit() and int(value) in sizes:
            return int(value)
    return DEFAULT_PAGE_SIZE


# --- values -----------------------------------------------------------------------------------


def _time(name: str) -> Callable[[Any], str | None]:
    def value(row: Any) -> str | None:
        moment: datetime | None = getattr(row, name)
        return moment.isoformat() if moment is not None else None

    return value


def _attr(path: str) -> Callable[[Any], Any]:
    def value(row: Any) -> Any:
        for name in path.split("."):
            row = getattr(row, name)
        return row

    return value


def _namespace(image: Any) -> str:
    """The first component of the path when the registry reported no namespace (as `docker
    pull` reads it)."""
    repository = image.repository
    if not repository.namespace and "/" in repository.path:
        return repository.path.split("/", 1)[0]
    return repository.namespace


def _pull_source(image: Any) -> str:
    from imagesync.usage import source_code

    return source_code(image.pull_source)


# --- the lists ----------------------------------------------------------------------------------

IMAGES = Table(
    columns=(
        # Exported in this order: export_images' twelve fields first, as scripts know them.
        Column(
            "registry",
            _("Registry"),
            ("repository__registry__name", "repository_id", "tag"),
            _attr("repository.registry.name"),
        ),
        Column(
            "type",
            _("Type"),
            ("repository__type", "repository__namespace", "repository_id", "tag"),
            _attr("repository.type"),
        ),
        Column(
            "namespace",
            _("Namespace"),
            ("repository__namespace", "repository__name", "repository_id", "tag"),
            _namespace,
        ),
        Column(
            "repository",
            _("Repository path"),
            ("repository__path", "repository_id", "tag"),
            _attr("repository.path"),
            aliases=("path",),
        ),
        Column("tag", _("Tag"), ("tag",), _attr("tag")),
        Column("digest", _("Digest"), ("digest",), _attr("digest")),
        Column("size", _("Size"), ("size",), _attr("size")),
        Column("media_type", _("Media type"), (), _attr("media_type")),
        Column(
            "platforms", _("Platforms"), ("multi_arch",), lambda image: list(image.platforms or [])
        ),
        Column("created", _("Image created"), ("image_created_at",), _time("image_created_at")),
        Column(
            "updated",
            _("Updated in registry"),
            ("registry_updated_at",),
            _time("registry_updated_at"),
        ),
        # An image's last sync is its repository's (see Image.last_synced_at): sorted as the
        # repository columns are, repositories in that order, each one's images by tag.
        Column(
            "last_synced",
            _("Last synced"),
            ("repository__last_synced_at", "repository_id", "tag"),
            _time("last_synced_at"),
            aliases=("synced",),
        ),
        Column(
            "name",
            _("Image name"),
            ("repository__name", "repository_id", "tag"),
            _attr("repository.name"),
        ),
        Column("multi_arch", _("Multi-arch"), ("multi_arch",), _attr("multi_arch")),
        Column("latest", _("Latest version"), (), _attr("is_latest")),
        # Usage (imagesync.usage), after the fields scripts already read.
        Column(
            "last_pulled",
            _("Last pulled"),
            ("last_pulled",),
            _time("last_pulled"),
            sub=_("source"),
        ),
        Column("pull_count", _("Pulls"), ("pull_count",), _attr("pull_count"), css="num"),
        Column("pull_source", _("Pull data source"), (), _pull_source),
        Column("tagged", _("Tagged"), (), _attr("tagged")),
        Column("id", _("Id"), ("id",)),
    ),
    page=(
        "name tag namespace type registry digest size platforms created updated last_synced"
        " last_pulled pull_count"
    ),
    default_sort="-updated",
)

REPOSITORIES = Table(
    columns=(
        Column("path", _("Repository"), ("path",), _attr("path")),
        Column("type", _("Type"), ("type",), _attr("type")),
        Column("registry", _("Registry"), ("registry__name",), _attr("registry.name")),
        Column("image_count", _("Images"), ("image_count",), _attr("image_count"), css="num"),
        Column("namespace", _("Namespace"), ("namespace",), _attr("namespace")),
        Column("name", _("Name"), ("name",), _attr("name")),
        Column("synced", _("Last synced"), ("last_synced_at",), _time("last_synced_at")),
        Column("id", _("Id"), ("id",)),
    ),
    page="path type registry image_count",
    default_sort="registry,type,path",
)

TASKS = Table(
    columns=(
        Column("id", _("Task"), ("id",), _attr("pk")),
        Column("trigger", _("Trigger"), (), _attr("trigger")),
        Column("scope", _("Scope"), (), _attr("scope")),
        Column("status", _("Status"), ("status",), _attr("status")),
        Column("progress", _("Progress"), (), _attr("progress_percent")),
        Column("repositories", _("Repositories"), sub=_("succeeded / failed / total"), css="num"),
        Column("images", _("Images"), sub=_("added / updated / removed"), css="num"),
        Column("started", _("Started / finished"), ("started_at",), _time("started_at")),
        Column("duration", _("Duration")),
        Column("created_by", _("Started by")),
        Column("failure_reason", _("Failure reason"), (), _attr("failure_reason")),
        Column("created", _("Created"), ("created_at",), _time("created_at")),
        Column("finished", _("Finished"), ("finished_at",), _time("finished_at")),
    ),
    page="id trigger scope status progress repositories images started duration created_by"
    " failure_reason",
    default_sort="-created",
)

TASK_RESULTS = Table(
    columns=(
        Column("repository", _("Repository"), ("repository_path",), _attr("repository_path")),
        Column("type", _("Type"), ("repository_type",), _attr("repository_type")),
        Column("registry", _("Registry"), ("registry_name",), _attr("registry_name")),
        Column("status", _("Status"), ("status",), _attr("status")),
        Column("reason_code", _("Reason code"), (), _attr("reason_code")),
        Column("reason", _("Reason"), (), _attr("reason_message")),
        Column("images", _("Images"), ("images_total",), _attr("images_total"), css="num"),
        Column("changes", _("Added / updated / removed"), css="num"),
        Column("id", _("Id"), ("id",)),
    ),
    page="repository type registry status reason_code reason images changes",
    default_sort="registry,type,repository",
)


def _change_namespace(change: Any) -> str:
    """As `_namespace`, from the names a change keeps (its repository may be gone)."""
    if not change.namespace and "/" in change.repository_path:
        return change.repository_path.split("/", 1)[0]
    return change.namespace


CHANGES = Table(
    columns=(
        # Exported in this order: export_changes' ten fields, as scripts know them.
        Column("time", _("Time"), ("time",), _time("time")),
        Column("kind", _("Change"), ("kind", "time"), _attr("kind")),
        Column(
            "registry",
            _("Registry"),
            ("registry_name", "repository_path", "tag", "time"),
            _attr("registry_name"),
        ),
        Column(
            "type",
            _("Type"),
            ("repository_type", "repository_path", "tag", "time"),
            _attr("repository_type"),
        ),
        Column(
            "namespace",
            _("Namespace"),
            ("namespace", "repository_path", "tag", "time"),
            _change_namespace,
        ),
        Column(
            "repository",
            _("Repository path"),
            ("repository_path", "tag", "time"),
            _attr("repository_path"),
            aliases=("path",),
        ),
        Column("tag", _("Tag"), ("tag", "time"), _attr("tag")),
        Column("old_digest", _("Old digest"), ("old_digest", "time"), _attr("old_digest")),
        Column("new_digest", _("New digest"), ("new_digest", "time"), _attr("new_digest")),
        Column("task", _("Task"), ("task_id", "time"), _attr("task_id")),
        # Shown on the page and in the API, not in the exports (export_changes' fields).
        Column("registry_pushed_at", _("Pushed (registry's time)"), ("registry_pushed_at", "time")),
        Column("source", _("Seen by"), ("source", "time")),
        Column("id", _("Id"), ("id",)),
    ),
    page="time kind registry type namespace repository tag old_digest new_digest"
    " registry_pushed_at task source",
    default_sort="-time",
)


# --- lists the page does not sort (headers only) ----------------------------------------------

AUDIT_EVENTS = Table(
    columns=(
        Column("when", _("When")),
        Column("who", _("Who")),
        Column("action", _("Action")),
        Column("target", _("Target")),
        Column("detail", _("Detail")),
    ),
    page="when who action target detail",
    default_sort="",
)

REGISTRIES = Table(
    columns=(
        Column("name", _("Name")),
        Column("kind", _("Kind")),
        Column("endpoint", _("Endpoint")),
        Column("connection", _("Connection")),
        Column("last_sync", _("Last sync")),
        Column("repositories", _("Repositories"), css="num"),
        Column("images", _("Images"), css="num"),
        Column("actions", _("Actions"), label_hidden=True),  # admins only (the view drops it)
    ),
    page="name kind endpoint connection last_sync repositories images actions",
    default_sort="",
)

TAG_STATES = Table(
    columns=(
        Column("digest", _("Digest")),
        Column("from", _("From")),
        Column("to", _("To")),
        Column("seen_by", _("Seen by")),
        Column("registry_pushed_at", _("Pushed (registry's time)")),
        Column("size", _("Size")),
        Column("platforms", _("Platforms")),
    ),
    page="digest from to seen_by registry_pushed_at size platforms",
    default_sort="",
)

TAG_CHANGES = Table(
    columns=(
        Column("time", _("Seen at")),
        Column("kind", _("Change")),
        Column("digest", _("Digest")),
        Column("seen_by", _("Seen by")),
        Column("registry_pushed_at", _("Pushed (registry's time)")),
    ),
    page="time kind digest seen_by registry_pushed_at",
    default_sort="",
)

DIGEST_SPANS = Table(
    columns=(
        Column("registry", _("Registry")),
        Column("repository", _("Repository")),
        Column("tag", _("Tag")),
        Column("from", _("From")),
        Column("to", _("To")),
    ),
    page="registry repository tag from to",
    default_sort="",
)

# The page's columns of a diff between two moments (its CSV has its own, wider columns).
HISTORY_DIFF = Table(
    columns=(
        Column("kind", _("Change")),
        Column("registry", _("Registry")),
        Column("repository", _("Repository")),
        Column("tag", _("Tag")),
        Column("then", _("Then")),
        Column("now", _("Now")),
    ),
    page="kind registry repository tag then now",
    default_sort="",
)

# --- Image View as of a moment ------------------------------------------------------------------

# An interval keeps the repository's identity as it was (so a removed connection's rows still
# sort and display); its fields replace the live columns' paths through the repository. The
# repository id that the live sorts end with (an index walk there) becomes the path here: it is
# the same order for a live repository and still means something for a removed one.
_AS_OF_FIELDS = {
    "repository__registry__name": "registry_name",
    "repository__type": "repository_type",
    "repository__namespace": "namespace",
    "repository__path": "repository_path",
    "repository__name": "name",
    "repository_id": "repository_path",
    # "Last synced" as of the moment is computed per repository (see filters.AsOfSortFilter).
    "repository__last_synced_at": "synced_as_of",
}
_AS_OF_VALUES: dict[str, Callable[[Any], Any]] = {
    "registry": _attr("registry_name"),
    "type": _attr("repository_type"),
    "repository": _attr("repository_path"),
    "name": _attr("name"),
}


def _interval_namespace(interval: Any) -> str:
    """As `_namespace`, from the interval's own copy of the repository's identity."""
    if not interval.namespace and "/" in interval.repository_path:
        return interval.repository_path.split("/", 1)[0]
    return interval.namespace


_AS_OF_VALUES["namespace"] = _interval_namespace


# Usage is not history: as of a moment these columns say nothing (tags only, no pull data).
_AS_OF_USAGE = {
    "last_pulled": lambda interval: None,
    "pull_count": lambda interval: None,
    "pull_source": lambda interval: "none",
    "tagged": lambda interval: True,
}


def _as_of(column: Column) -> Column:
    if column.key in _AS_OF_USAGE:
        return Column(column.key, column.label, (), _AS_OF_USAGE[column.key], css=column.css)
    fields: list[str] = []
    # As of a moment the rows of one "Last synced" sort by id after it, as they always have.
    order_by = column.order_by[:1] if column.key == "last_synced" else column.order_by
    for name in order_by:
        mapped = _AS_OF_FIELDS.get(name, name)
        if mapped not in fields:
            fields.append(mapped)
    value = _AS_OF_VALUES.get(column.key, column.value)
    return Column(
        column.key,
        column.label,
        tuple(fields),
        value,
        aliases=column.aliases,
        sub=column.sub,
        css=column.css,
    )


# The same keys, labels, page and exported columns as IMAGES, over ImageInterval rows annotated
# with `last_synced_at` (as of the moment): one CSV header for a live and a historical export.
IMAGES_AS_OF = Table(
    columns=tuple(_as_of(column) for column in IMAGES.columns),
    page=IMAGES.page,
    default_sort=IMAGES.default_sort,
)
