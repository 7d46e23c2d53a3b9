"""Reason codes: the one list of the stable codes that say why a registry, a repository or a
task failed, with the label a page shows for each.

The registry clients raise `RegistryError(code, ...)` with the first group; the sync engine
writes the second on task and result rows; pages, the API and exports show `LABELS`. The codes
never change (scripts and API clients match on them); labels are for people. This module
imports nothing from the app, so the registry clients can use it without touching models.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

# Raised by the registry clients.
AUTH_FAILED = "auth_failed"
PERMISSION_DENIED = "permission_denied"
NOT_FOUND = "not_found"
RATE_LIMITED = "rate_limited"
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
TLS_ERROR = "tls_error"
BAD_RESPONSE = "bad_response"
UNSUPPORTED = "unsupported"
CLIENT_CODES = (
    AUTH_FAILED,
    PERMISSION_DENIED,
    NOT_FOUND,
    RATE_LIMITED,
    TIMEOUT,
    UNREACHABLE,
    TLS_ERROR,
    BAD_RESPONSE,
    UNSUPPORTED,
)

# Written by the sync engine.
MISSING_AUTHORIZATION = "missing_authorization"
SWR_NOT_AUTHORIZED = "swr_not_authorized"
INTERNAL_ERROR = "internal_error"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"
ALREADY_RUNNING = "already_running"
NEVER_STARTED = "never_started"
REFUSED = "refused"
SEVERAL_ERRORS = "several_errors"
# On a repository that was synchronized, but whose pull data (usage) could not be read.
USAGE_UNAVAILABLE = "usage_unavailable"

LABELS: dict[str, Any] = {  # lazy: each page shows them in its language
    AUTH_FAILED: _("Authentication failed"),
    PERMISSION_DENIED: _("Permission denied"),
    NOT_FOUND: _("Not found"),
    RATE_LIMITED: _("Rate limited"),
    TIMEOUT: _("Timed out"),
    UNREACHABLE: _("Unreachable"),
    TLS_ERROR: _("TLS error"),
    BAD_RESPONSE: _("Bad response"),
    UNSUPPORTED: _("Unsupported"),
    MISSING_AUTHORIZATION: _("Missing authorization"),
    SWR_NOT_AUTHORIZED: _("SWR not authorized"),
    INTERNAL_ERROR: _("Internal error"),
    CANCELLED: _("Cancelled"),
    INTERRUPTED: _("Interrupted"),
    ALREADY_RUNNING: _("Already running"),
    NEVER_STARTED: _("Never started"),
    REFUSED: _("Refused"),
    SEVERAL_ERRORS: _("Several errors"),
    USAGE_UNAVAILABLE: _("Pull data unavailable"),
}


def label(code: str) -> str:
    """The label of `code` for a page ("" for no code; the code itself if unknown)."""
    return str(LABELS.get(code, code)) if code else ""
