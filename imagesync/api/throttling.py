"""Rate limiting per API token (or per signed-in user for session requests)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from apitokens.models import ApiToken


class ApiRateThrottle(SimpleRateThrottle):
    """API_THROTTLE_RATE requests per token, e.g. "600/minute". Each token has its own budget,
    so one busy pipeline does not starve a user's other tokens or their browser session.

    Counts live in Django's default cache: with several web processes, configure a shared cache
    (e.g. Redis) for the limit to hold across them."""

    scope = "api"

    def get_rate(self) -> str | None:
        return getattr(settings, "API_THROTTLE_RATE", "600/minute") or None

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, ApiToken):
            ident = f"token:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
