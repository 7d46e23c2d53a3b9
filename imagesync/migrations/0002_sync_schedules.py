"""Create the daily scheduled sync (01:00 by default) and the every-minute watchdog."""

from django.db import migrations


def create_schedules(apps, schema_editor):
    from imagesync.schedules import ensure_schedules

    ensure_schedules(apps.get_model("django_q", "Schedule"))


def delete_schedules(apps, schema_editor):
    from imagesync.schedules import remove_schedules

    remove_schedules(apps.get_model("django_q", "Schedule"))


class Migration(migrations.Migration):
    dependencies = [
        ("imagesync", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedules, delete_schedules)]
