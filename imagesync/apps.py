from django.apps import AppConfig


class ImagesyncConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "imagesync"
    verbose_name = "Container images"
