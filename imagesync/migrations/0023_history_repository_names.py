"""The names (namespace, name) each repository's intervals were written with, listed from the
intervals already recorded (imagesync.history.RepositoryName)."""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
INSERT INTO imagesync_repositoryname (repository_id, namespace, name)
SELECT DISTINCT repository_id, namespace, name FROM imagesync_imageinterval
WHERE repository_id IS NOT NULL
"""


class Migration(migrations.Migration):
    dependencies = [
        ("imagesync", "0022_as_of_covered_after_id"),
    ]

    operations = [
        migrations.CreateModel(
            name="RepositoryName",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("namespace", models.CharField(blank=True, max_length=255)),
                ("name", models.CharField(max_length=255)),
                (
                    "repository",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="imagesync.repository",
                    ),
                ),
            ],
            options={
                "verbose_name": "repository name in the history",
                "verbose_name_plural": "repository names in the history",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("repository", "namespace", "name"), name="repositoryname_unique"
                    )
                ],
            },
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
