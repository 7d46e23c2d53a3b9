"""Console test helpers: every console URL filled in for a seeded project, htmx headers and
the text of any response (streaming or not)."""

from __future__ import annotations

from django.urls import get_resolver, reverse

from imagesync.models import Registry, SyncTask
from tests.support.factories import Seeded

# Which model fills the <pk> of each URL name prefix.
PK_MODELS = {"task": SyncTask, "registry": Registry}
# Path parameters other than <pk>, filled from the seeded project (a tag's timeline).
SEEDED_PARAMS = {
    "repository_id": lambda seeded: seeded.repository.pk,
    "tag": lambda seeded: seeded.image.tag,
}
# Console URLs that only accept POST (state changes); everything else is a page or fragment.
POST_ONLY = {"project-select", "task-cancel", "task-retry", "registry-test", "registry-events"}
# URLs in imagesync/urls.py that are not console pages: a registry POSTs its events there, with
# a per-connection token in the URL and its secret (tests/test_events*.py test it).
NOT_CONSOLE = {"registry-events-receiver"}


def console_url_names() -> list[tuple[str, list[str]]]:
    """(name, path parameters) of every console URL in imagesync/urls.py."""
    found = []
    for pattern in get_resolver("imagesync.urls").url_patterns:
        if pattern.name in NOT_CONSOLE:
            continue
        params = list(pattern.pattern.converters)
        found.append((pattern.name, params))
    return found


def console_urls(seeded: Seeded, *, include_post_only: bool = False) -> dict[str, str]:
    """name -> URL of every console page, with the ids of `seeded` filled in."""
    urls = {}
    for name, params in console_url_names():
        if name in POST_ONLY and not include_post_only:
            continue
        kwargs = {}
        for param in params:
            if param in SEEDED_PARAMS:
                kwargs[param] = SEEDED_PARAMS[param](seeded)
                continue
            assert param == "pk", f"teach console_urls about <{param}> in {name}"
            prefix = name.split("-", 1)[0]
            assert prefix in PK_MODELS, f"teach console_urls which model {name} shows"
            obj = seeded.task if PK_MODELS[prefix] is SyncTask else seeded.registry
            kwargs[param] = obj.pk
        urls[name] = reverse(f"imagesync:{name}", kwargs=kwargs)
    return urls


def fragment_headers() -> dict[str, str]:
    return {"HX-Request": "true"}


def body_of(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")
