"""The registry events receiver: the URL a registry POSTs its notifications to.

No session, no CSRF token, no sign-in: the connection's secret authenticates each request
(imagesync.events.receive). The answer carries no body a registry could learn from beyond its
status: 202 accepted (also for events that are ignored here), 400 malformed, 401 wrong or
missing secret, 404 unknown or disabled receiver, 405 not a POST, 413 too large, 429 flood.

`ReceiverFastPath` wraps the console's WSGI application (console/wsgi.py): a POST to a
receiver URL is answered by the same `answer()` without Django's middleware stack (session,
locale, CSRF, sign-in, messages, project scope ...), none of which it uses and which cost as
much CPU as the receiver itself under a flood. Everything else goes to Django as usual.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseServerError,
)
from django.views.decorators.csrf import csrf_exempt

from imagesync import events
from imagesync.sync.pool import db_guard

# The receiver's URL below the console's root (imagesync/urls.py routes it; the fast path
# matches the same pattern against PATH_INFO).
PATH = r"^hooks/registry/(?P<token>[A-Za-z0-9_-]{16,64})/$"
_FAST_PATH = re.compile("^/" + PATH[1:])

logger = logging.getLogger("django.request")


def answer(request: HttpRequest, token: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    with db_guard():  # SQLite: one writer at a time (a no-op on PostgreSQL)
        status = events.receive(token, request.headers, request, request.META.get("CONTENT_LENGTH"))
    response = HttpResponse(status=status)
    if status == 429:
        response["Retry-After"] = "60"
    return response


@csrf_exempt
@login_not_required
def receive(request: HttpRequest, token: str) -> HttpResponse:
    return answer(request, token)


class ReceiverFastPath:
    """WSGI middleware: POSTs to a receiver URL skip Django's middleware stack; the answer,
    the database connection's life (request_started / request_finished) and the host check
    are Django's own. A request that SECURE_SSL_REDIRECT would redirect goes to Django."""

    def __init__(self, application) -> None:
        self.application = application

    def __call__(self, environ, start_response):
        match = None
        if environ.get("REQUEST_METHOD") == "POST":
            match = _FAST_PATH.match(environ.get("PATH_INFO", ""))
        if match is None:
            return self.application(environ, start_response)
        request = WSGIRequest(environ)
        if settings.SECURE_SSL_REDIRECT and not request.is_secure():
            return self.application(environ, start_response)
        signals.request_started.send(sender=type(self), environ=environ)
        response = self._response(request, match["token"])
        response._resource_closers.append(request.close)
        # The server calls response.close(), which sends request_finished (as for Django's).
        response._handler_class = type(self)
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return response

    @staticmethod
    def _response(request: WSGIRequest, token: str) -> HttpResponse:
        try:
            request.get_host()
        except DisallowedHost:
            return HttpResponseBadRequest()
        try:
            return answer(request, token)
        except Exception:
            logger.exception("Internal Server Error: %s", request.path)
            return HttpResponseServerError()
