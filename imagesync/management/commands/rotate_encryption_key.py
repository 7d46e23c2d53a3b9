"""Re-encrypt every stored registry secret with the newest key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from imagesync import crypto
from imagesync.models import AuditEvent, Registry


class Command(BaseCommand):
    help = (
        "Re-encrypt all registry secrets with the first key of ENCRYPTION_KEY. To rotate: put the "
        "new key first and keep the old one after it (ENCRYPTION_KEY=new,old), run this command, "
        "then drop the old key. --generate prints a new key to use."
    )

    def add_arguments(self, parser):
        parser.add_argument("--generate", action="store_true", help="Print a new key and exit.")

    def handle(self, *args, generate=False, **options):
        if generate:
            from cryptography.fernet import Fernet

            self.stdout.write(Fernet.generate_key().decode())
            return
        rotated = 0
        try:
            with transaction.atomic():
                for registry in Registry.objects.select_for_update().exclude(secret_encrypted=""):
                    registry.secret_encrypted = crypto.rotate(registry.secret_encrypted)
                    registry.save(update_fields=["secret_encrypted"])
                    rotated += 1
        except crypto.SecretUnreadable as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        AuditEvent.record("secrets.rotate", detail=f"{rotated} registry secret(s) re-encrypted")
        self.stdout.write(f"Re-encrypted {rotated} registry secret(s) with the newest key.")
