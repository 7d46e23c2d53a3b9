"""Manage registry connections from the command line, as the console does.

    manage.py registry add --project P --kind {swr,harbor,jfrog,other} --name N --url URL
                           [--username U] [--password-stdin] [--insecure-http] [--no-verify-tls]
                           [--region R --project-id ID]        (SWR)
                           [--harbor-projects a,b]             (Harbor)
                           [--repository-keys a,b]             (JFrog)
                           [--repositories team/a,team/b]      (OCI registry without a catalog)
                           [--option key=value ...]
    manage.py registry list [--project P]
    manage.py registry test N [--project P]
    manage.py registry remove N [--project P]
    manage.py registry webhook N [--project P] [--rotate] [--disable] [--format {text,json}]

A secret is read from standard input (--password-stdin), never from the command line. `add`
runs the console's RegistryForm, so it accepts and refuses what the console does, with the
same messages, and is audited the same way.
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagesync.forms import RegistryForm
from imagesync.models import Project, Registry

# The command's flag for each field of the registry form, to name it in an error.
FLAGS = {
    "name": "--name",
    "kind": "--kind",
    "endpoint": "--url",
    "username": "--username",
    "secret": "--password-stdin",
    "region": "--region",
    "project_id": "--project-id",
    "projects": "--harbor-projects",
    "repo_keys": "--repository-keys",
    "repositories": "--repositories",
    "options": "--option",
}
HINTS = {"insecure_http": " Add --insecure-http to allow it."}


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


def form_problems(form: RegistryForm) -> str:
    """The form's errors on one line, each after the flag it is about."""
    problems = []
    for field, errors in form.errors.as_data().items():
        for error in errors:
            text = " ".join(error.messages) + HINTS.get(error.code or "", "")
            flag = FLAGS.get(field)
            problems.append(f"{flag}: {text}" if flag else text)
    return "; ".join(problems)


def format_row(cells, widths) -> str:
    return "  ".join(
        str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)
    ).rstrip()


class Command(BaseCommand):
    help = "Add, list, test and remove registry connections; set up their registry events."

    def add_arguments(self, parser):
        parser.__class__ = OneLineParser
        actions = parser.add_subparsers(dest="action", metavar="{add,list,test,remove,webhook}")
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
        add.add_argument("--region", help="SWR: the region, e.g. cn-north-4.")
        add.add_argument("--project-id", help="SWR: the project ID of the region.")
        add.add_argument("--harbor-projects", help="Harbor: only these projects (comma-separated).")
        add.add_argument(
            "--repository-keys", help="JFrog: only these repository keys (comma-separated)."
        )
        add.add_argument(
            "--repositories",
            help="OCI registry without a catalog: the repositories (comma-separated).",
        )
        add.add_argument(
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Any option (JSON value, or a comma-separated list), e.g. max_concurrency=4.",
        )

        listing = actions.add_parser("list", help="List registry connections.")
        listing.add_argument("--project", help="Only this project.")

        test = actions.add_parser("test", help="Test a connection and store the result.")
        test.add_argument("name")
        test.add_argument("--project")

        remove = actions.add_parser("remove", help="Remove a registry and its inventory.")
        remove.add_argument("name")
        remove.add_argument("--project")

        webhook = actions.add_parser(
            "webhook",
            help="Turn registry events on and print the receiver URL, header and setup.",
        )
        webhook.add_argument("name")
        webhook.add_argument("--project")
        webhook.add_argument(
            "--rotate",
            action="store_true",
            help="A new secret (printed once); the old one stops working at once.",
        )
        webhook.add_argument("--disable", action="store_true", help="Turn registry events off.")
        webhook.add_argument("--format", choices=["text", "json"], default="text")

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

    def do_add(self, *, project, kind, name, url, option, **flags):
        proj = self.project(project)
        data = RegistryForm.data_from_options(kind, dict(parse_option(item) for item in option))
        for field, flag in (
            ("region", "region"),
            ("project_id", "project_id"),
            ("projects", "harbor_projects"),
            ("repo_keys", "repository_keys"),
            ("repositories", "repositories"),
        ):
            if flags.get(flag) is not None:
                data[field] = flags[flag]
        data.update(
            name=name,
            kind=kind,
            endpoint=url,
            username=flags["username"],
            secret=self.read_secret() if flags["password_stdin"] else "",
            allow_insecure_http=flags["insecure_http"],
            verify_tls=not flags["no_verify_tls"],
        )
        form = RegistryForm(data=data, project=proj)
        if not form.is_valid():
            raise CommandError(f"Invalid registry: {form_problems(form)}")
        form.save(via="command line")
        self.stdout.write(f"Added registry {name!r} ({kind}) to project {project!r}.")

    @staticmethod
    def read_secret() -> str:
        secret = sys.stdin.readline().rstrip("\r\n")
        if not secret:
            raise CommandError("--password-stdin was given but standard input was empty.")
        return secret

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

    def do_webhook(self, *, name, project=None, rotate=False, disable=False, format="text", **_):
        """Events are turned on if they were off. The secret can only be printed when it is
        created (first time on) or rotated: it is stored encrypted and never shown again."""
        from imagesync.events import EventReceiver, summary

        registry = self.registry(name, project)
        receiver = EventReceiver.of(registry)
        secret = None
        if disable:
            receiver.disable(via="command line")
        elif not receiver.enabled:
            secret = receiver.enable(via="command line")
        if rotate:
            secret = receiver.rotate(via="command line")
        shown = summary(registry, secret=secret)
        if format == "json":
            keys = ("url", "secret", "header", "setup", "enabled")
            self.stdout.write(json.dumps({key: shown[key] for key in keys}, indent=2))
            return
        state = "on" if shown["enabled"] else "off"
        self.stdout.write(f"Registry events of {name!r}: {state}")
        self.stdout.write(f"URL:    {shown['url']}")
        if secret:
            self.stdout.write(f"Secret: {secret}")
            self.stdout.write("        (shown only now; store it in the registry's setup below)")
            self.stdout.write(f"Header: {shown['header']}: {shown['header_value']}")
        else:
            self.stdout.write(
                "Secret: not shown -- it was shown when it was created; --rotate makes a new "
                "one (the old one stops working at once)."
            )
            self.stdout.write(f"Header: {shown['header']}")
        self.stdout.write("Setup:")
        self.stdout.write(shown["setup"])

    def do_remove(self, *, name, project=None, **_):
        registry = self.registry(name, project)
        registry.remove(via="command line")
        self.stdout.write(f"Removed registry {name!r} and its inventory.")
