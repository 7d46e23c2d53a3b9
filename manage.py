#!/usr/bin/env python
"""Django's command-line utility for the image inventory console."""

import atexit
import gc
import os
import sys


def main() -> None:
    # Registered first, so it runs last, after every other exit handler (logging's flush
    # included). Python's shutdown then searches no object for reference cycles: that search
    # visited every object of Django and of the command once more, 0.1-0.25 s at the end of
    # every command. Objects are still freed as the modules go, except those in cycles,
    # which the process's end gives back to the system anyway.
    atexit.register(gc.freeze)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a bad setting: one clear line, no traceback
        sys.exit(f"Configuration error: {exc}")


if __name__ == "__main__":
    main()
