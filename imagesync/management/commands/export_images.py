"""`manage.py export_images`: write a project's image inventory as JSON or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagesync.management.commands.sync_images import find_project
from imagesync.models import Image

FIELDS = [
    "registry",
    "type",
    "namespace",
    "repository",
    "tag",
    "digest",
    "size",
    "media_type",
    "platforms",
    "created",
    "updated",
    "last_synced",
]

HELP = """\
Write the image inventory of a project, one record per image (tag), with the fields
registry, type, namespace, repository, tag, digest, size, media_type, platforms, created,
updated, last_synced. `repository` is the path under the registry host that `docker pull`
uses and `namespace` its first component. Times are ISO 8601 in UTC. JSON is one array of
objects (platforms a list, missing values null); CSV has a header row, platforms joined by
commas and missing values empty. Rows are streamed, so large inventories do not load at once."""


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def records(project) -> Iterator[dict]:
    """One dict per image of the project, in registry / repository / tag order."""
    rows = (
        Image.objects.filter(project=project)
        .order_by("repository__registry__name", "repository__path", "tag")
        .values_list(
            "repository__registry__name",
            "repository__type",
            "repository__namespace",
            "repository__path",
            "tag",
            "digest",
            "size",
            "media_type",
            "platforms",
            "image_created_at",
            "registry_updated_at",
            "last_synced_at",
        )
    )
    for row in rows.iterator(chunk_size=2000):
        registry, type_, namespace, path, tag, digest, size, media, platforms, c, u, s = row
        if not namespace and "/" in path:
            namespace = path.split("/", 1)[0]
        yield {
            "registry": registry,
            "type": type_,
            "namespace": namespace,
            "repository": path,
            "tag": tag,
            "digest": digest,
            "size": size,
            "media_type": media,
            "platforms": list(platforms or []),
            "created": _time(c),
            "updated": _time(u),
            "last_synced": _time(s),
        }


def write_json(out: IO[str], items: Iterator[dict]) -> int:
    count = 0
    out.write("[")
    for item in items:
        out.write("\n" if count == 0 else ",\n")
        out.write(json.dumps(item, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _cell(value) -> str:
    """Plain text for a spreadsheet: no formula (a registry name is typed by an admin)."""
    if value is None:
        return ""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def write_csv(out: IO[str], items: Iterator[dict]) -> int:
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    count = 0
    for item in items:
        item = dict(item, platforms=",".join(item["platforms"]))
        writer.writerow([_cell(item[name]) for name in FIELDS])
        count += 1
    return count


class _Unterminated:
    """Writes through a command's OutputWrapper without it adding line endings."""

    def __init__(self, wrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project name (or id).")
        parser.add_argument("--format", choices=["json", "csv"], default="json")
        parser.add_argument("--output", help="File to write (default: standard output).")

    def handle(self, *args, **options) -> None:
        project = find_project(options["project"])
        writer = write_json if options["format"] == "json" else write_csv
        path = options.get("output")
        if not path or path == "-":
            writer(_Unterminated(self.stdout), records(project))
            return
        try:
            with open(path, "w", encoding="utf-8", newline="") as out:
                count = writer(out, records(project))
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None
        self.stderr.write(f"Wrote {count} images to {path}.")
