from django.db import migrations, models

# Carried to each repository before the images' column goes: the latest sync time of its
# images when it is later than the repository's own (or the repository has none). A sync
# stores both with the same time, so this changes nothing for a synced inventory.
TO_REPOSITORIES = """
UPDATE imagesync_repository SET last_synced_at = (
    SELECT MAX(image.last_synced_at) FROM imagesync_image image
    WHERE image.repository_id = imagesync_repository.id
)
WHERE EXISTS (
    SELECT 1 FROM imagesync_image image
    WHERE image.repository_id = imagesync_repository.id
    AND (imagesync_repository.last_synced_at IS NULL
         OR image.last_synced_at > imagesync_repository.last_synced_at)
)
"""

# Backwards: each image gets its repository's time again (the column is back by then).
TO_IMAGES = """
UPDATE imagesync_image SET last_synced_at = COALESCE((
    SELECT repository.last_synced_at FROM imagesync_repository repository
    WHERE repository.id = imagesync_image.repository_id
), last_synced_at)
"""


class Migration(migrations.Migration):
    """An image's "Last synced" is its repository's: every reconcile stores a repository's
    images from one complete listing, at the time it stores on the repository. So the
    images' own column, which a re-sync had to rewrite for every unchanged image (on
    PostgreSQL a new entry in each of the image's indexes, the column being indexed), goes;
    Image View sorts by the repository's, through a new repository index."""

    dependencies = [
        ("imagesync", "0028_image_project_no_own_index"),
    ]

    operations = [
        migrations.RunSQL(TO_REPOSITORIES, reverse_sql=TO_IMAGES),
        migrations.RemoveIndex(model_name="image", name="image_proj_synced_idx"),
        migrations.RemoveField(model_name="image", name="last_synced_at"),
        migrations.AddIndex(
            model_name="repository",
            index=models.Index(fields=["last_synced_at", "id"], name="repository_synced_idx"),
        ),
    ]
