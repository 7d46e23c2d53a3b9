"""`manage.py sync_images`: start a synchronization from the command line, like the console."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagesync import reasons
from imagesync.models import Project, Repository, RepositoryType, SyncRefused, SyncTask
from imagesync.sync.jobs import Outcome
from imagesync.sync.run import SyncRun

HELP = """\
Start a synchronization of a project's image inventory and print the task id (first line of
the output). Without --types or --repositories it covers every repository of the project.

--repositories takes comma-separated paths as `docker pull` writes them under the registry
host (e.g. team/api). A plain path is enough when exactly one registry of the project has it;
otherwise write REGISTRY-NAME/PATH (e.g. harbor-prod/team/api).

Without --wait the task is queued for the background worker. With --wait it runs in this
process (no worker needed), prints one line per repository and the outcome, and exits with
status 0 only if the task succeeded (1 otherwise)."""


def find_project(value: str) -> Project:
    """A project by name, or by id when the value is a number."""
    project = Project.objects.filter(name=value).first()
    if project is None and value.isdigit():
        project = Project.objects.filter(pk=int(value)).first()
    if project is None:
        raise CommandError(f"Unknown project {value!r}.")
    return project


def split_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def resolve_repositories(project: Project, paths: list[str]) -> list[Repository]:
    """Repositories of the project named by PATH or REGISTRY-NAME/PATH (see --help)."""
    present = list(Repository.objects.of_project(project).present().select_related("registry"))
    chosen: list[Repository] = []
    for text in paths:
        text = text.strip("/")
        registry_name, _, rest = text.partition("/")
        matches = {
            repo.pk: repo
            for repo in present
            if repo.path == text
            or (rest and repo.registry.name == registry_name and repo.path == rest)
        }
        if not matches:
            raise CommandError(
                f"Unknown repository {text!r} in project {project.name} "
                "(synchronize the whole project first to discover new repositories)."
            )
        if len(matches) > 1:
            names = ", ".join(
                sorted(f"{r.registry.name}/{r.path} ({r.type})" for r in matches.values())
            )
            raise CommandError(
                f"Repository {text!r} is ambiguous: {names}; write it as REGISTRY-NAME/PATH."
            )
        repo = next(iter(matches.values()))
        if repo not in chosen:
            chosen.append(repo)
    return chosen


def progress_line(task: SyncTask, outcome: Outcome) -> str:
    repo = outcome.job.repository
    where = f"{repo.registry.name}/{repo.path}"
    head = f"[{task.repositories_done}/{task.repositories_total}] {where}:"
    if outcome.finished:
        c = outcome.counts
        return (
            f"{head} {c.total} images (added {c.added}, updated {c.updated}, "
            f"removed {c.removed}, unchanged {c.unchanged})"
        )
    return f"{head} failed: {outcome.code}: {outcome.message}"


def outcome_lines(task: SyncTask) -> list[str]:
    lines = [
        f"Task #{task.pk} {task.get_status_display().lower()}: "
        f"{task.repositories_total} repositories, {task.repositories_failed} failed; images "
        f"added {task.images_added}, updated {task.images_updated}, "
        f"removed {task.images_removed}, unchanged {task.images_unchanged}."
    ]
    if task.failure_reason:
        lines.append(task.failure_reason)
    return lines


class Command(BaseCommand):
    help = HELP
    # The system checks load every URLconf, view and template module: 0.5-2 s of the
    # command's start on the build machine, for nothing a sync uses (`manage.py check` and
    # the server still run them).
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name, subcommand, **kwargs):
        from argparse import RawDescriptionHelpFormatter

        kwargs["formatter_class"] = RawDescriptionHelpFormatter
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project name (or id).")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument(
            "--types",
            help="Comma-separated repository types: " + ", ".join(RepositoryType.values) + ".",
        )
        scope.add_argument(
            "--repositories",
            help="Comma-separated repository paths (PATH or REGISTRY-NAME/PATH).",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Run the task here to its end; exit status 0 only if it succeeded.",
        )

    def handle(self, *args, **options) -> None:
        project = find_project(options["project"])
        kwargs: dict = {}
        if options.get("types") is not None:
            kwargs = {"scope": SyncTask.Scope.TYPES, "types": split_list(options["types"])}
            unknown = [t for t in kwargs["types"] if t not in RepositoryType.values]
            if unknown:
                choices = ", ".join(RepositoryType.values)
                raise CommandError(
                    f"Unknown repository type {unknown[0]!r}; choose from {choices}."
                )
        elif options.get("repositories") is not None:
            paths = split_list(options["repositories"])
            if not paths:
                raise CommandError("--repositories needs at least one repository path.")
            kwargs = {
                "scope": SyncTask.Scope.REPOSITORIES,
                "repositories": resolve_repositories(project, paths),
            }
        try:
            task = SyncTask.objects.request(project, enqueue=not options["wait"], **kwargs)
        except SyncRefused as refused:
            raise CommandError(refused.message) from None
        self.stdout.write(str(task.pk))
        if not options["wait"]:
            return
        try:
            run = SyncRun.claim(task.pk, lambda t, o: self.stdout.write(progress_line(t, o)))
            # None: claimed by a worker after all; follow it.
            ended = run.execute() if run is not None else self._follow(task)
        except KeyboardInterrupt:
            task.finish(
                SyncTask.Status.INTERRUPTED,
                reasons.INTERRUPTED,
                "Stopped by the user (sync_images --wait was interrupted).",
            )
            task.skip_unfinished(reasons.INTERRUPTED, "Not synchronized: interrupted.")
            raise CommandError("Interrupted; the task was finished as interrupted.") from None
        for line in outcome_lines(ended):
            self.stdout.write(line)
        if ended.status != SyncTask.Status.SUCCEEDED:
            sys.exit(1)

    @staticmethod
    def _follow(task: SyncTask) -> SyncTask:
        while True:
            task.refresh_from_db()
            if not task.is_active:
                return task
            time.sleep(1)
