"""Sign-in with throttling: repeated failures lock a username and a client address for a while."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters


def _keys(request, username: str) -> list[str]:
    # Hashed: a typed username can hold anything (NUL bytes, spaces, 10,000 characters) and
    # must still make a valid cache key on every backend.
    name = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()
    address = hashlib.sha256(request.META.get("REMOTE_ADDR", "unknown").encode()).hexdigest()
    return [f"login-fail:user:{name}", f"login-fail:addr:{address}"]


def is_locked(request, username: str) -> bool:
    limit = settings.LOGIN_FAILURE_LIMIT
    return any((cache.get(key) or 0) >= limit for key in _keys(request, username))


def record_failure(request, username: str) -> None:
    for key in _keys(request, username):
        if not cache.add(key, 1, settings.LOGIN_LOCKOUT_SECONDS):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, settings.LOGIN_LOCKOUT_SECONDS)


def clear_failures(request, username: str) -> None:
    cache.delete(_keys(request, username)[0])


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class ThrottledLoginView(auth_views.LoginView):
    """Django's login view, refusing attempts (HTTP 429) after LOGIN_FAILURE_LIMIT failures
    for the same username or client address within LOGIN_LOCKOUT_SECONDS."""

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if is_locked(request, username):
            form = self.get_form()
            form.errors.clear()
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            form.add_error(
                None,
                f"Too many failed sign-in attempts. Try again in {minutes} minutes.",
            )
            response = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        record_failure(self.request, self.request.POST.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form):
        clear_failures(self.request, form.get_user().get_username())
        return super().form_valid(form)
