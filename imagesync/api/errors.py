"""The API's one error shape:

    {"error": {"code": "<stable_code>", "message": "<human>", "details": {...}}}

`code` is stable for automation, `message` is for people, and `details` (field errors of a
validation error, or the active task of a conflict) is present only when there is something
to say. Never a traceback, never a secret.
"""

from __future__ import annotations

import logging
import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

# DRF's default codes, renamed where the API promises a different word.
CODES = {"invalid": "validation_error", "error": "server_error"}

ERROR_CODES = (
    "validation_error",
    "not_authenticated",
    "authentication_failed",
    "permission_denied",
    "not_found",
    "method_not_allowed",
    "not_acceptable",
    "unsupported_media_type",
    "parse_error",
    "conflict",
    "throttled",
    "server_error",
)


class Conflict(exceptions.APIException):
    """409: the request clashes with the current state, e.g. a sync of the project is already
    active (`details.active_task_id` names it)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = gettext_lazy("The request conflicts with the current state.")
    default_code = "conflict"

    def __init__(self, detail: str | None = None, details: dict | None = None):
        super().__init__(detail)
        self.details = details or {}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def _message_and_details(exc: exceptions.APIException) -> tuple[str, dict]:
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            return _("The request is not valid; see details."), detail
        if isinstance(detail, list):
            return _("The request is not valid; see details."), {"non_field_errors": detail}
        return str(detail), {}
    return str(exc.detail), dict(getattr(exc, "details", {}) or {})


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's EXCEPTION_HANDLER: every error, expected or not, in the one shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    set_rollback()
    if not isinstance(exc, exceptions.APIException):
        view = context.get("view")
        logger.error(
            "Unhandled error in API view %s", type(view).__name__ if view else "?", exc_info=exc
        )
        return Response(
            error_body(
                "server_error",
                _("The server could not complete the request; the error was logged."),
            ),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    code = CODES.get(exc.default_code, exc.default_code)
    message, details = _message_and_details(exc)
    return Response(error_body(code, message, details), status=exc.status_code, headers=headers)
