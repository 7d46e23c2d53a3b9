"""The one writer of exports: CSV and JSON from a table's columns, streamed row by row.

Every CSV of the app goes through `csv_lines`, so every cell is plain text for a
spreadsheet: a value an admin or a registry chose (a registry named `=HYPERLINK(...)`) never
becomes a formula.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone

from imagesync.tables import Column

# A spreadsheet reads a cell starting with one of these as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """A CSV cell: lists joined with commas, booleans true/false, nothing empty, and a
    leading apostrophe before anything a spreadsheet would run."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Line:
    """A file-like object whose write returns the line, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(columns: list[Column], rows: Iterable[Any]) -> Iterator[str]:
    """A header of column keys, then one line per row."""
    writer = csv.writer(_Line())
    yield writer.writerow([column.key for column in columns])
    for row in rows:
        yield writer.writerow([cell(column.value(row)) for column in columns])


def json_lines(columns: list[Column], rows: Iterable[Any]) -> Iterator[str]:
    """One JSON array of objects keyed by column key, one object per line."""
    empty = True
    for row in rows:
        record = {column.key: column.value(row) for column in columns}
        yield ("[\n" if empty else ",\n") + json.dumps(record, ensure_ascii=False)
        empty = False
    yield "[]\n" if empty else "\n]\n"


FORMATS = {"csv": csv_lines, "json": json_lines}


def csv_download(columns: list[Column], rows: Iterable[Any], name: str) -> StreamingHttpResponse:
    """A streamed CSV attachment named `<name>-<local time>.csv`."""
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(
        csv_lines(columns, rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response
