"""The two as-of indexes hold the digest too, so that Image View as of a moment tests a search
against each of the moment's intervals, and can sort them by digest, in those indexes alone: a
search of hex digits read the row of each of the moment's ~100,000 intervals for its digest.

Migration 0025's partial index of the digests not of the `sha256:<64 hex>` form told a search
whether it could skip reading digests; with the digest in the as-of indexes nothing is read
for it, so that index goes (and with it the care that a table rebuild on SQLite would drop
it). Changing indexes rebuilds no table: SQLite drops and creates the indexes only."""

from importlib import import_module

from django.db import migrations, models

odd_digest = import_module("imagesync.migrations.0025_interval_odd_digest_index")


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0026_digest_fits_sha512")]

    operations = [
        migrations.RunPython(odd_digest.drop, odd_digest.create, elidable=False),
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
