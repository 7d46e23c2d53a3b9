"""Start the history of an existing inventory: each current tag is valid from its first-seen
time, in the state it has now. Nothing is invented before that, and no Change rows are made:
the console did not observe those changes."""

from django.db import migrations

BATCH = 2000


def start_history(apps, schema_editor):
    Image = apps.get_model("imagesync", "Image")
    ImageInterval = apps.get_model("imagesync", "ImageInterval")
    rows = Image.objects.select_related("repository__registry").order_by("pk").iterator(BATCH)
    batch = []
    for image in rows:
        repository = image.repository
        batch.append(
            ImageInterval(
                project_id=image.project_id,
                registry_id=repository.registry_id,
                repository_id=repository.pk,
                registry_name=repository.registry.name,
                repository_type=repository.type,
                repository_path=repository.path,
                namespace=repository.namespace,
                name=repository.name,
                tag=image.tag,
                digest=image.digest,
                media_type=image.media_type,
                size=image.size,
                platforms=image.platforms,
                multi_arch=image.multi_arch,
                is_latest=image.is_latest,
                image_created_at=image.image_created_at,
                registry_updated_at=image.registry_updated_at,
                first_seen_at=image.first_seen_at,
                valid_from=image.first_seen_at,
            )
        )
        if len(batch) >= BATCH:
            ImageInterval.objects.bulk_create(batch)
            batch = []
    ImageInterval.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [("imagesync", "0006_history")]

    operations = [migrations.RunPython(start_history, migrations.RunPython.noop)]
