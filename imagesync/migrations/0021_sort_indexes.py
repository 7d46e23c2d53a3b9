"""Image View sorted by registry or namespace walks indexes instead of sorting every image."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("imagesync", "0020_as_of_covering_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="registry",
            index=models.Index(fields=["name"], name="registry_name_idx"),
        ),
        migrations.AddIndex(
            model_name="repository",
            index=models.Index(fields=["namespace", "name"], name="repository_ns_name_idx"),
        ),
    ]
