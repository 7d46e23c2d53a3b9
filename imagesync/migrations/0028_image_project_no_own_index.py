import django.db.models.deletion
from django.db import migrations, models

# The index Django created for the foreign key (the same name on SQLite and PostgreSQL).
INDEX = "imagesync_image_project_id_22501303"


class Migration(migrations.Migration):
    """Image's project has no index of its own: every Image View index starts with it, and
    each index less is one entry less to write per image a sync adds -- and, on PostgreSQL,
    per unchanged image a re-sync touches (that update is never heap-only: `last_synced_at` is
    indexed). Dropped by name: on SQLite, Django's AlterField would copy the whole inventory
    into a new table for it."""

    dependencies = [
        ("imagesync", "0027_as_of_indexes_hold_digest"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="image",
                    name="project",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="images",
                        to="imagesync.project",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=(
                        f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON "imagesync_image" ("project_id")'
                    ),
                ),
            ],
        ),
    ]
