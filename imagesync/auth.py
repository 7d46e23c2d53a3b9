"""Sign-in lockout, done by django-axes (settings: the AXES_* block in console/settings.py).

What is here is what axes leaves to the project: the client address behind a proxy, the
username as it is counted, the lockout page (the sign-in page with a message, HTTP 429) and the reset on success.
"""

from __future__ import annotations

import ipaddress

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import ngettext


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: behind a proxy (BEHIND_PROXY), the last X-Forwarded-For entry,
    the one the proxy itself appended; entries left of it come from the client and can be
    forged, so they never pick whose failures count."""
    remote = request.META.get("REMOTE_ADDR")
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        remote = forwarded or remote
    try:
        return str(ipaddress.ip_address(remote or ""))
    except ValueError:  # not an address: stored as unknown rather than failing the sign-in
        return None


def client_username(request: HttpRequest, credentials: dict | None) -> str:
    """The username a sign-in tried, as axes records and counts it: at most 150 characters (the
    longest a Django username can be; axes' column holds 255) and without NUL (PostgreSQL refuses
    it in text), so an odd input is counted like any other failure, never a server error."""
    if credentials:
        value = credentials.get(get_user_model().USERNAME_FIELD, "")
    else:
        value = request.POST.get("username", "")
    return str(value or "").replace("\x00", "")[:150]


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials=None
) -> HttpResponse:
    """The sign-in page again, with the reason and HTTP 429, instead of axes' plain text."""
    minutes = max(1, int(get_cool_off(request).total_seconds()) // 60)
    view = auth_views.LoginView()
    view.setup(request)
    form = view.get_form_class()(request, initial={"username": request.POST.get("username", "")})
    context = view.get_context_data(
        form=form,
        lockout=ngettext(
            "Too many failed sign-in attempts. Try again in %(minutes)d minute.",
            "Too many failed sign-in attempts. Try again in %(minutes)d minutes.",
            minutes,
        )
        % {"minutes": minutes},
    )
    # A TemplateResponse made by middleware is never rendered by Django: render it here.
    response = view.render_to_response(context, status=429).render()
    add_never_cache_headers(response)  # as LoginView does for its own answers
    return response


class SignInLockoutHandler(AxesDatabaseHandler):
    """Axes' database handler, except that a successful sign-in clears the failures of that
    username only. Axes' AXES_RESET_ON_SUCCESS also clears those of the client address, which
    would let anyone with an account reset their count while guessing other passwords."""

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        super().user_logged_in(sender, request, user, **kwargs)
        AccessAttempt.objects.filter(username=user.get_username()).delete()
