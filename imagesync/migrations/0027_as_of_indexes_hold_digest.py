"""The two as-of indexes hold the digest too, so that Image View as of a moment tests a search
against each of the moment's intervals, and can sort them by digest, in those indexes alone: a
search of hex digits read the row of each of the moment's ~100,000 intervals for its digest.
Changing indexes rebuilds no table (SQLite drops and creates the indexes only), so migration
0025's raw-SQL index stays."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0026_digest_fits_sha512")]

    operations = [
        migrations.RemoveIndex(model_name="imageinterval", name="interval_fork_to_covered_idx"),
        migrations.RemoveIndex(model_name="imageinterval", name="interval_fork_from_covered_idx"),
        migrations.AddIndex(
            model_name="imageinterval",
            index=models.Index(
                fields=["project", "fork", "valid_to", "valid_from", "repository_type", "id"]
                + ["registry_updated_at", "size", "registry", "repository", "tag", "digest"],
                name="interval_fork_to_covered_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="imageinterval",
            index=models.Index(
                fields=["project", "fork", "valid_from", "repository_type", "id"]
                + ["registry_updated_at", "size", "registry", "repository", "tag", "digest"],
                name="interval_fork_from_covered_idx",
            ),
        ),
    ]
