"""What the export commands share: writing rows of a table's columns as JSON or CSV to a file
or to standard output, which a reader such as `head` may close early."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagesync import exports
from imagesync.tables import Column


class _Unterminated:
    """Writes through a command's OutputWrapper without it adding line endings."""

    def __init__(self, wrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()


def _write(out: IO[str], chunks: Iterator[str]) -> None:
    for chunk in chunks:
        out.write(chunk)
    out.flush()


class ExportCommand(BaseCommand):
    """A command that writes rows as JSON or CSV (--format, --output) for a project."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project name (or id).")
        parser.add_argument("--format", choices=sorted(exports.FORMATS), default="json")
        parser.add_argument("--output", help="File to write (default: standard output).")

    def export(self, options: dict, columns: list[Column], rows: Iterable[Any], noun: str) -> None:
        """Write `rows` to --output (saying how many on standard error) or standard output."""
        lines = exports.FORMATS[options["format"]]
        path = options.get("output")
        if not path or path == "-":
            try:
                _write(_Unterminated(self.stdout), lines(columns, rows))
            except BrokenPipeError:
                self._reader_left()
            return
        count = 0

        def counted() -> Iterator[Any]:
            nonlocal count
            for row in rows:
                count += 1
                yield row

        try:
            with open(path, "w", encoding="utf-8", newline="") as out:
                _write(out, lines(columns, counted()))
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None
        self.stderr.write(f"Wrote {count} {noun} to {path}.")

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
