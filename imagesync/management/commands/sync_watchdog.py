"""`manage.py sync_watchdog`: run the sync watchdog once (the qcluster runs it every minute)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from imagesync.sync.watchdog import watchdog


class Command(BaseCommand):
    help = (
        "Finish running sync tasks whose heartbeat is older than SYNC_HEARTBEAT_TIMEOUT as "
        "interrupted, and re-enqueue queued tasks no worker picked up. The background worker "
        "runs this every minute; use the command when no worker is running."
    )

    def handle(self, *args, **options) -> None:
        found = watchdog()
        self.stdout.write(
            f"Interrupted {found['interrupted']} task(s) without a heartbeat for "
            f"{settings.SYNC_HEARTBEAT_TIMEOUT} s; re-enqueued {found['requeued']}, "
            f"gave up on {found['abandoned']} never picked up."
        )
