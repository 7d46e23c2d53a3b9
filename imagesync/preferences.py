"""A user's console preferences: the language and the time zone pages are shown in.

The language follows the browser (`Accept-Language`, through Django's LocaleMiddleware) until
the user picks one in the top bar; from then on it is stored here, so the user gets it in any
browser they sign in from. The time zone is the console's `TIME_ZONE` until the user picks
one (on the pages; the API keeps `TIME_ZONE`). Both are applied by `UserPreferenceMiddleware`
on every request of a signed-in user.
"""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST
from django.views.i18n import set_language as django_set_language


@lru_cache(maxsize=1)
def time_zone_names() -> tuple[str, ...]:
    """Every IANA time zone name the system knows, sorted (the selector's options)."""
    return tuple(sorted(zoneinfo.available_timezones() - {"localtime", "Factory"}))


class UserPreference(models.Model):
    """The language and time zone one user chose for the console (empty: not chosen)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_preference"
    )
    language = models.CharField(
        _("language"),
        max_length=16,
        blank=True,
        help_text=_("Empty: the browser's language."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("Empty: the console's time zone."),
    )

    class Meta:
        verbose_name = _("user preference")
        verbose_name_plural = _("user preferences")

    def __str__(self) -> str:
        return f"{self.user} ({self.language or '-'}, {self.time_zone or '-'})"

    @classmethod
    def of(cls, user) -> UserPreference | None:
        """The stored preference of `user`, or None (no query for an anonymous user)."""
        if not user.is_authenticated:
            return None
        cached = getattr(user, "_console_preference", False)
        if cached is False:
            cached = cls.objects.filter(user=user).first()
            user._console_preference = cached
        return cached

    @classmethod
    def remember(cls, user, **fields) -> None:
        cls.objects.update_or_create(user=user, defaults=fields)
        try:
            del user._console_preference
        except AttributeError:
            pass


def supported_language(code: str) -> bool:
    return code in {language for language, _name in settings.LANGUAGES}


class ResetLocaleMiddleware:
    """Outermost: once a response is made, the thread goes back to the console's language and
    time zone, so what runs next in it (another request's early middleware, a test, a command)
    never inherits a user's choice."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)
        finally:
            translation.deactivate()
            timezone.deactivate()


class UserPreferenceMiddleware:
    """Applies a signed-in user's stored language and time zone (after LocaleMiddleware, which
    has chosen from the language cookie or Accept-Language)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        preference = UserPreference.of(request.user) if hasattr(request, "user") else None
        if preference and preference.language and supported_language(preference.language):
            translation.activate(preference.language)
            request.LANGUAGE_CODE = translation.get_language()
        # The API keeps the console's time zone (its day parameters are documented in it).
        on_pages = not request.path.startswith("/api/")
        if preference and on_pages and preference.time_zone in time_zone_names():
            timezone.activate(zoneinfo.ZoneInfo(preference.time_zone))
        else:
            timezone.deactivate()
        return self.get_response(request)


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next", "") or request.GET.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("imagesync:image-list")


@login_not_required  # the sign-in page has the switch too
@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """Django's set_language (language cookie, redirect to `next`), and for a signed-in user
    the choice is stored, so any browser they sign in from gets it."""
    response = django_set_language(request)
    code = request.POST.get("language", "")
    if request.user.is_authenticated and supported_language(code):
        UserPreference.remember(request.user, language=code)
    return response


@require_http_methods(["GET", "POST"])
def set_time_zone(request: HttpRequest) -> HttpResponse:
    """The time zone page: the selector, and on POST the signed-in user's choice is stored
    ("" goes back to the console's)."""
    if request.method == "GET":
        context = {"time_zones": time_zone_names(), "next": _next_url(request)}
        return render(request, "preferences_time_zone.html", context)
    name = request.POST.get("time_zone", "")
    if name and name not in time_zone_names():
        return HttpResponse(_("Unknown time zone."), status=400, content_type="text/plain")
    UserPreference.remember(request.user, time_zone=name)
    return HttpResponseRedirect(_next_url(request))
