"""The registry events receiver: the URL a registry POSTs its notifications to.

No session, no CSRF token, no sign-in: the connection's secret authenticates each request
(imagesync.events.receive). The answer carries no body a registry could learn from beyond its
status: 202 accepted (also for events that are ignored here), 400 malformed, 401 wrong or
missing secret, 404 unknown or disabled receiver, 405 not a POST, 413 too large, 429 flood.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from imagesync import events
from imagesync.sync.pool import db_guard


@csrf_exempt
@login_not_required
def receive(request: HttpRequest, token: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    with db_guard():  # SQLite: one writer at a time (a no-op on PostgreSQL)
        status = events.receive(token, request.headers, request, request.META.get("CONTENT_LENGTH"))
    response = HttpResponse(status=status)
    if status == 429:
        response["Retry-After"] = "60"
    return response
