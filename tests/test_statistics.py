"""Planner statistics are refreshed after a large sync, and a bare migrate makes the cache."""

from __future__ import annotations

from django.db import connection

from imagesync.models import SyncTask
from imagesync.sync.run import refresh_statistics


def test_a_large_sync_refreshes_the_planner_statistics(project):
    task = SyncTask.objects.create(project=project, status="succeeded", images_added=5000)
    assert refresh_statistics(task) is True
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'imagesync_image'"
            )
            assert cursor.fetchone()[0] is not None


def test_a_small_sync_leaves_the_statistics_alone(project):
    task = SyncTask.objects.create(project=project, status="succeeded", images_updated=3)
    assert refresh_statistics(task) is False


def test_migrate_creates_the_cache_table_that_login_throttling_needs(db):
    from django.conf import settings

    if "DatabaseCache" not in settings.CACHES["default"]["BACKEND"]:
        return  # Redis holds the cache: nothing to create
    assert "imagesync_cache" in connection.introspection.table_names()
