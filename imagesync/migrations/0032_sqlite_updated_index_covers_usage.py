"""SQLite: `image_proj_updated_idx` (the default sort's index) also holds the id and the
usage columns, so that a deep page of Image View filtered by usage ("not pulled in N days",
never pulled) walks the index alone. Before, SQLite read each image's row to test its
`last_pulled` on the way to the page: page 300 of 100 rows, 67,600 matches of 100,000 images,
walked 44,000 rows in 16 ms; from the index alone, in 4 ms. The id comes right after the time
so the index still gives the sort's order (time, then id) without a sort.

PostgreSQL keeps its index (the model's columns and the id, migration 0024): it meets Image
View's targets at a million images with it, and each column more is written by every image a
sync adds. The model's Meta keeps the three columns both databases share, so a later
migration that makes Django rebuild imagesync_image on SQLite (an AlterField: SQLite copies
the table and recreates the indexes the models declare) must create this one again; until
then the page is as before (slower, still right). `tests/test_image_view_walk.py` checks the
index as the migrations leave it, so such a migration fails that test."""

from django.db import migrations

NAME = "image_proj_updated_idx"
DECLARED = "project_id, tagged, registry_updated_at"
COVERING = "project_id, tagged, registry_updated_at, id, pull_known, last_pulled"


def _recreate(schema_editor, columns: str) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    schema_editor.execute(f'DROP INDEX IF EXISTS "{NAME}"')
    schema_editor.execute(f'CREATE INDEX "{NAME}" ON "imagesync_image" ({columns})')


def create(apps, schema_editor):
    _recreate(schema_editor, COVERING)


def drop(apps, schema_editor):
    _recreate(schema_editor, DECLARED)


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0031_synctask_status_index_without_heartbeat")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
