"""The versioned JSON API under /api/v1/: Django REST Framework views over the same models,
querysets and sync engine functions as the console pages, described by a drf-spectacular
OpenAPI 3 schema. Project scope is in the URL (/api/v1/projects/{project_id}/...), so another
project's objects are simply not found (404)."""
