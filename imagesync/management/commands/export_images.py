"""`manage.py export_images`: write a project's image inventory as JSON or CSV."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import IO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagesync import exports
from imagesync.filters import ImageAsOfFilter
from imagesync.history import ImageInterval
from imagesync.management.commands.sync_images import find_project
from imagesync.models import Image
from imagesync.tables import IMAGES, Column

FIELDS = [column.key for column in IMAGES.exported]

HELP = f"""\
Write the image inventory of a project, one record per image (tag), with the fields
{", ".join(FIELDS)} -- the columns of Image View's Export CSV. `repository` is the path under
the registry host that `docker pull` uses and `namespace` its first component. Times are
ISO 8601 in UTC. JSON is one array of objects (platforms a list, missing values null); CSV has
a header row, platforms joined by commas, booleans true/false and missing values empty.
Rows are streamed, so large inventories do not load at once.

--as-of writes the inventory as the console knew it at that moment (an ISO 8601 time, or a
day for the end of that day), with the same fields: what Image View shows as of that moment."""


EXPORT_ORDER = "registry,repository,tag"


def images_of(project) -> Iterator[Image]:
    """Every image of the project, in registry / repository / tag order."""
    rows = (
        Image.objects.filter(project=project)
        .select_related("repository__registry")
        .order_by(*IMAGES.order_by(EXPORT_ORDER))
    )
    return rows.iterator(chunk_size=2000)


def images_as_of(project, as_of: str) -> tuple[list[Column], Iterator[ImageInterval]]:
    """The columns and rows of the project's inventory as of `as_of`, in the same order; a
    CommandError when Image View would refuse that moment."""
    filterset = ImageAsOfFilter(
        {"as_of": as_of, "ordering": EXPORT_ORDER},
        queryset=ImageInterval.objects.filter(project=project),
        project=project,
    )
    if not filterset.is_valid():
        errors = "; ".join(str(error) for errors in filterset.errors.values() for error in errors)
        raise CommandError(f"--as-of {as_of!r}: {errors}")
    rows = filterset.with_details(filterset.qs).iterator(chunk_size=2000)
    return filterset.table.exported, rows


def _write(out: IO[str], chunks: Iterator[str]) -> None:
    for chunk in chunks:
        out.write(chunk)
    out.flush()


class _Unterminated:
    """Writes through a command's OutputWrapper without it adding line endings."""

    def __init__(self, wrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project name (or id).")
        parser.add_argument("--format", choices=sorted(exports.FORMATS), default="json")
        parser.add_argument("--output", help="File to write (default: standard output).")
        parser.add_argument(
            "--as-of",
            help="The inventory as of this moment: an ISO 8601 time, or a day (its end).",
        )

    def handle(self, *args, **options) -> None:
        project = find_project(options["project"])
        lines = exports.FORMATS[options["format"]]
        if options.get("as_of") is not None:
            columns, rows = images_as_of(project, options["as_of"])
        else:
            columns, rows = IMAGES.exported, images_of(project)
        path = options.get("output")
        if not path or path == "-":
            try:
                _write(_Unterminated(self.stdout), lines(columns, rows))
            except BrokenPipeError:
                self._reader_left()
            return
        count = 0

        def counted() -> Iterator[Image]:
            nonlocal count
            for image in rows:
                count += 1
                yield image

        try:
            with open(path, "w", encoding="utf-8", newline="") as out:
                _write(out, lines(columns, counted()))
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None
        self.stderr.write(f"Wrote {count} images to {path}.")

    def _reader_left(self) -> None:
        """The reader closed the pipe (`... | head`): stop quietly, as Unix tools do. Standard
        output is pointed at /dev/null so that Python's final flush does not complain."""
        if getattr(self.stdout, "_out", None) is not sys.stdout:
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
