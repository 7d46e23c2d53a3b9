"""`manage.py export_changes`: write a project's recorded changes as JSON or CSV."""

from __future__ import annotations

from collections.abc import Iterator

from django.core.management.base import CommandError, CommandParser

from imagesync.filters import ChangeFilter
from imagesync.history import Change
from imagesync.management.commands._export import ExportCommand
from imagesync.management.commands.sync_images import find_project
from imagesync.tables import CHANGES

FIELDS = [column.key for column in CHANGES.exported]

HELP = f"""\
Write the changes the console recorded in a project's inventory, oldest first, one record per
change, with the fields {", ".join(FIELDS)} -- the columns of the Changes tab's Export CSV.
`kind` is added, repushed or removed; `old_digest` is empty for an added tag, `new_digest` for
a removed one; `task` is the id of the sync task that saw the change (empty when none did).
`time` is when the console saw the change, ISO 8601 in UTC. --since and --until take a day
(YYYY-MM-DD, --until includes the whole day) or an ISO 8601 time. JSON is one array of
objects (missing values null); CSV has a header row and missing values empty. Rows are
streamed, so a long history does not load at once."""


def period(since: str | None, until: str | None) -> dict[str, str]:
    """The Changes tab's parameters for [since, until], oldest first; CommandError for a bad
    date (checked before anything is read, so a typo costs no query)."""
    data = {"since": since or "", "until": until or "", "ordering": "time"}
    filterset = ChangeFilter(data, queryset=Change.objects.none())
    if not filterset.is_valid():
        name, errors = next(iter(filterset.errors.items()))
        raise CommandError(f"--{name}: {' '.join(errors)}")
    return data


def changes_of(project, data: dict[str, str]) -> Iterator[Change]:
    """The project's changes that the parameters `data` (see `period`) select."""
    filterset = ChangeFilter(data, queryset=Change.objects.filter(project=project))
    return filterset.qs.iterator(chunk_size=2000)


class Command(ExportCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--since", help="Changes at or after this day or ISO 8601 time.")
        parser.add_argument("--until", help="Changes up to this day (included) or time.")

    def handle(self, *args, **options) -> None:
        data = period(options.get("since"), options.get("until"))
        rows = changes_of(find_project(options["project"]), data)
        self.export(options, CHANGES.exported, rows, "changes")
