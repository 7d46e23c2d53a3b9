"""SyncTask.requeued_at replaces the "re-enqueued by the watchdog" note in the worker column."""

from django.db import migrations, models

OLD_MARKER = "re-enqueued by the watchdog"


def move_marker(apps, schema_editor):
    SyncTask = apps.get_model("imagesync", "SyncTask")
    for task in SyncTask.objects.filter(worker=OLD_MARKER).only("pk", "created_at"):
        # The moment of the re-enqueue was not stored; the creation time is the safe side
        # (the watchdog gives up on it sooner, never later).
        SyncTask.objects.filter(pk=task.pk).update(requeued_at=task.created_at, worker="")


def restore_marker(apps, schema_editor):
    SyncTask = apps.get_model("imagesync", "SyncTask")
    SyncTask.objects.filter(requeued_at__isnull=False, worker="").update(worker=OLD_MARKER)


class Migration(migrations.Migration):
    dependencies = [
        ("imagesync", "0002_sync_schedules"),
    ]

    operations = [
        migrations.AddField(
            model_name="synctask",
            name="requeued_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the watchdog re-enqueued this queued task (done once).",
                null=True,
            ),
        ),
        migrations.RunPython(move_marker, restore_marker),
    ]
