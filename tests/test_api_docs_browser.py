"""The API documentation page in a real browser: Swagger UI renders every endpoint from the
schema, offline (no CDN) and without breaking the console's Content-Security-Policy."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_the_docs_page_renders_the_endpoints_under_the_csp(ui, transactional_db):
    external: list[str] = []
    ui.page.on(
        "request",
        lambda request: (
            external.append(request.url) if not request.url.startswith(ui.base_url) else None
        ),
    )
    ui.goto("/api/v1/docs/")
    ui.page.get_by_text("/api/v1/projects/{project_id}/images/", exact=True).first.wait_for()
    body = ui.page.inner_text("body")
    for path in (
        "/api/v1/projects/",
        "/api/v1/projects/{project_id}/sync-tasks/",
        "/api/v1/projects/{project_id}/registries/{id}/test/",
        "/api/v1/tokens/",
    ):
        assert path in body
    assert ui.page.get_by_role("button", name="Authorize").count() == 1
    assert external == []  # everything came from this server
