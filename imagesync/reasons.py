"""Reason codes: the one list of the stable codes that say why a registry, a repository or a
task failed, with the label a page shows for each.

The registry clients raise `RegistryError(code, ...)` with the first group; the sync engine
writes the second on task and result rows; pages, the API and exports show `LABELS`. The codes
never change (scripts and API clients match on them); labels are for people. This module
imports nothing from the app, so the registry clients can use it without touching models.
"""

from __future__ import annotations

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

LABELS: dict[str, str] = {
    AUTH_FAILED: "Authentication failed",
    PERMISSION_DENIED: "Permission denied",
    NOT_FOUND: "Not found",
    RATE_LIMITED: "Rate limited",
    TIMEOUT: "Timed out",
    UNREACHABLE: "Unreachable",
    TLS_ERROR: "TLS error",
    BAD_RESPONSE: "Bad response",
    UNSUPPORTED: "Unsupported",
    MISSING_AUTHORIZATION: "Missing authorization",
    SWR_NOT_AUTHORIZED: "SWR not authorized",
    INTERNAL_ERROR: "Internal error",
    CANCELLED: "Cancelled",
    INTERRUPTED: "Interrupted",
    ALREADY_RUNNING: "Already running",
    NEVER_STARTED: "Never started",
    REFUSED: "Refused",
    SEVERAL_ERRORS: "Several errors",
}


def label(code: str) -> str:
    """The label of `code` for a page ("" for no code; the code itself if unknown)."""
    return LABELS.get(code, code) if code else ""
