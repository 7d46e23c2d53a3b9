"""Form widgets rendered by Python functions that write exactly the HTML of Django's own
widget templates (`django/forms/widgets/*.html`), byte for byte.

Every list page renders a filter form of a dozen widgets. Through the template engine each
one is a new context and a chain of `{% include %}`s (a select's options, every attribute):
a sixth of Image View's time with 100,000 images, more than its database queries. Here the
common widgets (the `<input>` family, `<select>`, checkbox and radio lists, `<textarea>`) are
written directly; any other template name (the admin's widgets, a form's own layout) goes to
the templates as before. `tests/test_formrender.py` renders every widget kind both ways, with
awkward values, and compares the bytes.

The template language's rules kept here: `{{ value }}` converts times to the current time
zone, localizes numbers and dates, and escapes what is not already safe; the `stringformat`
filter keeps a safe value safe; `{% include %}` keeps each template file's final newline; the
renderer strips the whole result.
"""

from __future__ import annotations

from collections.abc import Callable

from django.forms.renderers import DjangoTemplates
from django.utils.formats import localize
from django.utils.html import conditional_escape
from django.utils.safestring import SafeData, mark_safe
from django.utils.timezone import template_localtime

WIDGETS = "django/forms/widgets/"


def _text(value) -> str:
    """`{{ value }}`, as the template engine prints a variable."""
    value = localize(template_localtime(value))
    return conditional_escape(value if isinstance(value, str) else str(value))


def _formatted(value) -> str:
    """`{{ value|stringformat:'s' }}`."""
    if isinstance(value, tuple):
        value = str(value)
    try:
        text = "%s" % value  # noqa: UP031 - the filter's own operation
    except (ValueError, TypeError):
        text = ""
    if isinstance(value, SafeData):
        text = mark_safe(text)
    return _text(text)


def _attrs(attrs: dict) -> str:
    """attrs.html: ` name="value"` per attribute, a bare name for True, nothing for False."""
    parts = []
    for name, value in attrs.items():
        if value is not False:
            parts.append(" " + _text(name))
            if value is not True:
                parts.append('="' + _formatted(value) + '"')
    return "".join(parts)


def _input(widget: dict) -> str:
    """input.html, with its final newline (as an `{% include %}` of it keeps)."""
    value = widget["value"]
    shown = f' value="{_formatted(value)}"' if value != None else ""  # noqa: E711 - as {% if %}
    return (
        f'<input type="{_text(widget["type"])}" name="{_text(widget["name"])}"'
        f"{shown}{_attrs(widget['attrs'])}>\n"
    )


def _input_option(widget: dict) -> str:
    """input_option.html: an input, in its label when the option wraps it."""
    if not widget.get("wrap_label"):
        return _input(widget) + "\n"
    label_id = widget["attrs"].get("id")
    target = f' for="{_text(label_id)}"' if label_id else ""
    return f"<label{target}>{_input(widget)} {_text(widget['label'])}</label>\n"


def _select_option(widget: dict) -> str:
    return (
        f'<option value="{_formatted(widget["value"])}"{_attrs(widget["attrs"])}>'
        f"{_text(widget['label'])}</option>\n"
    )


def _included(option: dict) -> str:
    """`{% include option.template_name with widget=option %}`."""
    write = FAST.get(option["template_name"])
    if write is None:
        raise _Unknown
    return write(option)


class _Unknown(Exception):
    """An option with a template this module does not write: the templates render it all."""


def _grouped(optgroups, opening: str, option: str, closing: str) -> str:
    """The options of a select or of a list of inputs: before a named group's options
    `opening` (its `{label}`), each option's HTML in `option` (`{html}`), after them
    `closing`."""
    parts = []
    for group, options, _index in optgroups:
        if group:
            parts.append(opening.format(label=_text(group)))
        parts.extend(option.format(html=_included(each)) for each in options)
        if group:
            parts.append(closing)
    return "".join(parts)


def _select(widget: dict) -> str:
    options = _grouped(
        widget["optgroups"], '\n  <optgroup label="{label}">', "\n  {html}", "\n  </optgroup>"
    )
    return f'<select name="{_text(widget["name"])}"{_attrs(widget["attrs"])}>{options}\n</select>\n'


def _multiple_input(widget: dict) -> str:
    attrs = widget["attrs"]
    shown_id = f' id="{_text(attrs["id"])}"' if attrs.get("id") else ""
    shown_class = f' class="{_text(attrs["class"])}"' if attrs.get("class") else ""
    options = _grouped(
        widget["optgroups"],
        "\n  <div><label>{label}</label>",
        "<div>\n    {html}</div>",
        "\n  </div>",
    )
    return f"<div{shown_id}{shown_class}>{options}\n</div>\n"


def _textarea(widget: dict) -> str:
    value = widget["value"]
    return (
        f'<textarea name="{_text(widget["name"])}"{_attrs(widget["attrs"])}>\n'
        f"{_text(value) if value else ''}</textarea>\n"
    )


def _include_of(write: Callable[[dict], str]) -> Callable[[dict], str]:
    """A template whose whole text is one `{% include %}` line: the include, then a newline."""
    return lambda widget: write(widget) + "\n"


FAST: dict[str, Callable[[dict], str]] = {
    WIDGETS + "input.html": _input,
    WIDGETS + "input_option.html": _input_option,
    WIDGETS + "checkbox_option.html": _include_of(_input_option),
    WIDGETS + "radio_option.html": _include_of(_input_option),
    WIDGETS + "select.html": _select,
    WIDGETS + "select_option.html": _select_option,
    WIDGETS + "multiple_input.html": _multiple_input,
    WIDGETS + "checkbox_select.html": _include_of(_multiple_input),
    WIDGETS + "radio.html": _include_of(_multiple_input),
    WIDGETS + "textarea.html": _textarea,
    **{
        f"{WIDGETS}{kind}.html": _include_of(_input)
        for kind in (
            "checkbox",
            "color",
            "date",
            "datetime",
            "email",
            "hidden",
            "number",
            "password",
            "search",
            "tel",
            "text",
            "time",
            "url",
        )
    },
}


class WidgetRenderer(DjangoTemplates):
    """Django's default form renderer, with the common widgets written in Python (the
    `FORM_RENDERER` setting)."""

    def render(self, template_name, context, request=None):
        write = FAST.get(template_name)
        widget = context.get("widget") if write is not None else None
        if isinstance(widget, dict):
            try:
                return write(widget).strip()
            except _Unknown:
                pass
        return super().render(template_name, context, request)
