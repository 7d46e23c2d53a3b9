from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ImagesyncConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "imagesync"
    verbose_name = _("Container images")

    def ready(self):
        from imagesync import db, memory

        memory.limit_malloc_arenas()
        db.connect_signals()
