"""Create the database cache table (login throttling and API rate limits use the cache), so a
bare `migrate` leaves a working console; `createcachetable` is idempotent."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0003_synctask_requeued_at")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
