"""Static files storage: whitenoise's compressed copies with content-hashed names."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class ConsoleStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """`collectstatic` writes every file under a name that contains a hash of its content
    (css/console.4f3a9c1e2b7d.css), gzip and Brotli copies beside it, and a manifest; pages link
    to the hashed names, so whitenoise can let browsers cache them for ever and a new release
    is fetched at once.

    Before `collectstatic` has run (the test suite, a checkout served by `runserver`) there is
    no manifest: pages then link to the plain names, which the static files finders serve,
    instead of failing on every page."""

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            return name
        return super().stored_name(name)
