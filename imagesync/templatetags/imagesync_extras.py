"""Template helpers of the console: human sizes and durations, status labels with icons."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from imagesync import reasons

register = template.Library()

# Status is never shown by colour alone: every badge carries an icon and its label.
STATUS_ICONS = {
    "queued": "◷",
    "running": "↻",
    "pending": "◷",
    "succeeded": "✓",
    "finished": "✓",
    "success": "✓",
    "partially_succeeded": "◐",
    "failed": "✕",
    "fail": "✕",
    "cancelled": "⊘",
    "interrupted": "⚠",
    "skipped": "»",
    "unknown": "?",
    "connecting": "↻",
}


@register.filter
def binary_size(value) -> str:
    """Bytes as a short human size: 512 B, 1.5 KiB, 23.4 MiB, 1.02 GiB."""
    if value is None or value == "":
        return "—"
    try:
        size = float(value)
    except (TypeError, ValueError):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.1f} {unit}" if size < 100 else f"{size:.0f} {unit}"
        size /= 1024
    return "—"  # pragma: no cover


@register.filter
def human_duration(value) -> str:
    """A timedelta as 45s, 3m 05s or 2h 01m."""
    if not isinstance(value, dt.timedelta):
        return "—"
    seconds = max(0, int(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return _("%(hours)dh %(minutes)02dm") % {"hours": hours, "minutes": minutes}
    if minutes:
        return _("%(minutes)dm %(seconds)02ds") % {"minutes": minutes, "seconds": secs}
    return _("%(seconds)ds") % {"seconds": secs}


@register.simple_tag
def status_badge(value: str, label: str = "") -> str:
    """A status badge: icon + text, coloured by a class named after the status."""
    value = str(value or "unknown")
    return format_html(
        '<span class="badge status-{}"><span class="badge-icon" aria-hidden="true">{}</span>{}</span>',
        value,
        STATUS_ICONS.get(value, "•"),
        label or value.replace("_", " ").capitalize(),
    )


TYPE_SHORT = {
    "swr_private": gettext_lazy("SWR private"),
    "swr_shared": gettext_lazy("SWR shared"),
    "swr_enterprise": gettext_lazy("SWR enterprise"),
    "harbor": "Harbor",
    "jfrog": "JFrog",
    "other": "OCI / Docker v2",
}


@register.filter
def type_short(value: str) -> str:
    """A repository type as a short table label (the long label is the cell's title)."""
    return str(TYPE_SHORT.get(str(value), value))


@register.filter
def scope_short(task) -> str:
    """A task's scope in a few words for the task table."""
    if task.scope == "types":
        return _("Types: %(types)s") % {
            "types": ", ".join(type_short(t) for t in task.scope_types or [])
        }
    if task.scope == "repositories":
        return _("Chosen repositories")
    return _("All repositories")


@register.filter
def scope_type_labels(task) -> str:
    """The repository types a 'types' task covers, as their labels."""
    from imagesync.models import RepositoryType

    labels = dict(RepositoryType.choices)
    return ", ".join(str(labels.get(t, t)) for t in task.scope_types or [])


@register.filter
def when(value) -> str:
    """A datetime as "YYYY-MM-DD HH:MM" in the console's time zone ("—" when unknown).

    strftime on the local time is several times faster than the `date` filter, which matters
    for a 100-row table with three times per row."""
    if not isinstance(value, dt.datetime):
        return "—"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


@register.filter
def reason(code: str) -> str:
    """A reason code as its label with the code beside it: "Timed out (timeout)"."""
    if not code:
        return ""
    return format_html('{} <code class="reason-code">{}</code>', reasons.label(code), code)
