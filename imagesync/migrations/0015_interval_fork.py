"""Image View as of a moment: each closed interval gets its fork, the node of a relational
interval tree it is registered at (imagesync.history.fork_of), and the moment's intervals are
read from two indexes over it instead of the (valid_to, valid_from) one."""

from collections import defaultdict
from datetime import UTC, datetime

from django.db import migrations, models

CHUNK = 500
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fork_of(valid_from, valid_to) -> int:
    """imagesync.history.fork_of as of this migration."""
    low, high = ((moment - EPOCH) for moment in (valid_from, valid_to))
    low, high = (delta.days * 86400 + delta.seconds for delta in (low, high))
    if low >= high:
        return high
    level = (low ^ high).bit_length() - 1
    return (high >> level) << level


def register_closed_intervals(apps, schema_editor):
    ImageInterval = apps.get_model("imagesync", "ImageInterval")
    closed = ImageInterval.objects.filter(valid_to__isnull=False, fork__isnull=True)
    last = 0
    while True:
        rows = list(
            closed.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "valid_from", "valid_to")[:20000]
        )
        if not rows:
            return
        last = rows[-1][0]
        by_fork = defaultdict(list)
        for pk, valid_from, valid_to in rows:
            by_fork[fork_of(valid_from, valid_to)].append(pk)
        for fork, ids in by_fork.items():
            for start in range(0, len(ids), CHUNK):
                ImageInterval.objects.filter(pk__in=ids[start : start + CHUNK]).update(fork=fork)


class Migration(migrations.Migration):
    dependencies = [
        ("imagesync", "0014_user_preference"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="imageinterval",
            name="interval_proj_valid_ids_idx",
        ),
        migrations.AddField(
            model_name="imageinterval",
            name="fork",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(register_closed_intervals, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="imageinterval",
            index=models.Index(
                fields=["project", "fork", "valid_to", "valid_from", "repository_type", "id"],
                name="interval_proj_fork_to_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="imageinterval",
            index=models.Index(
                fields=["project", "fork", "valid_from", "repository_type", "id"],
                name="interval_proj_fork_from_idx",
            ),
        ),
    ]
