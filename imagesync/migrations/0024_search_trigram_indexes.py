"""PostgreSQL only: trigram indexes (pg_trgm) for Image View's substring searches, and the id
as the last key of three sort indexes. On SQLite the migration does nothing.

Search: the text search (`q`) compares `UPPER(tag::text) LIKE '%…%'`, the same of the digest
and of the repository's path (Django's `icontains`), and the tag filter the tag: no B-tree
answers a pattern that starts with a wildcard, so each read every image of the project
(0.7-1 s at 1,000,000 images). A GIN index over those very expressions with `gin_trgm_ops`
finds the rows holding the pattern's trigrams. SQLite has no such index (its searches read the
project's images, ~60-80 ms at 100,000). These indexes are not in the models' Meta, which
would ask SQLite for them too.

Sorts: every sort ends with the id (paging never shows a row twice), and PostgreSQL keeps no
order of the id among equal keys of `(project, tagged, column)`: for a column of few values
(multi-arch; last pulled, 40% NULL) it sorted every row of the first value for one page (300-
400 ms at a million images), and a deep page of the default sort read each skipped row from
the table for its id. The same indexes with the id as their last key answer those orders from
the index alone. They keep their names (the models' Meta describes them without the id; on
SQLite the id is the rowid that every index holds already), so the sync writes as many
indexes as before.
"""

from django.db import migrations

TRIGRAM = {
    "image_tag_trgm_idx": ("imagesync_image", "UPPER(tag::text)"),
    "image_digest_trgm_idx": ("imagesync_image", "UPPER(digest::text)"),
    "repository_path_trgm_idx": ("imagesync_repository", "UPPER(path::text)"),
}
WITH_ID = {
    "image_proj_updated_idx": "registry_updated_at",
    "image_proj_multiarch_idx": "multi_arch",
    "image_proj_pulled_idx": "last_pulled",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, expression) in TRIGRAM.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (({expression}) gin_trgm_ops)"
        )
    for name, column in WITH_ID.items():
        _sort_index(schema_editor, name, column, "id")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in TRIGRAM:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    for name, column in WITH_ID.items():
        _sort_index(schema_editor, name, column)


def _sort_index(schema_editor, name: str, *columns: str) -> None:
    """(Re)create the image index `name` over (project, tagged, *columns)."""
    schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    keys = ", ".join(("project_id", "tagged", *columns))
    schema_editor.execute(f"CREATE INDEX {name} ON imagesync_image ({keys})")


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0023_history_repository_names")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
