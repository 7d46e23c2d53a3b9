"""The console's form renderer (`imagesync.formrender`) writes the common widgets in Python:
every widget, in every state a form puts it in, is byte for byte what Django's own widget
templates write, and every page with a form is unchanged."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest
from django import forms
from django.forms.renderers import DjangoTemplates
from django.test import override_settings
from django.utils import timezone, translation
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy

from imagesync.filters import CheckboxFlag, DropDownList
from imagesync.formrender import FAST, WidgetRenderer
from imagesync.models import SyncTask
from tests.support.factories import make_image, make_repository

TEMPLATES = DjangoTemplates()
PYTHON = WidgetRenderer()

AWKWARD = "a <b> & \"c\" 'd'"
CHOICES = [
    ("", "Any"),
    ("x", AWKWARD),
    (3, 1.5),  # a number: localized as a label, not as a value
    ("lazy", gettext_lazy("Image View")),
    ("Group <g>", [("g1", "one"), ("g2", mark_safe("<em>two</em>"))]),
]


def widgets() -> list[tuple[str, forms.Widget, object]]:
    """(label, widget, value): each widget kind in the states forms give it."""
    attrs = {"class": "c", "id": "id_w", "required": True, "disabled": False, "data-x": AWKWARD}
    cases = []
    for kind in (
        forms.TextInput,
        forms.NumberInput,
        forms.EmailInput,
        forms.URLInput,
        forms.SearchInput,
        forms.TelInput,
        forms.ColorInput,
        forms.HiddenInput,
    ):
        for value in (None, "", AWKWARD, 0, 12345.5, mark_safe("<safe>")):
            cases.append((f"{kind.__name__} {value!r}", kind(attrs=attrs), value))
    cases += [
        ("password", forms.PasswordInput(render_value=True), "secret<"),
        ("password hidden", forms.PasswordInput(), "secret<"),
        ("date", forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"), dt.date(2026, 3, 4)),
        ("date text", forms.DateInput(), "not a date <"),
        ("datetime", forms.DateTimeInput(), dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)),
        ("time", forms.TimeInput(), dt.time(1, 2, 3)),
        ("checkbox off", forms.CheckboxInput(attrs=attrs), False),
        ("checkbox on", forms.CheckboxInput(), True),
        ("checkbox text", forms.CheckboxInput(), "yes"),
        ("flag", CheckboxFlag(), "true"),
        ("flag maybe", CheckboxFlag(), "maybe"),
        ("textarea empty", forms.Textarea(attrs={"rows": 3}), ""),
        ("textarea", forms.Textarea(), f"line 1\n{AWKWARD}"),
        ("select", forms.Select(choices=CHOICES, attrs=attrs), "x"),
        ("select number", forms.Select(choices=CHOICES), 3),
        ("select none", forms.Select(choices=CHOICES), None),
        ("select in group", forms.Select(choices=CHOICES), "g2"),
        ("select empty", forms.Select(choices=[]), None),
        ("select multiple", forms.SelectMultiple(choices=CHOICES), ["x", "g1"]),
        ("drop-down list", DropDownList("All <types>", attrs=attrs), ["x"]),
        ("checkboxes", forms.CheckboxSelectMultiple(choices=CHOICES, attrs=attrs), ["x", 3]),
        ("checkboxes, no id", forms.CheckboxSelectMultiple(choices=CHOICES), []),
        ("radios", forms.RadioSelect(choices=CHOICES, attrs={"id": "r"}), "lazy"),
        ("radios, no id", forms.RadioSelect(choices=CHOICES[:3]), None),
        # Written by the templates (the renderer passes them on): they must still work.
        ("multiple hidden", forms.MultipleHiddenInput(), ["1", "2<"]),
        ("split date and time", forms.SplitDateTimeWidget(), dt.datetime(2026, 1, 2, 3, 4)),
        ("file", forms.ClearableFileInput(), None),
    ]
    return cases


@pytest.mark.parametrize("language", ["en", "zh-hans", "de"])
@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai"])
def test_every_widget_is_what_the_templates_write(language, zone):
    with translation.override(language), timezone.override(zoneinfo.ZoneInfo(zone)):
        for label, widget, value in widgets():
            expected = widget.render("field", value, renderer=TEMPLATES)
            assert widget.render("field", value, renderer=PYTHON) == expected, label
            for subwidget in widget.subwidgets("field", value):  # `{{ choice.tag }}`
                if "template_name" in subwidget:
                    bound = forms.boundfield.BoundWidget(widget, subwidget, TEMPLATES)
                    python = forms.boundfield.BoundWidget(widget, subwidget, PYTHON)
                    assert python.tag() == bound.tag(), label


def test_the_common_widgets_are_written_in_python(monkeypatch):
    """The renderer does write them (a fast path never taken would also pass the test above)."""

    def no_templates(*args, **kwargs):
        raise AssertionError("rendered by a template")

    monkeypatch.setattr(DjangoTemplates, "render", no_templates)
    for label, widget, value in widgets()[:-3]:
        assert widget.render("field", value, renderer=PYTHON), label
    with pytest.raises(AssertionError, match="rendered by a template"):
        forms.MultipleHiddenInput().render("field", ["1"], renderer=PYTHON)
    assert len(FAST) == 23


def _form_html(response) -> str:
    """A page's forms, without the CSRF token (a new one on every response)."""
    html = response.content.decode()
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    return "".join(re.findall(r"<form.*?</form>", html, re.DOTALL))


def test_every_form_page_is_unchanged(superuser, login, registry, project):
    repository = make_repository(registry, "team/api")
    make_image(repository, "v1")
    task = SyncTask.objects.request(project, enqueue=False)
    client = login(superuser)
    pages = [
        "/images/",
        "/images/?type=harbor&registry=x&size_min_mib=-1&multi_arch=maybe&q=%3Cb%3E",
        "/images/?as_of=2000-01-01",
        "/images/synchronize/",
        "/changes/?kind=added&tag=%22x%22",
        "/tasks/",
        f"/tasks/{task.pk}/",
        "/registries/",
        "/registries/new/",
        f"/registries/{registry.pk}/edit/",
        "/audit/",
        "/admin/imagesync/registry/add/",
        f"/admin/imagesync/registry/{registry.pk}/change/",
    ]
    for page in pages:
        with override_settings(FORM_RENDERER="django.forms.renderers.DjangoTemplates"):
            expected = client.get(page)
        response = client.get(page)
        assert response.status_code == expected.status_code == 200, page
        assert "<form" in expected.content.decode(), page
        assert _form_html(response) == _form_html(expected), page
