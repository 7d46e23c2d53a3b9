"""Where has this digest been: a digest or its leading hex characters gives every repository
and tag of the project that ever pointed to it, with the times -- including those of a removed
registry connection -- on the page and in the API; nonsense gets a clear message."""

from __future__ import annotations

import pytest
from django.urls import reverse

from imagesync.models import Registry
from tests.support.api import api_as, assert_error, reset_rate_limits
from tests.support.fakes import digest
from tests.support.history_seed import (
    T1,
    T2,
    connect,
    image,
    repository_of,
    sync,
    with_digest,
)
from tests.support.web import body_of

SHARED = digest("shared-build")


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db):
    reset_rate_limits()


@pytest.fixture
def world(project):
    """One build pushed as api:stable (T1, moved away at T2) and web:1.0 (T2, still there),
    and as old:legacy in a registry whose connection is then removed."""
    api = repository_of(connect(project, "hub"), "team/api")
    web = repository_of(connect(project, "mirror"), "team/web")
    gone = connect(project, "retired")
    old = repository_of(gone, "team/old")
    sync(api, [image("stable", "shared-build")], T1)
    sync(old, [image("legacy", "shared-build")], T1)
    sync(api, [image("stable", "next-build")], T2)
    sync(web, [image("1.0", "shared-build")], T2)
    Registry.objects.get(pk=gone.pk).remove()
    return {"api": api, "web": web}


def lookup(client, value: str):
    return client.get(reverse("imagesync:digest-history"), {"digest": value})


@pytest.mark.parametrize(
    "typed", [SHARED, SHARED.upper(), SHARED[7:], SHARED[7:19], SHARED[:11], f"  {SHARED[7:11]} "]
)
def test_a_digest_or_its_leading_hex_finds_every_tag_that_pointed_to_it(
    client, viewer, world, typed
):
    client.force_login(viewer)
    response = lookup(client, typed)
    assert response.status_code == 200
    body = body_of(response)
    assert f"<h2><code>{SHARED}</code></h2>" in body
    for where in ("team/api", "team/web", "team/old"):
        assert where in body
    assert "still current" in body  # web:1.0
    assert "2026-11-01 09:00:00" in body and "2026-11-01 10:00:00" in body  # api:stable


def test_a_removed_connections_tags_keep_their_registry_name(client, viewer, world):
    client.force_login(viewer)
    body = body_of(lookup(client, SHARED))
    assert "retired" in body and "connection removed" in body


def test_a_tag_of_a_known_repository_links_to_its_timeline(client, viewer, world):
    client.force_login(viewer)
    body = body_of(lookup(client, SHARED))
    assert reverse("imagesync:tag-history", args=[world["api"].pk, "stable"]) in body


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("zzzz", "hex characters"),
        ("abc", "at least 4 hex characters"),
        ("md5:abcdef", "sha256: or sha512:"),
        ("sha256:", "at least 4 hex characters"),
        ("a" * 129, "longer than a digest"),
        ("sha256:" + "a" * 65, "longer than a digest"),
        ("ab\x00cd", "hex characters"),
        ("<script>", "hex characters"),
    ],
)
def test_a_malformed_digest_gets_a_clear_message_inline(client, viewer, world, typed, message):
    client.force_login(viewer)
    response = lookup(client, typed)
    assert response.status_code == 200
    body = body_of(response)
    assert message in body and 'class="field-error"' in body
    assert "<script>" not in body.split("<main", 1)[1]
    response = api_as(viewer).get(digests_url(world), {"digest": typed})
    error = assert_error(response, 400, "validation_error")
    assert message in error["details"]["digest"][0]


def test_a_digest_no_tag_had_says_so(client, viewer, world):
    client.force_login(viewer)
    assert "No tag of this project has pointed to that digest" in body_of(
        lookup(client, "sha256:" + "0" * 64)
    )


def test_a_prefix_matching_many_digests_lists_them_grouped_and_paged(client, viewer, project):
    repository = repository_of(connect(project, "hub"), "team/many")
    listing = [with_digest(image(f"t{n}"), f"sha256:beef{n:02d}" + "0" * 58) for n in range(12)]
    sync(repository, listing, T1)
    client.force_login(viewer)
    first = body_of(lookup(client, "beef"))
    assert "<strong>12</strong> digests found" in first
    assert first.count("<h2><code>sha256:beef") == 10
    second = body_of(client.get(reverse("imagesync:digest-history"), {"digest": "beef", "page": 2}))
    assert second.count("<h2><code>sha256:beef") == 2
    assert "sha256:beef11" in second and "sha256:beef00" not in second


def test_nothing_of_another_project_is_found(client, outsider, world):
    client.force_login(outsider)
    body = body_of(lookup(client, SHARED))
    assert "team/api" not in body and "No tag of this project" in body


# --- API ---------------------------------------------------------------------------------------


def digests_url(world) -> str:
    project = world["api"].registry.project
    return reverse("api:digest-history", kwargs={"project_id": project.pk})


def test_the_api_lists_each_digest_with_where_and_when(viewer, world):
    response = api_as(viewer).get(digests_url(world), {"digest": SHARED[7:15]})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1 and body["results"][0]["digest"] == SHARED
    spans = {
        (s["registry_name"], s["repository_path"], s["tag"]): s for s in body["results"][0]["spans"]
    }
    assert set(spans) == {
        ("hub", "team/api", "stable"),
        ("mirror", "team/web", "1.0"),
        ("retired", "team/old", "legacy"),
    }
    stable = spans[("hub", "team/api", "stable")]
    assert (stable["valid_from"], stable["valid_to"], stable["current"]) == (
        "2026-11-01T09:00:00Z",
        "2026-11-01T10:00:00Z",
        False,
    )
    assert spans[("mirror", "team/web", "1.0")]["current"] is True
    legacy = spans[("retired", "team/old", "legacy")]
    assert legacy["registry_removed"] is True and legacy["repository_id"] is None
    assert legacy["valid_to"] is not None  # the removal closed it


def test_the_api_needs_a_digest_and_hides_other_projects(outsider, viewer, world):
    assert_error(api_as(viewer).get(digests_url(world)), 400, "validation_error")
    assert_error(api_as(outsider).get(digests_url(world), {"digest": SHARED}), 404, "not_found")
