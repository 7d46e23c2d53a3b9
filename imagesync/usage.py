"""Usage: what registries say about the use of an image (last pulled, pull count) and the
untagged images they still serve by digest.

Where the figures come from (`Image.pull_source`):

- ``harbor``: the artifact's and tag's `pull_time` from the artifact listing (the newer of the
  two; Harbor's zero time 0001-01-01 means never pulled), the repository's `pull_count`;
- ``jfrog``: `stat.downloaded` / `stat.downloads` of each tag's manifest file, read for a
  whole repository key by one extra AQL query;
- ``swr``: SWR Enterprise Edition's artifact and tag `pull_time` (zero time: never), the
  repository's `pull_count`;
- ``swr_repository``: SWR's private and shared repositories count downloads per repository
  (`num_download`) and keep no pull time: every image of the repository shows that count,
  and is "never pulled" only when it is 0;
- ``events``: pull notifications of a Distribution registry with registry events turned on
  (manifest pulls by anyone but the console itself), from the moment events were on;
- ``""``: the registry reports nothing: "unknown", never "never".

`pull_known` tells "never pulled" (known, no pull time) from "unknown". A pull only changes
these fields: it is no change of what a tag points to, so it writes no history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from imagesync.registries.base import USER_AGENT, parse_time

HARBOR = "harbor"
JFROG = "jfrog"
SWR = "swr"
SWR_REPOSITORY = "swr_repository"
EVENTS = "events"
NONE = ""

SOURCE_CHOICES = [
    (HARBOR, "Harbor"),
    (JFROG, "JFrog"),
    (SWR, "SWR"),
    (SWR_REPOSITORY, _("SWR (repository pulls)")),
    (EVENTS, _("registry events")),
    (NONE, _("none")),
]
SOURCE_LABELS = dict(SOURCE_CHOICES)
# Sources whose pull count is the whole repository's, not the image's.
REPOSITORY_COUNTS = (HARBOR, SWR, SWR_REPOSITORY)
# The names `pull_source` takes in exports and the API ("none" for no source).
SOURCE_CODES = {HARBOR, JFROG, SWR, SWR_REPOSITORY, EVENTS, "none"}

# The usage summary's "not pulled in N days" columns.
SUMMARY_DAYS = (30, 90, 365)


def source_label(source: str) -> str:
    return str(SOURCE_LABELS.get(source or NONE, source))


def source_code(source: str) -> str:
    """The `pull_source` value of exports and the API."""
    return source or "none"


def is_console_agent(user_agent: object) -> bool:
    """Whether a request was the console's own (its HTTP client's User-Agent)."""
    product = USER_AGENT.split("/", 1)[0] + "/"
    return isinstance(user_agent, str) and user_agent.startswith(product)


# --- filters ---------------------------------------------------------------------------------


def not_pulled_since(cutoff: datetime) -> Q:
    """Images known not to have been pulled since `cutoff` (never, or last before it)."""
    return KNOWN & (Q(last_pulled__isnull=True) | Q(last_pulled__lt=cutoff))


# Written as `IN (...)`, not as the bare boolean Django writes for `=True`: SQLite uses only an
# equality (or IN) on `tagged` / `pull_known` to walk the (project, tagged, ...) indexes. The
# bare `tagged` is kept too: it is the condition of the (repository, tag) unique index, which
# SQLite uses for a query only when that term appears in it.
TAGGED = Q(tagged__in=[True]) & Q(tagged=True)
UNTAGGED = Q(tagged__in=[False])
KNOWN = Q(pull_known__in=[True])
NEVER_PULLED = KNOWN & Q(last_pulled__isnull=True)
UNKNOWN = Q(pull_known__in=[False])


SUMMARY_SECONDS = 60  # a summary is reused this long (or until the next sync's results)


def usage_counts(project, images, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """type -> {not_30, not_90, not_365, never, unknown, untagged}: tagged images not pulled
    in 30 / 90 / 365 days, never pulled, with unknown pull data, and untagged images. One
    GROUP BY repository over `images` (one project's rows, no join), summed per type."""
    from imagesync.models import Repository

    now = now or timezone.now()
    tagged = Q(tagged=True)
    counts = {
        f"not_{days}": Count("id", filter=tagged & not_pulled_since(now - timedelta(days)))
        for days in SUMMARY_DAYS
    }
    counts["never"] = Count("id", filter=tagged & NEVER_PULLED)
    counts["unknown"] = Count("id", filter=tagged & UNKNOWN)
    counts["untagged"] = Count("id", filter=Q(tagged=False))
    rows = images.order_by().values("repository_id").annotate(**counts)
    type_of = dict(Repository.objects.of_project(project).values_list("pk", "type"))
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        type_ = type_of.get(row.pop("repository_id"))
        into = totals.setdefault(type_, dict.fromkeys(counts, 0))
        for key, n in row.items():
            into[key] += n
    return totals


def cached_usage_counts(project, images) -> dict[str, dict[str, int]]:
    """usage_counts, computed at most once a minute per project and again after a sync (the
    key holds the project's latest repository sync): at 100,000 images the GROUP BY reads
    every row, which Image View should not pay on each page."""
    from django.core.cache import cache
    from django.db.models import Max

    from imagesync.models import Repository

    synced = Repository.objects.of_project(project).aggregate(at=Max("last_synced_at"))["at"]
    stamp = synced.timestamp() if synced else 0
    key = f"usage-summary:{project.pk}:{project.created_at.timestamp()}:{stamp}"
    totals = cache.get(key)
    if totals is None:
        totals = usage_counts(project, images)
        cache.set(key, totals, SUMMARY_SECONDS)
    return totals


def usage_summary(totals: dict[str, dict[str, int]]) -> list[dict]:
    """The summary's rows, in the order of the repository types: each number with the Image
    View URL listing exactly those rows."""
    from django.urls import reverse

    from imagesync.models import RepositoryType

    url = reverse("imagesync:image-list")
    links = {f"not_{days}": {"not_pulled_days": days} for days in SUMMARY_DAYS}
    links.update(never={"pulled": "never"}, unknown={"pulled": "unknown"})
    links["untagged"] = {"tagged": "untagged"}
    summary = []
    for value, label in RepositoryType.choices:
        if value not in totals:
            continue
        cells = [
            {"key": key, "count": n, "url": f"{url}?{urlencode({'type': value, **links[key]})}"}
            for key, n in totals[value].items()
        ]
        summary.append({"type": value, "label": label, "cells": cells})
    return summary


# --- pull events -----------------------------------------------------------------------------


def pull_time(value: object, now: datetime) -> datetime:
    """An event's time, or now when it has none or claims the future."""
    when = parse_time(value) if isinstance(value, str) else None
    if when is None or when > now + timedelta(minutes=5):
        return now
    return when


def record_pulls(registry_id: int, pulls: list[tuple[str, str, str, datetime]]) -> int:
    """Set last pulled (source "events") of the images of a connection that pull events name:
    (repository path, digest, tag, time). Only images already in the inventory, matched by
    repository and digest (by tag when the event has no digest); an older pull never moves
    last pulled back. No re-list, no history: a pull changes usage, not the inventory.
    Returns the rows updated."""
    from imagesync.models import Image

    updated = 0
    latest: dict[tuple[str, str, str], datetime] = {}
    for path, digest, tag, when in pulls:
        key = (path, digest, "" if digest else tag)
        if key not in latest or when > latest[key]:
            latest[key] = when
    for (path, digest, tag), when in latest.items():
        match = Q(digest=digest) if digest else Q(tag=tag, tagged=True)
        rows = Image.objects.filter(
            match,
            repository__registry_id=registry_id,
            repository__path=path,
        ).filter(Q(last_pulled__isnull=True) | Q(last_pulled__lt=when))
        updated += rows.update(last_pulled=when, pull_source=EVENTS, pull_known=True)
    return updated
