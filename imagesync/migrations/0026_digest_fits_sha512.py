"""Digest columns wide enough for a sha512 digest: `sha512:` and 128 hex digits are 135
characters, and the console accepts them (the connectors' digest check, the digest filter),
but the columns held 100, so PostgreSQL refused to store such a repository's images. Now 150.

PostgreSQL widens a varchar in place (no table rewrite). SQLite does not enforce a length, and
Django would rebuild its tables to change one, dropping the raw-SQL index of migration 0025:
there only the models' state changes."""

from django.db import migrations, models

WIDTH = 150
COLUMNS = (("image", "digest"), ("imageinterval", "digest"), ("change", "old_digest"))
COLUMNS += (("change", "new_digest"),)


def _alter(apps, schema_editor, width: int) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for model_name, field_name in COLUMNS:
        model = apps.get_model("imagesync", model_name)
        old = model._meta.get_field(field_name)
        _name, _path, args, kwargs = old.deconstruct()
        new = models.CharField(*args, **{**kwargs, "max_length": width})
        new.set_attributes_from_name(field_name)
        new.model = model
        schema_editor.alter_field(model, old, new)


def widen(apps, schema_editor):
    _alter(apps, schema_editor, WIDTH)


def narrow(apps, schema_editor):
    _alter(apps, schema_editor, 100)


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0025_interval_odd_digest_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(widen, narrow, elidable=False)],
            state_operations=[
                migrations.AlterField(
                    model_name="image",
                    name="digest",
                    field=models.CharField(
                        help_text="Manifest digest, e.g. sha256:<64 hex>.", max_length=WIDTH
                    ),
                ),
                migrations.AlterField(
                    model_name="imageinterval",
                    name="digest",
                    field=models.CharField(
                        help_text="Manifest digest, e.g. sha256:<64 hex>.", max_length=WIDTH
                    ),
                ),
                migrations.AlterField(
                    model_name="change",
                    name="old_digest",
                    field=models.CharField(blank=True, max_length=WIDTH),
                ),
                migrations.AlterField(
                    model_name="change",
                    name="new_digest",
                    field=models.CharField(blank=True, max_length=WIDTH),
                ),
            ],
        )
    ]
