"""Image View's table rows, built in Python: one tag renders a whole page of rows.

A row template included once per row cost 0.8 ms a row (a 100-row page: 80 ms of its 140):
every include binds a context, every `{{ }}` walks the context stack, every `{% translate %}`
asks the catalog, every `{% url %}` reverses. Here the words of a page are looked up once per
language, the time zone once per page, the tag-history link once per page (a tag is put into
it as `reverse` would), and each row is one string joined from escaped values. The markup is
byte for byte what `_image_row.html` rendered (tests/test_image_rows.py compares the two).
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from html import escape

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeData, mark_safe
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from imagesync.models import RepositoryType
from imagesync.templatetags.imagesync_extras import TYPE_SHORT, binary_size
from imagesync.templatetags.usage_tags import last_pulled_cell, pulls_cell

register = template.Library()

# A tag that `reverse` puts into a URL unchanged (no percent-encoding, nothing to escape): the
# OCI tag grammar is [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. Any other tag is reversed one by one.
_PLAIN_TAG = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_MARK_ID, _MARK_TAG = 9081726354, "tagmarker0qz9"

_COPY_ICON = (
    '<svg viewBox="0 0 16 16" width="13" height="13" aria-hidden="true" focusable="false">'
    '<rect x="5" y="5" width="9" height="9" rx="1.5" fill="none" stroke="currentColor"'
    ' stroke-width="1.5"/><path d="M11 3.5V3a1 1 0 0 0-1-1H3a1 1 0 0 0-1 1v7a1 1 0 0 0 1 1h.5"'
    ' fill="none" stroke="currentColor" stroke-width="1.5"/></svg>'
)


def _text(value) -> str:
    """As `{{ value }}` renders a string: escaped unless marked safe."""
    if isinstance(value, SafeData):
        return str(value)
    return escape(value if isinstance(value, str) else str(value))


@lru_cache(maxsize=16)
def _words(language: str | None) -> dict[str, str]:
    """The row's words in one language (`{% translate %}` of a literal is not escaped)."""
    return {
        "untagged_title": _("No tag names this image; it is served by its digest"),
        "untagged": _("untagged"),
        "latest_title": _("The most recently pushed tag of its repository"),
        "latest": _("latest"),
        "history": _("History"),
        "history_of": _("History of %(path)s:%(tag)s"),
        "copy_digest": _("Copy digest %(digest)s"),
        "copy_full": _("Copy full digest"),
        "copied": _("Copied"),
        "multi_arch": _("multi-arch"),
        # Per type: get_type_display (the cell's title) and type_short (its text).
        **{f"type:{value}": escape(str(label)) for value, label in RepositoryType.choices},
        **{f"short:{value}": escape(str(label)) for value, label in TYPE_SHORT.items()},
    }


def _history_link():
    """A function (repository id, tag) -> the escaped tag-history URL, from one `reverse`."""
    sample = reverse("imagesync:tag-history", args=[_MARK_ID, _MARK_TAG])
    head, _sep, rest = sample.partition(str(_MARK_ID))
    middle, _sep, tail = rest.partition(_MARK_TAG)
    if not _sep or _MARK_TAG in tail or str(_MARK_ID) in middle + tail:  # pragma: no cover
        return lambda pk, tag: escape(reverse("imagesync:tag-history", args=[pk, tag]))
    head, middle, tail = escape(head), escape(middle), escape(tail)

    def link(pk, tag: str) -> str:
        if type(pk) is int and _PLAIN_TAG.match(tag):
            return f"{head}{pk}{middle}{tag}{tail}"
        return escape(reverse("imagesync:tag-history", args=[pk, tag]))

    return link


def _platforms(value) -> str:
    """`{{ platforms|join:", "|default:"—" }}`."""
    try:
        joined = ", ".join([_text(v) for v in value])
    except TypeError:  # join gives the value back when it is not iterable
        return _text(value or "—")
    return joined or "—"


@register.simple_tag
def image_rows(rows, as_of=None) -> str:
    """The <tr> of each Image View row (an Image, or an interval shaped like one)."""
    words = _words(get_language())
    tz = timezone.get_current_timezone()
    link = _history_link()
    untagged = (
        f'<span class="tag tag-untagged" title="{words["untagged_title"]}">'
        f"{words['untagged']}</span>"
    )
    latest = (
        f' <span class="tag tag-latest" title="{words["latest_title"]}">{words["latest"]}</span>'
    )
    multi = f' <span class="tag tag-multi">{words["multi_arch"]}</span>'

    def when(value) -> str:
        if not isinstance(value, dt.datetime):
            return "—"
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")

    out = []
    for row in rows:
        repository = row.repository
        tag, digest, short = row.tag, row.digest, row.short_digest
        path = _text(repository.path)
        if tag:
            tag_cell = f"<code>{_text(tag)}</code>"
        else:
            tag_cell = untagged
        if row.is_latest:
            tag_cell += latest
        if row.repository_id and tag:
            label = words["history_of"] % {"path": path, "tag": _text(tag)}
            tag_cell += (
                f' <a class="small" href="{link(row.repository_id, tag)}" hx-boost="false"'
                f' aria-label="{label}">{words["history"]}</a>'
            )
        type_ = repository.type
        title = words.get(f"type:{type_}")
        if title is None:
            title = _text(repository.get_type_display())
        shown_type = words.get(f"short:{type_}")
        if shown_type is None:
            shown_type = _text(type_)
        digest = _text(digest)
        short = _text(short)
        platforms = _platforms(row.platforms)
        if row.multi_arch:
            platforms += multi
        if as_of:
            pulled = pulls = "—"
        else:
            pulled, pulls = _text(last_pulled_cell(row)), _text(pulls_cell(row))
        out.append(
            "\n<tr>\n"
            f'  <td class="strong" title="{path}">{_text(repository.name)}</td>\n'
            f"  <td>{tag_cell}</td>\n"
            f"  <td>{_text(repository.namespace or '—')}</td>\n"
            f'  <td class="nowrap" title="{title}">{shown_type}</td>\n'
            f'  <td class="nowrap">{_text(repository.registry.name)}</td>\n'
            f'  <td class="nowrap"><code title="{digest}">{short}</code>'
            f' <button type="button" class="icon-btn copy-btn" data-copy="{digest}"'
            f' aria-label="{words["copy_digest"] % {"digest": short}}"'
            f' title="{words["copy_full"]}" data-copied-title="{words["copied"]}">'
            f"{_COPY_ICON}</button></td>\n"
            f'  <td class="num nowrap">{_text(binary_size(row.size))}</td>\n'
            f"  <td>{platforms}</td>\n"
            f'  <td class="nowrap date">{when(row.image_created_at)}</td>\n'
            f'  <td class="nowrap date">{when(row.registry_updated_at)}</td>\n'
            f'  <td class="nowrap date">{when(row.last_synced_at)}</td>\n'
            f'  <td class="nowrap date usage">{pulled}</td>\n'
            f'  <td class="num nowrap">{pulls}</td>\n'
            "</tr>\n"
        )
    return mark_safe("".join(out))
