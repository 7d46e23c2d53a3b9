"""Create the daily history-retention schedule (ensure_schedules is idempotent)."""

from django.db import migrations


def create_schedules(apps, schema_editor):
    from imagesync.schedules import ensure_schedules

    ensure_schedules(apps.get_model("django_q", "Schedule"))


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0007_start_history")]

    operations = [migrations.RunPython(create_schedules, migrations.RunPython.noop)]
