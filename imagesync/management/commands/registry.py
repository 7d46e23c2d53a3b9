"""Manage registry connections from the command line, as the console does.

    manage.py registry add --project P --kind {swr,harbor,jfrog,other} --name N --url URL
                           [--username U] [--password-stdin] [--insecure-http] [--option key=value ...]
    manage.py registry list [--project P]
    manage.py registry test N [--project P]
    manage.py registry remove N [--project P]

A secret is read from standard input (--password-stdin), never from the command line.
"""

from __future__ import annotations

import json
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, transaction

from imagesync.models import AuditEvent, Project, Registry


class OneLineParser(CommandParser):
    """Argument errors as one line, never a usage dump or a traceback."""

    def error(self, message):
        if self.called_from_command_line:
            self.exit(2, f"{self.prog}: error: {message}\n")
        raise CommandError(f"Error: {message}")


def parse_option(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CommandError(f"--option must look like key=value (got {text!r}).")
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except ValueError:
        value = [item.strip() for item in raw.split(",") if item.strip()] if "," in raw else raw
    return key, value


def format_row(cells, widths) -> str:
    return "  ".join(
        str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)
    ).rstrip()


class Command(BaseCommand):
    help = "Add, list, test and remove registry connections."

    def add_arguments(self, parser):
        parser.__class__ = OneLineParser
        actions = parser.add_subparsers(dest="action", metavar="{add,list,test,remove}")
        actions.required = True

        add = actions.add_parser("add", help="Connect a registry.")
        add.add_argument("--project", required=True, help="Project name.")
        add.add_argument("--kind", required=True, choices=[k.value for k in Registry.Kind])
        add.add_argument("--name", required=True)
        add.add_argument("--url", required=True, help="Registry or API endpoint URL.")
        add.add_argument("--username", default="", help="User, robot account, or AK for SWR.")
        add.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the password, token or SK from standard input.",
        )
        add.add_argument(
            "--insecure-http", action="store_true", help="Allow a plain http:// endpoint."
        )
        add.add_argument(
            "--no-verify-tls", action="store_true", help="Skip TLS certificate verification."
        )
        add.add_argument(
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Kind-specific option (JSON value, or a comma-separated list), e.g. "
            "project_id=abc, repositories=library/alpine,library/nginx, max_concurrency=4.",
        )

        listing = actions.add_parser("list", help="List registry connections.")
        listing.add_argument("--project", help="Only this project.")

        test = actions.add_parser("test", help="Test a connection and store the result.")
        test.add_argument("name")
        test.add_argument("--project")

        remove = actions.add_parser("remove", help="Remove a registry and its inventory.")
        remove.add_argument("name")
        remove.add_argument("--project")

    def handle(self, *args, action, **options):
        return getattr(self, f"do_{action}")(**options)

    # --- helpers ------------------------------------------------------------------------------

    def project(self, name: str) -> Project:
        project = Project.objects.filter(name=name).first()
        if project is None:
            raise CommandError(f"Unknown project {name!r}.")
        return project

    def registry(self, name: str, project_name: str | None) -> Registry:
        registries = Registry.objects.filter(name=name).select_related("project")
        if project_name:
            registries = registries.filter(project=self.project(project_name))
        found = list(registries[:2])
        if not found:
            where = f" in project {project_name!r}" if project_name else ""
            raise CommandError(f"Unknown registry {name!r}{where}.")
        if len(found) > 1:
            raise CommandError(f"Several projects have a registry named {name!r}; add --project.")
        return found[0]

    # --- actions ------------------------------------------------------------------------------

    def do_add(
        self,
        *,
        project,
        kind,
        name,
        url,
        username,
        password_stdin,
        insecure_http,
        no_verify_tls,
        option,
        **_,
    ):
        proj = self.project(project)
        opts = dict(parse_option(item) for item in option)
        secret = ""
        if password_stdin:
            secret = sys.stdin.readline().rstrip("\r\n")
            if not secret:
                raise CommandError("--password-stdin was given but standard input was empty.")
        registry = Registry(
            project=proj,
            kind=kind,
            name=name,
            endpoint=url,
            username=username,
            allow_insecure_http=insecure_http,
            verify_tls=not no_verify_tls,
            options=opts,
        )
        if secret:
            registry.set_secret(secret)
        try:
            registry.full_clean()
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(errs)}" if field != "__all__" else " ".join(errs)
                for field, errs in exc.message_dict.items()
            )
            raise CommandError(f"Invalid registry: {problems}") from None
        if url.lower().startswith("http://") and not insecure_http:
            raise CommandError("The URL uses plain http://; add --insecure-http to allow it.")
        try:
            with transaction.atomic():
                registry.save()
        except IntegrityError:
            raise CommandError(
                f"Project {project!r} already has a registry named {name!r}."
            ) from None
        AuditEvent.record("registry.create", project=proj, target=name, detail="via command line")
        self.stdout.write(f"Added registry {name!r} ({kind}) to project {project!r}.")

    def do_list(self, *, project=None, **_):
        registries = Registry.objects.select_related("project").order_by("project__name", "name")
        if project:
            registries = registries.filter(project=self.project(project))
        header = ["PROJECT", "NAME", "KIND", "ENDPOINT", "STATUS", "REASON", "LAST SYNC"]
        rows = [
            [
                r.project.name,
                r.name,
                r.kind,
                r.endpoint,
                r.connection_status,
                r.connection_reason_code or "-",
                r.last_synced_at.isoformat(timespec="seconds") if r.last_synced_at else "-",
            ]
            for r in registries
        ]
        if not rows:
            self.stdout.write("No registries.")
            return
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write(format_row(row, widths))

    def do_test(self, *, name, project=None, **_):
        registry = self.registry(name, project)
        result = registry.test_connection()
        ok, code, message = result.ok, result.code, result.message
        if not ok:
            raise CommandError(f"Connection to {name!r} failed [{code}]: {message}")
        self.stdout.write(f"Connection to {name!r} succeeded." + (f" {message}" if message else ""))

    def do_remove(self, *, name, project=None, **_):
        registry = self.registry(name, project)
        AuditEvent.record(
            "registry.delete", project=registry.project, target=name, detail="via command line"
        )
        registry.delete()
        self.stdout.write(f"Removed registry {name!r} and its inventory.")
