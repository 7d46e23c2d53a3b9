"""`manage.py export_images`: write a project's image inventory as JSON or CSV."""

from __future__ import annotations

from collections.abc import Iterator

from django.core.management.base import CommandError, CommandParser

from imagesync.filters import ImageAsOfFilter
from imagesync.history import ImageInterval
from imagesync.management.commands._export import ExportCommand
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


TAGGED = {"tagged": {"tagged": True}, "untagged": {"tagged": False}, "all": {}}


def images_of(project, tagged: str = "tagged") -> Iterator[Image]:
    """Every image of the project (tagged ones by default, as Image View), in registry /
    repository / tag order (untagged ones, whose tag is empty, first in their repository)."""
    rows = (
        Image.objects.filter(project=project, **TAGGED[tagged])
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


class Command(ExportCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--as-of",
            help="The inventory as of this moment: an ISO 8601 time, or a day (its end).",
        )
        parser.add_argument(
            "--tagged",
            choices=sorted(TAGGED),
            default="tagged",
            help="Tagged images (default, as Image View), untagged ones (artifacts no tag "
            "names, with an empty tag) or all.",
        )

    def handle(self, *args, **options) -> None:
        project = find_project(options["project"])
        if options.get("as_of") is not None:
            columns, rows = images_as_of(project, options["as_of"])
        else:
            columns, rows = IMAGES.exported, images_of(project, options["tagged"])
        self.export(options, columns, rows, "images")
