"""One write path for registry connections: the console page, the admin, the API and
`manage.py registry add` run the same RegistryForm, so the same bad input is refused everywhere
with the same message, and kind-specific settings are stored under the keys the clients read."""

from __future__ import annotations

import html
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from imagesync.models import AuditEvent, Registry
from tests.support.api import FAST_HASHERS, api_as, api_url, reset_rate_limits

PROJECT_ID = "0123456789abcdef0123456789abcdef"
SWR_URL = "https://swr-api.cn-north-4.myhuaweicloud.com"

# (what, input, message): input is the connection in neutral words: the kind, the endpoint,
# the kind-specific settings and the advanced options.
BAD_INPUT = [
    (
        "an http endpoint without the insecure flag",
        {"kind": "other", "endpoint": "http://registry.example.com"},
        "This endpoint uses plain http://. Use https://, or allow insecure HTTP for a registry "
        "on a trusted network.",
    ),
    (
        "an SWR connection without region",
        {"kind": "swr", "endpoint": "https://swr.internal.example", "project_id": PROJECT_ID},
        "An SWR connection needs its region, e.g. cn-north-4.",
    ),
    (
        "an unknown region",
        {"kind": "swr", "endpoint": SWR_URL, "region": "xx-nowhere-9", "project_id": PROJECT_ID},
        "“xx-nowhere-9” is not a Huawei Cloud region that SWR serves; choose one from the list, "
        "e.g. cn-north-4.",
    ),
    (
        "an SWR connection without project ID",
        {"kind": "swr", "endpoint": SWR_URL, "region": "cn-north-4"},
        "An SWR connection needs the project ID of its region (My Credentials > API Credentials).",
    ),
    (
        "a malformed repository list",
        {"kind": "other", "endpoint": "https://r.example.com", "repositories": "team/api,Team/API"},
        "“Team/API” is not a repository path; enter one a line, e.g. team/api.",
    ),
    (
        "a malformed Harbor project filter",
        {"kind": "harbor", "endpoint": "https://h.example.com", "projects": "library,-bad"},
        "“-bad” is not a Harbor project name; enter one a line, e.g. library.",
    ),
    (
        "a direct_http option that is not true or false",
        {"kind": "other", "endpoint": "https://r.example.com", "advanced": {"direct_http": "no"}},
        "direct_http must be true or false.",
    ),
    (
        "an option of another kind",
        {
            "kind": "harbor",
            "endpoint": "https://h.example.com",
            "advanced": {"catalog_page_size": 5},
        },
        "“catalog_page_size” is not an option of a Harbor registry; it takes backoff_base, "
        "backoff_max, connect_timeout, direct_http, include_non_images, max_body_bytes, max_concurrency, "
        "max_retries, pipeline_depth, read_timeout, requests_per_second, retry_budget.",
    ),
    (
        "a security token in the clear options",
        {
            "kind": "swr",
            "endpoint": SWR_URL,
            "region": "cn-north-4",
            "project_id": PROJECT_ID,
            "advanced": {"security_token": "temporary-token-value"},
        },
        "A security token belongs to temporary credentials, which expire within a day and "
        "would be stored unencrypted here; give a permanent access key (user name) and secret "
        "key instead.",
    ),
    (
        "a bad advanced value",
        {"kind": "jfrog", "endpoint": "https://a.example.com", "advanced": {"max_concurrency": 0}},
        "max_concurrency must be a whole number from 1 to 64.",
    ),
    (
        "a pipeline deeper than allowed",
        {"kind": "other", "endpoint": "https://r.example.com", "advanced": {"pipeline_depth": 65}},
        "pipeline_depth must be a whole number from 1 to 64.",
    ),
]
SETTINGS = ("region", "project_id", "projects", "repo_keys", "repositories")


def console(client, project, spec: dict) -> str:
    data = {"name": "new-one", "kind": spec["kind"], "endpoint": spec["endpoint"]}
    data.update({key: spec[key] for key in SETTINGS if key in spec})
    data["options"] = json.dumps(spec.get("advanced", {}))
    response = client.post(reverse("imagesync:registry-create"), data)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def admin(client, project, spec: dict) -> str:
    data = {"project": project.pk, "name": "new-one", "kind": spec["kind"]}
    data.update({key: spec[key] for key in ("endpoint", *SETTINGS) if key in spec})
    data["options"] = json.dumps(spec.get("advanced", {}))
    data["verify_tls"] = "on"
    response = client.post(reverse("admin:imagesync_registry_add"), data)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def api(client, project, spec: dict) -> str:
    options = {key: spec[key] for key in SETTINGS if key in spec}
    options.update(spec.get("advanced", {}))
    body = {"name": "new-one", "kind": spec["kind"], "endpoint": spec["endpoint"]}
    response = client.post(
        api_url("registry-list", project_id=project.pk), {**body, "options": options}, "json"
    )
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    return " ".join(message for messages in details.values() for message in messages)


def command(client, project, spec: dict) -> str:
    args = ["add", "--project", project.name, "--name", "new-one", "--kind", spec["kind"]]
    args += ["--url", spec["endpoint"]]
    flags = {
        "region": "--region",
        "project_id": "--project-id",
        "projects": "--harbor-projects",
        "repo_keys": "--repository-keys",
        "repositories": "--repositories",
    }
    for key, flag in flags.items():
        if key in spec:
            args += [flag, spec[key]]
    for key, value in spec.get("advanced", {}).items():
        args += ["--option", f"{key}={json.dumps(value)}"]
    with pytest.raises(CommandError) as refused:
        call_command("registry", *args, stdout=io.StringIO())
    return str(refused.value)


SURFACES = {"console": console, "admin": admin, "api": api, "command": command}


@pytest.fixture
def surface_client(request, client, settings, admin_user, superuser):
    """A client signed in as whoever uses that surface: a project admin, the superuser in the
    admin site, a project admin's API token; the command needs none."""
    settings.PASSWORD_HASHERS = FAST_HASHERS
    reset_rate_limits()
    name = request.param
    if name == "api":
        return name, api_as(admin_user)
    client.force_login(superuser if name == "admin" else admin_user)
    return name, client


@pytest.mark.parametrize("surface_client", list(SURFACES), indirect=True)
@pytest.mark.parametrize(("what", "spec", "message"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_every_way_in_refuses_the_same_bad_input_with_the_same_message(
    project, surface_client, what, spec, message
):
    surface, client = surface_client
    answer = SURFACES[surface](client, project, spec)
    assert message in answer, f"{surface} said: {answer}"
    assert not Registry.objects.filter(name="new-one").exists()


# --- what each way in stores ----------------------------------------------------------------


def test_the_console_stores_swr_fields_under_the_keys_the_client_reads(login, admin_user):
    data = {
        "name": "swr-prod",
        "kind": "swr",
        "endpoint": SWR_URL,
        "username": "AK-123",
        "secret": "SK-456",
        "region": "cn-north-4",
        "project_id": PROJECT_ID,
        "projects": "Not a Harbor project!",  # another kind's field: ignored, even when wrong
        "repositories": "also/ignored",
        "options": '{"namespaces": ["team-a"]}',
        "verify_tls": "on",
    }
    response = login(admin_user).post(reverse("imagesync:registry-create"), data)
    assert response.status_code == 302
    registry = Registry.objects.get(name="swr-prod")
    assert registry.options == {
        "namespaces": ["team-a"],
        "region": "cn-north-4",
        "project_id": PROJECT_ID,
    }
    config = registry.client_config()
    assert config.option("region") == "cn-north-4" and config.option("project_id") == PROJECT_ID


def test_the_edit_page_shows_the_stored_settings_in_their_fields(login, admin_user, registry):
    registry.options = {"repositories": ["team/api", "team/web"], "max_concurrency": 2}
    registry.save()
    body = login(admin_user).get(reverse("imagesync:registry-edit", args=[registry.pk]))
    text = html.unescape(body.content.decode())
    assert "team/api\nteam/web</textarea>" in text
    assert '>\n{"max_concurrency": 2}</textarea>' in text  # the rest stays advanced
    assert 'data-registry-kind="swr"' in text and "registry_form.js" in text


def test_an_advanced_option_that_has_a_field_is_refused(login, admin_user):
    data = {
        "name": "oci",
        "kind": "other",
        "endpoint": "https://r.example.com",
        "options": '{"repositories": ["team/api"]}',
    }
    response = login(admin_user).post(reverse("imagesync:registry-create"), data)
    assert "“repositories” has its own field; set it there, not here." in html.unescape(
        response.content.decode()
    )


def test_the_api_keeps_accepting_every_option_in_its_options_object(project, admin_user):
    reset_rate_limits()
    response = api_as(admin_user).post(
        api_url("registry-list", project_id=project.pk),
        {
            "name": "jfrog",
            "kind": "jfrog",
            "endpoint": "https://acme.jfrog.io",
            "options": {"repo_keys": ["docker-local", "docker-remote"], "include_virtual": True},
        },
        "json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["options"] == {
        "repo_keys": ["docker-local", "docker-remote"],
        "include_virtual": True,
    }


def test_the_command_flags_store_the_same_keys(project):
    call_command(
        "registry", "add", "--project", "prod", "--kind", "swr", "--name", "swr",
        "--url", SWR_URL, "--region", "cn-north-4", "--project-id", PROJECT_ID,
        "--option", "enterprise=false",
        stdout=io.StringIO(),
    )  # fmt: skip
    registry = Registry.objects.get(name="swr")
    assert registry.options == {
        "enterprise": False,
        "region": "cn-north-4",
        "project_id": PROJECT_ID,
    }
    assert AuditEvent.objects.get(action="registry.create").detail == "via command line"


def test_an_update_is_audited_with_what_changed_and_never_the_secret(login, admin_user, registry):
    data = {
        "name": "local",
        "kind": "other",
        "endpoint": registry.endpoint,
        "username": "robot",
        "secret": "brand-new-secret-99",
        "repositories": "team/api",
        "verify_tls": "on",
        "options": "{}",
    }
    login(admin_user).post(reverse("imagesync:registry-edit", args=[registry.pk]), data)
    event = AuditEvent.objects.get(action="registry.update")
    assert event.detail == "changed: repositories (secret replaced)"
    assert event.actor == admin_user
