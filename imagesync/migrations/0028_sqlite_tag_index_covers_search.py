"""SQLite only: Image View's tag index also holds the id, the digest and the repository, so that
a search or a tag filter tests every image in that index alone. On PostgreSQL the migration
does nothing (trigram indexes answer those searches there, migration 0024).

A text search (`q`: the tag, the digest or the repository's path contains the text) or a tag
filter (the tag contains it) is a pattern no B-tree can seek, so SQLite tests each of the
project's images. Counting the matches per type read each image's row from the table for its
digest and its repository: 35-45 ms at 100,000 images. With them in the index, the count walks
the index alone: 13-22 ms. The id after the tag keeps the index in the order of the tag sort
(tag, then id), as the rowid at its end did. The index keeps its name and the models' Meta
describes it without the extra columns (as migration 0024 does for PostgreSQL's sort
indexes): the sync writes as many indexes as before. A migration that rebuilds the image
table on SQLite would recreate the Meta's narrower index: `tests/test_image_counts.py` checks
the index's columns.
"""

from django.db import migrations

NAME = "image_proj_tag_idx"
NARROW = ("project_id", "tagged", "tag")
WIDE = (*NARROW, "id", "digest", "repository_id")


def _index(schema_editor, columns: tuple[str, ...]) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")
    schema_editor.execute(f"CREATE INDEX {NAME} ON imagesync_image ({', '.join(columns)})")


def widen(apps, schema_editor):
    _index(schema_editor, WIDE)


def narrow(apps, schema_editor):
    _index(schema_editor, NARROW)


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0027_as_of_indexes_hold_digest")]

    operations = [migrations.RunPython(widen, narrow, elidable=False)]
