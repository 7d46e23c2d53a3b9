"""A partial index of the images whose digest is not `sha256:` and 64 lowercase hex digits, by
project, as migration 0025 made for the intervals (the same condition, taken from it): empty
while every digest has that form (it costs a sync nothing then), it tells Image View at once
whether a search can match a digest at all (`ImageFilter.search`: a text no such digest can
contain then tests no digest, which was half of a search's cost on SQLite). Not in the
models' Meta: Django cannot write either condition. So a later migration that makes Django
rebuild imagesync_image on SQLite (an AlterField: SQLite copies the table and recreates only
the indexes the models declare) must create this index again; while it is missing,
`has_odd_digests` reads the table instead of the index (slower, still right)."""

from importlib import import_module

from django.db import migrations

ODD_DIGEST = import_module("imagesync.migrations.0025_interval_odd_digest_index").ODD_DIGEST


def create(apps, schema_editor):
    condition = ODD_DIGEST.get(schema_editor.connection.vendor)
    if condition is not None:
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS image_odd_digest_idx"
            f" ON imagesync_image (project_id) WHERE {condition}"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor in ODD_DIGEST:
        schema_editor.execute("DROP INDEX IF EXISTS image_odd_digest_idx")


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0029_image_synced_is_repositorys")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
