"""OpenAPI schema additions: the error shape, documented on every operation."""

from __future__ import annotations

from imagesync.api.errors import ERROR_CODES

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error of the API has this shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable, machine-readable: " + ", ".join(ERROR_CODES) + ".",
                },
                "message": {"type": "string", "description": "For people; may change."},
                "details": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "Field errors of a validation_error (field -> list of "
                    "messages); active_task_id of a conflict.",
                },
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}

ERROR_RESPONSES = {
    "400": "validation_error or parse_error: the request (query or body) is not valid.",
    "401": "not_authenticated or authentication_failed: no credentials, or an unknown or "
    "revoked token.",
    "403": "permission_denied: your role in the project does not allow this.",
    "404": "not_found: no such object in your projects (or no such page).",
    "429": "throttled: too many requests for this token; retry after Retry-After seconds.",
}

RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before the next request.",
    }
}


def add_error_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular POSTPROCESSING_HOOK: add the Error component and the common error
    responses to every operation (explicitly documented ones, e.g. 409, are kept)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status_code, description in ERROR_RESPONSES.items():
                if operation.get("security") == [] and status_code in {"401", "403"}:
                    continue
                entry = responses.setdefault(
                    status_code,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
                if status_code == "429":
                    entry.setdefault("headers", RETRY_AFTER)
            if method in {"post", "put", "patch"}:
                responses.setdefault(
                    "415",
                    {
                        "description": "unsupported_media_type: send application/json.",
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    return result
