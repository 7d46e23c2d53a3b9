"""Image View's usage cells (Last pulled with its source, Pulls), rendered by one tag per cell:
a 100-row page would otherwise pay several translation lookups per row."""

from __future__ import annotations

from functools import lru_cache

from django import template
from django.utils.html import format_html
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from imagesync import usage
from imagesync.templatetags.imagesync_extras import when

register = template.Library()


@lru_cache(maxsize=16)
def _texts(language: str | None) -> dict[str, str]:
    """The cells' words in one language, looked up once per process."""
    texts = {
        "never": _("never"),
        "unknown": _("unknown"),
        "repository": _("(repository)"),
        "repository_title": _(
            "Pulls of the whole repository: the registry counts no pulls per image"
        ),
    }
    for code, _label in usage.SOURCE_CHOICES:
        texts[f"source:{code}"] = usage.source_label(code)
    return texts


@register.simple_tag
def last_pulled_cell(row) -> str:
    """ "2026-11-30 08:00", "never" or "unknown" (muted), and the source on a second line."""
    texts = _texts(get_language())
    if row.last_pulled is not None:
        shown = format_html("{}", when(row.last_pulled))
    elif row.pull_known:
        shown = format_html("{}", texts["never"])
    else:
        shown = format_html('<span class="muted">{}</span>', texts["unknown"])
    if not row.pull_source:
        return shown
    source = texts.get(f"source:{row.pull_source}", row.pull_source)
    return format_html('{}<br><span class="muted small">{}</span>', shown, source)


@register.simple_tag
def pulls_cell(row) -> str:
    """The pull count, marked "(repository)" where it counts the whole repository."""
    if row.pull_count is None:
        return "—"
    if not row.repository_pulls:
        return str(row.pull_count)
    texts = _texts(get_language())
    return format_html(
        '<span title="{}">{} <span class="muted small">{}</span></span>',
        texts["repository_title"],
        row.pull_count,
        texts["repository"],
    )
