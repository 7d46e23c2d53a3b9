"""The OpenAPI schema: it validates, its documentation page works offline under the console's
Content-Security-Policy, and a property-based run of schemathesis against the live schema (the
Django WSGI app, a project admin's token) finds no server error and no response that breaks
the schema."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from imagesync.models import (
    Registry,
)
from imagesync.registries import CheckResult
from tests.support.api import FAST_HASHERS, reset_rate_limits, token_for
from tests.support.factories import make_image, make_partial_task, make_repository
from tests.support.fakes import FakeClient

EXAMPLES_PER_OPERATION = 25  # positive and negative each; the whole run stays well under 2 min


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db, settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    reset_rate_limits()


def test_the_generated_schema_validates_without_warnings(tmp_path):
    """`manage.py spectacular --validate --fail-on-warn`: OpenAPI 3 valid, and every view,
    field and filter was understood (a warning would mean a guessed, possibly wrong, type)."""
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert text.startswith("openapi: 3.")
    for path in (
        "/api/v1/projects/{project_id}/images/",
        "/api/v1/projects/{project_id}/sync-tasks/",
    ):
        assert f"  {path}:" in text


def test_the_schema_is_served_at_a_stable_url_to_anyone(db):
    response = Client().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["tokenAuth"]["description"],
    }
    assert "Error" in schema["components"]["schemas"]
    conflict = schema["paths"]["/api/v1/projects/{project_id}/sync-tasks/"]["post"]["responses"]
    assert {"201", "400", "401", "403", "404", "409", "429"} <= set(conflict)
    secret = schema["components"]["schemas"]["Registry"]["properties"]
    assert "secret" not in secret and "secret_encrypted" not in secret  # write-only
    assert "secret" in schema["components"]["schemas"]["RegistryRequest"]["properties"]


def test_the_docs_page_loads_only_same_origin_scripts_and_styles(db):
    """The console's CSP is script-src 'self' and style-src 'self': no inline script or style,
    no CDN. The Swagger UI assets come from drf-spectacular-sidecar's static files."""
    client = Client()
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert (
        "<style" not in page
        and " style=" not in page
        and "http" not in page.lower().replace("http-equiv", "")
    )
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all('src="/' in attrs and not body.strip() for attrs, body in scripts)
    init = client.get("/api/v1/docs/", {"script": ""})
    assert init.status_code == 200 and init["Content-Type"].startswith("application/javascript")
    assert "/api/v1/schema/" in init.content.decode()
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        assert asset.startswith("/static/drf_spectacular_sidecar/swagger-ui-dist/")
        from django.contrib.staticfiles import finders

        assert finders.find(asset.removeprefix("/static/")), asset


# --- schemathesis ---------------------------------------------------------------------------


NOT_CONTACTED = CheckResult(ok=False, code="unreachable", message="Fake: not contacted in tests.")


@pytest.fixture
def api_world(project, admin_user, registry, monkeypatch):
    """Real rows for the generated requests to meet, and no network for Test connection."""
    monkeypatch.setattr(
        Registry, "build_client", lambda self: FakeClient(check_result=NOT_CONTACTED)
    )
    repository = make_repository(registry, "team/api")
    image = make_image(
        repository,
        "1.0",
        digest="sha256:" + "a" * 64,
        size=1234,
        platforms=["linux/amd64", "linux/arm64"],
        multi_arch=True,
    )
    task = make_partial_task(repository, "down", created_by=admin_user)
    return {
        "project_id": project.pk,
        "task_id": task.pk,
        "images": image.pk,
        "repositories": repository.pk,
        "registries": registry.pk,
        "sync-tasks": task.pk,
        "projects": project.pk,
    }


def _real_ids(path: str, world: dict) -> dict:
    """Path parameters naming existing objects, for the examples that should find them."""
    params = {}
    if "{project_id}" in path:
        params["project_id"] = world["project_id"]
    if "{task_id}" in path:
        params["task_id"] = world["task_id"]
    if "{id}" in path:
        collection = path.split("/{id}/")[0].rsplit("/", 1)[-1]
        if collection in world:
            params["id"] = world[collection]
    return params


@pytest.fixture
def wsgi_app():
    """The project's WSGI application, minus the per-request closing of database connections
    (Django's test client does the same): requests must run inside the test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.filterwarnings("ignore")
def test_schemathesis_finds_no_server_error_and_no_response_breaking_the_schema(
    api_world, admin_user, settings, wsgi_app
):
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    settings.API_THROTTLE_RATE = "100000/minute"
    raw = token_for(admin_user, "schemathesis")
    headers = {"Authorization": f"Bearer {raw}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", wsgi_app)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "DELETE" and operation.path == "/api/v1/tokens/{id}/":
            continue  # it would revoke the token the run authenticates with
        real = _real_ids(operation.path, api_world)
        strategies = [
            operation.as_strategy(),
            operation.as_strategy(path_parameters=real),
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
        ]

        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(*strategies))
        def run(case):
            positive = case.meta is None or case.meta.generation.mode.is_positive
            case.call_and_validate(
                headers=headers,
                checks=checks if positive else [not_a_server_error, response_schema_conformance],
            )

        try:
            run()
        except Exception as error:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
        ran += 1
    assert ran >= 17
    assert not failures, "\n\n".join(failures)
