"""OpenAPI schema additions: the error shape, documented on every operation."""

from __future__ import annotations

from imagesync.api.errors import ERROR_CODES

API_DESCRIPTION = """\
The image inventory console's JSON API: what the console pages do, for pipelines and dashboards.

**Projects.** Every object belongs to a project, and the project is in the URL:
`/api/v1/projects/{project_id}/images/`, `.../repositories/`, `.../registries/`,
`.../sync-tasks/`. `GET /api/v1/projects/` lists your projects with your role. Another
project's objects are `404 not_found`. Viewers read; operators also start, cancel and retry
sync tasks; admins also connect, edit, remove and test registries (`403 permission_denied`
otherwise).

**Authentication.** Send a personal API token as `Authorization: Bearer <token>`. Create one
with `POST /api/v1/tokens/` (signed in) or ask an administrator (admin site, API tokens); it is
shown once, stored hashed, and revoked with `DELETE /api/v1/tokens/{id}/`. The browser session
works too; its writes need the CSRF token.

**Errors** always look like
`{"error": {"code": "validation_error", "message": "...", "details": {"field": ["..."]}}}`.
Codes: validation_error, parse_error, not_authenticated, authentication_failed,
permission_denied, not_found, method_not_allowed, unsupported_media_type, conflict (a sync of
the project is already active: `details.active_task_id`), throttled (see `Retry-After`),
server_error.

**Paging.** Lists take `page` and `page_size` (at most 200) and answer
`{"count", "next", "previous", "results"}`. Sort with `ordering` (comma-separated, `-` for
descending). Times are ISO 8601; sizes are bytes.

**Rate limit.** Each token has its own request budget (API_THROTTLE_RATE, default 600/minute).
"""

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
    result.setdefault("info", {})["description"] = API_DESCRIPTION
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
