"""The inventory's history: what changed, when, and what was there at any moment.

Two tables, both written by the transaction that changes the inventory, so history and
inventory can never disagree:

- `Change`: one observed change -- a tag added, re-pushed (old digest -> new digest) or
  removed -- with the time the console saw it, the task (or, later, the registry event) that
  saw it, and the registry's own push time where it reports one.
- `ImageInterval`: one stretch of time during which a tag had one state (digest and details),
  from when the console first saw that state until it saw it change or go; the current state is
  the open interval. The inventory as of a moment is the intervals open at that moment, so
  Image View's filters, sorts and exports work on it as on the live inventory.

Each row keeps the registry's name and the repository's type and path as they were, and its
links to the registry and repository are cleared (not cascaded) when a connection is removed:
the history of a removed connection stays readable until retention purges it
(`HISTORY_RETENTION_DAYS`, see `purge`). Unchanged tags write nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import BigIntegerField, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from imagesync.models import (
    BATCH_SIZE,
    Image,
    ImageState,
    Project,
    Registry,
    Repository,
    RepositoryType,
    SyncTask,
)

logger = logging.getLogger(__name__)


class RepositoryIdentity(models.Model):
    """Who a history row is about, as it was then (kept when the connection is removed)."""

    # No index of their own for project and repository: Change's and ImageInterval's indexes
    # start with one of them, and each index less is one B-tree less to write per history row.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    registry = models.ForeignKey(
        Registry, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    repository = models.ForeignKey(
        Repository,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    registry_name = models.CharField(max_length=128)
    repository_type = models.CharField(max_length=16, choices=RepositoryType.choices)
    repository_path = models.CharField(max_length=255)
    namespace = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255)

    # The repository as it was, kept when its connection is removed.
    NAME_FIELDS = ("registry_name", "repository_type", "repository_path", "namespace", "name")

    class Meta:
        abstract = True

    def identify(self, repository: Repository) -> None:
        self.project_id = repository.registry.project_id
        self.registry_id = repository.registry_id
        self.repository_id = repository.pk
        self.registry_name = repository.registry.name
        self.repository_type = repository.type
        self.repository_path = repository.path
        self.namespace = repository.namespace
        self.name = repository.name


class ChangeQuerySet(models.QuerySet):
    def for_user(self, user) -> ChangeQuerySet:
        return self.filter(project__in=Project.objects.for_user(user))


class Change(RepositoryIdentity):
    """One observed change of the inventory: a tag added, re-pushed (old digest -> new digest)
    or removed, with when the console saw it and which task saw it."""

    class Kind(models.TextChoices):
        ADDED = "added", _("Added")
        REPUSHED = "repushed", _("Re-pushed")
        REMOVED = "removed", _("Removed")

    class Source(models.TextChoices):
        SYNC = "sync", _("Synchronization")
        EVENT = "event", _("Registry event")
        CONNECTION_REMOVED = "connection_removed", _("Connection removed")

    tag = models.CharField(max_length=128)
    time = models.DateTimeField(help_text="When the console observed the change.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    old_digest = models.CharField(max_length=150, blank=True)
    new_digest = models.CharField(max_length=150, blank=True)
    registry_pushed_at = models.DateTimeField(
        null=True, blank=True, help_text="The push time the registry reports for the new state."
    )
    source = models.CharField(max_length=24, choices=Source.choices, default=Source.SYNC)
    task = models.ForeignKey(
        SyncTask,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="changes",
        db_index=False,  # change_task_repo_idx starts with it
    )

    objects = ChangeQuerySet.as_manager()

    class Meta:
        verbose_name = "change"
        verbose_name_plural = "changes"
        ordering = ["-time", "-id"]
        indexes = [
            # With id, a deep page of the newest first is read from the index alone.
            models.Index(fields=["project", "time", "id"], name="change_proj_time_id_idx"),
            models.Index(fields=["project", "kind", "time"], name="change_proj_kind_time_idx"),
            models.Index(fields=["project", "tag"], name="change_proj_tag_idx"),
            models.Index(fields=["project", "new_digest"], name="change_proj_new_idx"),
            models.Index(fields=["project", "old_digest"], name="change_proj_old_idx"),
            models.Index(fields=["project", "repository_path"], name="change_proj_path_idx"),
            models.Index(fields=["repository", "tag", "time"], name="change_repo_tag_time_idx"),
            models.Index(fields=["task", "repository"], name="change_task_repo_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.repository_path}:{self.tag} {self.kind} at {self.time:%Y-%m-%d %H:%M:%S}"

    @property
    def digest(self) -> str:
        """The digest the change is about: the new one, or the removed one."""
        return self.new_digest or self.old_digest


class ImageIntervalQuerySet(models.QuerySet):
    def for_user(self, user) -> ImageIntervalQuerySet:
        return self.filter(project__in=Project.objects.for_user(user))

    def at(self, moment: datetime) -> ImageIntervalQuerySet:
        """The states current at `moment`: the inventory as the console knew it then."""
        return self.filter(valid_from__lte=moment).filter(
            Q(valid_to__isnull=True) | Q(valid_to__gt=moment)
        )

    def current(self) -> ImageIntervalQuerySet:
        return self.filter(valid_to__isnull=True)


# The columns the as-of indexes hold besides the interval's times (see ImageInterval.Meta).
AS_OF_COVERED = (
    "registry_updated_at",
    "size",
    "registry",
    "repository",
    "tag",
    "digest",
)


class ImageInterval(RepositoryIdentity, ImageState):
    """One stretch of time during which a tag had one state (digest and details): from when the
    console first saw that state until it saw it change or go; open while still current."""

    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)
    # Set when the interval closes: the node of a relational interval tree over whole seconds
    # at which it is registered (see `fork_of`); NULL while open.
    fork = models.BigIntegerField(null=True, blank=True)
    # Not indexed: read with their interval, never looked up (a deleted task's rows are found
    # by a scan, once, when its project goes).
    opened_by = models.ForeignKey(
        SyncTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    closed_by = models.ForeignKey(
        SyncTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    objects = ImageIntervalQuerySet.as_manager()

    class Meta:
        verbose_name = "image interval"
        verbose_name_plural = "image intervals"
        ordering = ["-valid_from", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "tag"],
                condition=Q(valid_to__isnull=True),
                name="imageinterval_one_open_per_tag",
            )
        ]
        indexes = [
            # The inventory as of a moment (see `stabbing_parts`), counted per type and listed
            # by id from these two indexes alone (id too: PostgreSQL's indexes do not hold it):
            # the open intervals (fork and valid_to NULL), and the closed ones registered at
            # each node of the moment's path, as ranges of valid_to or of valid_from. They also
            # hold what Image View filters, searches and sorts a moment's ~100,000 rows by most
            # (type, registry, repository, tag, digest, size, update time), so that a page of
            # them and its counts never read the rows (108,000 row reads: 0.2-0.3 s on SQLite).
            # The id before them: a sync's new intervals (same project, no fork, same start
            # and type) are appended at the end of the index, not put in place by size.
            models.Index(
                fields=["project", "fork", "valid_to", "valid_from", "repository_type", "id"]
                + list(AS_OF_COVERED),
                name="interval_fork_to_covered_idx",
            ),
            models.Index(
                fields=["project", "fork", "valid_from", "repository_type", "id"]
                + list(AS_OF_COVERED),
                name="interval_fork_from_covered_idx",
            ),
            models.Index(fields=["repository", "tag", "valid_from"], name="interval_repo_tag_idx"),
            models.Index(fields=["project", "digest"], name="interval_proj_digest_idx"),
            models.Index(fields=["project", "tag"], name="interval_proj_tag_idx"),
            models.Index(fields=["project", "size"], name="interval_proj_size_idx"),
            # With id, Image View's default sort ("-updated") as of a moment walks this index
            # alone on PostgreSQL, testing each id against the moment's (no table reads).
            models.Index(
                fields=["project", "registry_updated_at", "id"], name="interval_proj_updated_id_idx"
            ),
            models.Index(fields=["project", "image_created_at"], name="interval_proj_created_idx"),
            models.Index(fields=["project", "registry_name"], name="interval_proj_registry_idx"),
            models.Index(fields=["project", "repository_path"], name="interval_proj_path_idx"),
            # Where the project's history starts (as_of before it is refused).
            models.Index(fields=["project", "valid_from"], name="interval_proj_from_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.repository_path}:{self.tag} {self.digest[:19]} from {self.valid_from}"

    @classmethod
    def opening(cls, repository: Repository, image: Image, now: datetime, task) -> ImageInterval:
        interval = cls(**image.state(), valid_from=now, opened_by=task)
        interval.first_seen_at = image.first_seen_at or now
        interval.identify(repository)
        return interval


# The intervals (and images) whose digest is not `sha256:` and 64 lowercase hex digits, as each
# database writes it in the partial indexes `interval_odd_digest_idx` and `image_odd_digest_idx`
# (migrations 0025 and 0030): a query with the same text reads that index, which is empty while
# every digest has that form.
ODD_DIGEST = {
    "postgresql": "digest !~ '^sha256:[0-9a-f]{64}$'",
    "sqlite": (
        "NOT (length(digest) = 71 AND substr(digest, 1, 7) = 'sha256:'"
        " AND substr(digest, 8) NOT GLOB '*[^0-9a-f]*')"
    ),
}
STANDARD_DIGEST_PREFIX = "sha256:"


def has_odd_digests(project_id: int, model: type[models.Model] | None = None) -> bool:
    """Whether an interval of the project ever had a digest of another form than
    `sha256:<64 lowercase hex digits>` -- or, with `model=Image`, whether an image of the
    live inventory has one (one probe of the partial index, migrations 0025 and 0030; True on
    a database without it)."""
    condition = ODD_DIGEST.get(connection.vendor)
    if condition is None:
        return True
    table = connection.ops.quote_name((model or ImageInterval)._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE project_id = %s AND {condition} LIMIT 1", [project_id]
        )
        return cursor.fetchone() is not None


def digests_containing(text: str) -> str:
    """Which digests of the standard form (`sha256:` and 64 lowercase hex digits) contain
    `text`, compared as `icontains` compares: "all", "none", or "some" (only those holding it
    among their hex digits). Text outside ASCII is "some": PostgreSQL's UPPER() maps a few
    such letters to ASCII ones."""
    value = text.lower()
    if not value.isascii():
        return "some"
    if value in STANDARD_DIGEST_PREFIX:
        return "all"
    hexadecimal = set("0123456789abcdef")
    head, colon, tail = value.rpartition(":")
    if not colon:  # no colon: within the hex digits (or "sha256", which is "all" above)
        return "some" if set(value) <= hexadecimal and len(value) <= 64 else "none"
    # With a colon: the end of "sha256", the colon, the first hex digits.
    if STANDARD_DIGEST_PREFIX[:-1].endswith(head) and set(tail) <= hexadecimal:
        return "some" if len(tail) <= 64 else "none"
    return "none"


class RepositoryName(models.Model):
    """A (namespace, name) that intervals of a repository were written with: a repository has
    one, or a few once its names changed, so that Image View as of a moment finds the
    intervals of a namespace or an image name by their repository id, which the as-of indexes
    hold, instead of reading each interval's own copy of the names (`ImageAsOfFilter.
    filter_repository`). Recorded with the intervals (`record_names`); a repository without
    a row here, and the intervals of a removed connection (no repository), are read."""

    repository = models.ForeignKey(
        Repository, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    namespace = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255)

    class Meta:
        verbose_name = "repository name in the history"
        verbose_name_plural = "repository names in the history"
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "namespace", "name"], name="repositoryname_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def record_names(repository: Repository) -> None:
    """Note the names `repository` gives the intervals opened now (one statement; nothing
    when they are known)."""
    with connection.cursor() as cursor:
        cursor.execute(*names_statement(repository))


def names_statement(repository: Repository) -> tuple[str, list]:
    """`record_names`' statement, to run with others."""
    quote = connection.ops.quote_name
    table = quote(RepositoryName._meta.db_table)
    columns = ", ".join(quote(column) for column in ("repository_id", "namespace", "name"))
    return (
        f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        [repository.pk, repository.namespace, repository.name],
    )


# --- the inventory as of a moment: a relational interval tree ---------------------------------
#
# "The intervals open at t" (valid_from <= t < valid_to) is a stabbing query, which no B-tree
# answers by itself: two ranges, each matching about half of the history. Each closed interval
# is therefore registered at one node of a virtual binary tree over whole seconds since 1970,
# its fork: the node of the smallest subtree that holds both its ends, which lies inside the
# interval (a relational interval tree: Kriegel, Poetke, Seidl, "Managing intervals
# efficiently in object-relational databases", VLDB 2000). Every interval that holds
# t is registered at a node of the path from the root to t's second, and at a node after t it
# holds t exactly when valid_from <= t, at a node before t exactly when valid_to > t. So the
# moment is ~40 ranges of two indexes, (fork, valid_from) and (fork, valid_to), that return
# only matching rows. The fork is only an accelerator: a closed interval without one (none is
# written so) is still found, by its own small range (see `stabbing_parts`).

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FORK_LEVELS = 40  # nodes up to 2**40 seconds: far beyond any moment the console records


def _second(moment: datetime) -> int:
    """`moment` as whole seconds since 1970 (rounded down)."""
    elapsed = moment - _EPOCH
    return elapsed.days * 86400 + elapsed.seconds


def _at_second(second: int) -> datetime:
    return _EPOCH + timedelta(seconds=second)


def fork_of(valid_from: datetime, valid_to: datetime) -> int:
    """The node a closed interval is registered at: its end's second with the bits below the
    highest one in which its start's and end's seconds differ cleared (their common prefix,
    then a 1: the middle of the smallest subtree holding both)."""
    low, high = _second(valid_from), _second(valid_to)
    if low >= high:
        return high
    level = (low ^ high).bit_length() - 1
    return (high >> level) << level


def fork_when_closed(now: datetime) -> RawSQL:
    """`fork_of(valid_from, now)` of each row, as an SQL expression for the UPDATE that closes
    intervals at `now`: the end being the same for all of them, the fork is one of ~31 nodes
    (the end's second with its lowest 1, 2, ... bits cleared), the first, from the top level
    down, that is after the row's start. Written as SQL text: as a Case of 31 Whens, Django
    took longer to build it than the database to run it (a re-sync of 200 repositories)."""
    high = _second(now)
    column = connection.ops.quote_name("valid_from")
    sql, params = ["CASE"], []
    for level in range(high.bit_length() - 1, 0, -1):
        node = (high >> level) << level
        sql.append(f"WHEN {column} < %s THEN %s")
        params += [connection.ops.adapt_datetimefield_value(_at_second(node)), node]
    sql.append("ELSE %s END")
    return RawSQL(" ".join(sql), [*params, high], output_field=BigIntegerField())


def stabbing_nodes(moment: datetime) -> tuple[list[int], list[int]]:
    """The nodes of the path to `moment`'s second: (after it, at or before it). An interval
    registered at a node after the moment holds it when valid_from <= moment; at a node at or
    before it, when valid_to > moment (and valid_from <= moment, at the moment's own node)."""
    second = _second(moment)
    after, before = set(), {second}
    for level in range(FORK_LEVELS):
        node = ((second >> (level + 1)) << (level + 1)) | (1 << level)
        (after if node > second else before).add(node)
    return sorted(after), sorted(before)


def stabbing_parts(queryset: models.QuerySet, moment: datetime, valid_from=None) -> dict:
    """`queryset` (intervals) narrowed to those open at `moment`, as disjoint parts, each a
    range (or ~20 ranges) of one index: still open; registered at a node after the moment;
    at a node at or before it; closed without a fork. `valid_from` is the expression those
    last two test the start with (SQLite must not read them through the start's index)."""
    after, before = stabbing_nodes(moment)
    queryset = queryset.alias(
        started=valid_from if valid_from is not None else models.F("valid_from")
    )
    return {
        "open": queryset.filter(fork__isnull=True, valid_to__isnull=True, valid_from__lte=moment),
        "after": queryset.filter(fork__in=after, valid_from__lte=moment),
        "before": queryset.filter(fork__in=before, valid_to__gt=moment, started__lte=moment),
        "unforked": queryset.filter(fork__isnull=True, valid_to__gt=moment, started__lte=moment),
    }


STABBING_PARTS = ("open", "after", "before", "unforked")


@dataclass
class HistoryRecorder:
    """Collects what one reconcile (or one removal) of a repository changed and writes it with
    a few bulk statements: Change rows, the intervals it closes and those it opens. Use it
    inside the transaction that changes the inventory, after the images are written: the new
    intervals are copied from the stored image rows by the database (INSERT ... SELECT), and
    so are the changes when every one is an addition (a first sync, a new repository), so a
    first sync of 100,000 tags builds no history object in Python. Other changes are built
    here, in the listing's order, which the Changes list shows for one moment (a copy is in
    the images' order, which is the listing's too: they were created in it)."""

    repository: Repository
    now: datetime
    task: SyncTask | None = None
    source: str = Change.Source.SYNC
    # (kind, tag, old digest, new digest, the registry's push time), in the listing's order
    changes: list[tuple] = field(default_factory=list)
    opened_tags: list[str] = field(default_factory=list)
    closed_tags: list[str] = field(default_factory=list)

    def added(self, tag: str, digest: str, pushed) -> None:
        """A new tag, pointing to `digest`, pushed at `pushed` by the registry's word."""
        self.changes.append((Change.Kind.ADDED, tag, "", digest, pushed))
        self.opened_tags.append(tag)

    def restated(self, old_digest: str, tag: str, digest: str, pushed) -> None:
        """A stored tag whose state changed (now `digest`, pushed at `pushed` by the
        registry's word): re-pushed when its digest did (a Change), else a new interval only
        (its details or its "latest" mark changed)."""
        if old_digest != digest:
            self.changes.append((Change.Kind.REPUSHED, tag, old_digest, digest, pushed))
        self.closed_tags.append(tag)
        self.opened_tags.append(tag)

    def removed(self, tag: str, digest: str) -> None:
        self.changes.append((Change.Kind.REMOVED, tag, digest, "", None))
        self.closed_tags.append(tag)

    def write(self, later: list[tuple[str, list]] | None = None) -> None:
        """Write what was collected. `later`: see `bulk.keep_or_run` (on PostgreSQL these
        statements then wait for the transaction's last round trip, after the image writes
        that the copies read, which wait there too)."""
        from imagesync.bulk import keep_or_run, queryset_update_statement

        statements = []
        tags = self.closed_tags
        for start in range(0, len(tags), BATCH_SIZE):
            closed = ImageInterval.objects.filter(
                repository=self.repository, tag__in=tags[start : start + BATCH_SIZE]
            ).current()
            statements.append(
                queryset_update_statement(
                    closed, valid_to=self.now, closed_by=self.task, fork=fork_when_closed(self.now)
                )
            )
        if self.opened_tags:
            statements.append(names_statement(self.repository))
        statements += self._copies(ImageInterval, _INTERVAL_COPY, self.opened_tags)
        if all(change[0] == Change.Kind.ADDED for change in self.changes):
            tags = [change[1] for change in self.changes]
            keep_or_run([*statements, *self._copies(Change, _ADDED_COPY, tags)], later)
            return
        keep_or_run(statements, later)
        self._write_changes(self.changes, later)

    def _write_changes(self, changes: list[tuple], later: list | None) -> None:
        """Insert these changes in their order, as plain rows (imagesync.bulk)."""
        from imagesync.bulk import insert_rows

        repository, registry = self.repository, self.repository.registry
        task_id = self.task.pk if self.task is not None else None
        identity = (
            registry.project_id,
            registry.pk,
            repository.pk,
            registry.name,
            repository.type,
            repository.path,
            repository.namespace,
            repository.name,
        )
        rows = (
            (*identity, tag, self.now, str(kind), old, new, pushed, str(self.source), task_id)
            for kind, tag, old, new, pushed in changes
        )
        insert_rows(Change, _CHANGE_FIELDS, rows, later=later)

    def _copies(self, model, copy: dict[str, str], tags: list[str]) -> list[tuple[str, list]]:
        """The statements that write a row of `model` per stored image of these tags, copied
        from the image row by the database, in the images' order."""
        if not tags:
            return []
        quote = connection.ops.quote_name
        moment = model._meta.get_field("time" if model is Change else "valid_from")
        registry = self.repository.registry
        values = {
            "registry_id": registry.pk,
            "registry_name": registry.name,
            "repository_type": self.repository.type,
            "repository_path": self.repository.path,
            "namespace": self.repository.namespace,
            "name": self.repository.name,
            "now": moment.get_db_prep_value(self.now, connection),
            "task_id": self.task.pk if self.task is not None else None,
            "source": str(self.source),
            "added": str(Change.Kind.ADDED),
            "empty": "",
        }
        targets = ", ".join(quote(column) for column in copy)
        sources, params = [], []
        for source in copy.values():
            if source.startswith("%"):
                sources.append("%s")
                params.append(values[source[1:]])
            else:
                sources.append("NULL" if source == "NULL" else quote(source))
        sql = (
            f"INSERT INTO {quote(model._meta.db_table)} ({targets}) SELECT {', '.join(sources)}"
            f" FROM {quote(Image._meta.db_table)} WHERE {quote('repository_id')} = %s AND"
        )
        statements = []
        for start in range(0, len(tags), BATCH_SIZE):
            chunk = tags[start : start + BATCH_SIZE]
            marks = ", ".join(["%s"] * len(chunk))
            statements.append(
                (
                    f"{sql} {quote('tag')} IN ({marks}) ORDER BY {quote('id')}",
                    [*params, self.repository.pk, *chunk],
                )
            )
        return statements


_CHANGE_FIELDS = (
    "project",
    "registry",
    "repository",
    *RepositoryIdentity.NAME_FIELDS,
    "tag",
    "time",
    "kind",
    "old_digest",
    "new_digest",
    "registry_pushed_at",
    "source",
    "task",
)


# What a new row copies from its image row (a bare name), takes from the recorder (%name)
# or is (NULL).
_IDENTITY_COPY = {
    "project_id": "project_id",
    "registry_id": "%registry_id",
    "repository_id": "repository_id",
    "registry_name": "%registry_name",
    "repository_type": "%repository_type",
    "repository_path": "%repository_path",
    "namespace": "%namespace",
    "name": "%name",
    "tag": "tag",
}
_INTERVAL_COPY = {
    **_IDENTITY_COPY,
    **{column: column for column in ImageState.STATE_FIELDS if column != "tag"},
    "valid_from": "%now",
    "valid_to": "NULL",
    "fork": "NULL",
    "opened_by_id": "%task_id",
    "closed_by_id": "NULL",
}
_ADDED_COPY = {
    **_IDENTITY_COPY,
    "time": "%now",
    "kind": "%added",
    "old_digest": "%empty",
    "new_digest": "digest",
    "registry_pushed_at": "registry_updated_at",
    "source": "%source",
    "task_id": "%task_id",
}


def forget_images(
    repository: Repository, now: datetime, task=None, source=Change.Source.SYNC
) -> int:
    """Delete every stored image of `repository`, recording each as removed; their number."""
    history = HistoryRecorder(repository, now, task, source)
    rows = list(Image.objects.filter(repository=repository).values_list("pk", "tag", "digest"))
    for _pk, tag, digest in rows:
        history.removed(tag, digest)
    history.write()
    ids = [row[0] for row in rows]
    for start in range(0, len(ids), BATCH_SIZE):
        Image.objects.filter(pk__in=ids[start : start + BATCH_SIZE]).delete()
    return len(rows)


def purge(now: datetime | None = None, batch: int = 1000) -> dict[str, int]:
    """Delete changes and closed intervals older than HISTORY_RETENTION_DAYS, a batch per short
    transaction so that syncs are never held up behind one long delete."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.HISTORY_RETENTION_DAYS)
    counts = {"changes": 0, "intervals": 0}
    for key, model, old in (
        ("changes", Change, Q(time__lt=cutoff)),
        ("intervals", ImageInterval, Q(valid_to__lt=cutoff)),
    ):
        while True:
            with transaction.atomic():
                ids = list(model.objects.filter(old).values_list("pk", flat=True)[:batch])
                if not ids:
                    break
                counts[key] += model.objects.filter(pk__in=ids).delete()[0]
    if any(counts.values()):
        logger.info(
            "History retention purged %(changes)s changes, %(intervals)s intervals.", counts
        )
    return counts


# --- the diff between two moments ----------------------------------------------------------------


@dataclass(frozen=True)
class DiffRow:
    """One tag whose state differs between two moments: added (absent then, present now),
    re-pushed (another digest) or removed; names as last recorded."""

    kind: str
    repository_id: int | None
    registry_name: str
    repository_type: str
    repository_path: str
    namespace: str
    name: str
    tag: str
    old_digest: str
    new_digest: str


@dataclass
class InventoryDiff:
    """The net differences between the inventory at `start` and at `end`, sorted by registry,
    repository and tag, with their number per kind."""

    start: datetime
    end: datetime
    rows: list[DiffRow]

    @property
    def counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in Change.Kind.values}
        for row in self.rows:
            counts[row.kind] += 1
        return counts


def history_start(project: Project) -> datetime | None:
    """The earliest moment the project's history knows (None: nothing recorded yet)."""
    return (
        ImageInterval.objects.filter(project=project)
        .order_by("valid_from")
        .values_list("valid_from", flat=True)
        .first()
    )


_DIFF_FIELDS = ("repository_id", *RepositoryIdentity.NAME_FIELDS, "tag", "old_digest", "new_digest")


def inventory_diff(project: Project, start: datetime, end: datetime) -> InventoryDiff:
    """What differs between `ImageInterval.objects.at(start)` and `.at(end)` for `project`.

    Read from the changes in (start, end] rather than from two whole inventories: the state at
    `end` is the state at `start` plus those changes, so the first change of a tag says what it
    was at `start` and the last what it is at `end` (a tag added and removed in between, or
    re-pushed back to its old digest, differs in nothing). A tag of a removed connection has
    lost its repository link, so it is known by its registry's name and path instead."""
    first: dict[tuple, tuple] = {}
    last: dict[tuple, tuple] = {}
    changes = (
        Change.objects.filter(project=project, time__gt=start, time__lte=end)
        .order_by("time", "id")
        .values_list(*_DIFF_FIELDS)
    )
    for row in changes.iterator(chunk_size=2000):
        key = (row[0], row[6]) if row[0] is not None else (None, *row[1:4], row[6])
        first.setdefault(key, row)
        last[key] = row
    rows = []
    for key, row in last.items():
        before, after = first[key][7], row[8]
        if before == after:
            continue
        kind = Change.Kind.ADDED if not before else Change.Kind.REMOVED
        if before and after:
            kind = Change.Kind.REPUSHED
        rows.append(DiffRow(str(kind), *row[:7], before, after))
    rows.sort(key=lambda r: (r.registry_name, r.repository_type, r.repository_path, r.tag))
    return InventoryDiff(start, end, rows)
