"""WSGI entry point of the console."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

application = get_wsgi_application()

# Imported once Django is set up: registry notifications skip the middleware stack.
from imagesync.receiver import ReceiverFastPath  # noqa: E402

application = ReceiverFastPath(application)
