"""Prepare a fresh installation: a default project and an admin account."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from imagesync.models import Project, ProjectMembership


class Command(BaseCommand):
    help = (
        "Create the default project and the admin account if they do not exist. The admin "
        "password comes from ADMIN_PASSWORD, or is generated and printed once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", default=os.environ.get("DEFAULT_PROJECT", "default"))
        parser.add_argument("--region", default=os.environ.get("DEFAULT_REGION", "local"))
        parser.add_argument("--username", default=os.environ.get("ADMIN_USERNAME", "admin"))

    @transaction.atomic
    def handle(self, *args, project, region, username, **options):
        if not project.strip() or not username.strip():
            raise CommandError("The project name and the admin username must not be empty.")
        proj, created = Project.objects.get_or_create(name=project, defaults={"region": region})
        if created:
            self.stdout.write(f"Created project {proj}.")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get("ADMIN_PASSWORD") or ""
            generated = not password
            if generated:
                password = secrets.token_urlsafe(18)
            user = User.objects.create_superuser(username=username, email="", password=password)
            if generated:
                self.stdout.write(
                    self.style.WARNING(
                        f"Created admin account {username!r} with password: {password}\n"
                        "  (shown only this once; set ADMIN_PASSWORD to choose it yourself)"
                    )
                )
            else:
                self.stdout.write(
                    f"Created admin account {username!r} (password from ADMIN_PASSWORD)."
                )
        ProjectMembership.objects.get_or_create(
            user=user, project=proj, defaults={"role": ProjectMembership.Role.ADMIN}
        )
