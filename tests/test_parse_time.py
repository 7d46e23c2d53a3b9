"""parse_time reads a registry's time in one fromisoformat call when it can (a sync parses two
to four times per image: push and pull times) and gives exactly what the earlier normalizing
parser gave, for every input: that parser is kept here as the reference."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from imagesync.registries.base import parse_time


def reference(value):
    """parse_time before the one-call path (commit 22535f0)."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("0001-01-01"):
        return None
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(itertools.takewhile(str.isdigit, tail))
        rest = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{rest}" if digits else head + rest
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def same(value) -> None:
    expected, got = reference(value), parse_time(value)
    assert got == expected, value
    if got is not None:
        assert got.utcoffset() == expected.utcoffset(), value


def test_the_forms_registries_send():
    cases = {
        "2024-06-01T10:00:00.000Z": datetime(2024, 6, 1, 10, tzinfo=UTC),  # Harbor
        "2024-06-01T10:00:00Z": datetime(2024, 6, 1, 10, tzinfo=UTC),  # SWR
        "2024-06-02T09:30:00.000+02:00": datetime(2024, 6, 2, 7, 30, tzinfo=UTC),  # JFrog
        "2024-06-01T10:00:00.123456789Z": datetime(2024, 6, 1, 10, 0, 0, 123456, tzinfo=UTC),
        "2024-06-01 10:00:00": datetime(2024, 6, 1, 10, tzinfo=UTC),
        "2024-06-01T10:00:00.z": datetime(2024, 6, 1, 10, tzinfo=UTC),
        "0001-01-01T00:00:00.000Z": None,  # Harbor's and SWR's "never"
        "0001-01-01T00:00:00Z": None,
        "": None,
        "yesterday": None,
        "2024-13-01T00:00:00Z": None,
    }
    for text, expected in cases.items():
        assert parse_time(text) == expected, text
        same(text)
    assert parse_time(None) is None and parse_time(1717236000) is None
    assert parse_time("2024-06-01T10:00:00+05:30").utcoffset() == timedelta(hours=5, minutes=30)


fraction = st.text(alphabet="0123456789", max_size=12).map(lambda d: "." + d if d else "")
zone = st.sampled_from(["", "Z", "z", "+00:00", "-07:00", "+0530", "+05", " ", "UTC", "+25:00"])
separator = st.sampled_from(["T", " ", "t", "_", "x"])
moments = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.none()
)


@settings(max_examples=3000, deadline=None)
@given(moments, separator, fraction, zone, st.sampled_from(["", " ", "\t"]))
def test_timestamps_parse_as_before(moment, sep, frac, tz, pad):
    same(f"{pad}{moment:%Y-%m-%d}{sep}{moment:%H:%M:%S}{frac}{tz}{pad}")
    same(f"{moment:%Y-%m-%d}{sep}{moment:%H:%M}{tz}")
    same(f"{moment:%Y%m%d}T{moment:%H%M%S}{frac}{tz}")
    same(moment.replace(tzinfo=timezone(timedelta(hours=3))).isoformat())


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789-:.TZz +_tW,", max_size=40))
def test_any_text_parses_as_before(text):
    same(text)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=30))
def test_any_unicode_parses_as_before(text):
    same(text)
