"""Harbor client against `responses` fixtures shaped like Harbor's v2.0 REST API answers.

What a user would notice: every project, repository and tag shows up (across pages), multi-arch
images show their platforms, nested repository names work, failures are named precisely and
never leave a half listing, and no error message leaks the secret.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import responses
from responses import matchers

from imagesync.registries import build_client
from imagesync.registries.base import (
    ClientConfig,
    RegistryError,
    RepositoryInfo,
    sizing_listings,
)
from imagesync.registries.harbor import HarborClient
from tests.support.harbor_payloads import (
    ZERO,
    digest,
    harbor_error,
    index_artifact,
    project,
    repository,
    single_artifact,
    tag,
)

BASE = "https://harbor.example.com"
API = f"{BASE}/api/v2.0"
SECRET = "s3cr3t-Robot-Token-9f8e7d"
ROBOT = "robot$library+sync"


def make_client(**options) -> HarborClient:
    options.setdefault("backoff_base", 0)
    config = ClientConfig(url=BASE, username=ROBOT, secret=SECRET, options=options)
    client = build_client("harbor", config)
    client.transport._sleep = lambda seconds: None
    return client


def page_params(page: int, **extra) -> list:
    params = {"page": str(page), "page_size": "100", **extra}
    return [matchers.query_param_matcher(params)]


def link_header(path: str, page: int, last: int) -> dict:
    """Harbor's Link: relative URLs, several joined by " , "."""
    links = []
    if page > 1:
        links.append(f'<{path}?page={page - 1}&page_size=100>; rel="prev"')
    if page < last:
        links.append(f'<{path}?page={page + 1}&page_size=100>; rel="next"')
    headers = {"X-Total-Count": str(last * 100), "X-Request-Id": "req-1"}
    if links:
        headers["Link"] = " , ".join(links)
    return headers


def serve_artifact_pages(*pages: list[dict]) -> None:
    """The artifacts of library/nginx in pages linked by Harbor's Link header."""
    path = "/api/v2.0/projects/library/repositories/nginx/artifacts"
    for page, body in enumerate(pages, start=1):
        responses.get(
            f"{BASE}{path}",
            json=body,
            headers=link_header(path, page, len(pages)),
            match=page_params(page, with_tag="true"),
        )


def repo_info(path: str) -> RepositoryInfo:
    return RepositoryInfo.from_path("harbor", path, project=path.split("/")[0])


# --- check ------------------------------------------------------------------------------------


@responses.activate
def test_check_proves_the_robot_credentials_with_an_authenticated_project_listing():
    responses.get(
        f"{API}/projects",
        json=[project(1, "library")],
        headers={"X-Total-Count": "3"},
        match=[matchers.query_param_matcher({"page": "1", "page_size": "1"})],
    )
    result = make_client().check()
    assert result.ok, result
    assert "3 project(s)" in result.message
    sent = responses.calls[0].request.headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(f"{ROBOT}:{SECRET}".encode()).decode()


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, harbor_error("UNAUTHORIZED", "unauthorized"), "auth_failed"),
        (403, harbor_error("FORBIDDEN", "forbidden"), "permission_denied"),
    ],
)
@responses.activate
def test_check_reports_rejected_credentials_with_a_stable_code(status, body, code):
    responses.get(f"{API}/projects", json=body, status=status)
    result = make_client().check()
    assert not result.ok
    assert result.code == code
    assert SECRET not in result.message


@responses.activate
def test_check_says_bad_response_when_the_url_is_not_a_harbor_api():
    responses.get(f"{API}/projects", body="<html>login</html>", content_type="text/html")
    result = make_client().check()
    assert (result.ok, result.code) == (False, "bad_response")


# --- repositories ---------------------------------------------------------------------------


@responses.activate
def test_it_lists_every_repository_of_every_project_across_pages():
    projects = [project(i, f"p{i:03}") for i in range(1, 151)]
    path = "/api/v2.0/projects"
    responses.get(
        f"{API}/projects",
        json=projects[:100],
        headers=link_header(path, 1, 2),
        match=page_params(1),
    )
    responses.get(
        f"{API}/projects",
        json=projects[100:],
        headers=link_header(path, 2, 2),
        match=page_params(2),
    )
    for i, proj in enumerate(projects, start=1):
        name = proj["name"]
        repos_path = f"/api/v2.0/projects/{name}/repositories"
        if name == "p001":
            first = [repository(n, i, f"{name}/app{n:03}") for n in range(100)]
            responses.get(
                f"{BASE}{repos_path}",
                json=first,
                headers=link_header(repos_path, 1, 2),
                match=page_params(1),
            )
            responses.get(
                f"{BASE}{repos_path}",
                json=[repository(100, i, f"{name}/team/api")],
                headers=link_header(repos_path, 2, 2),
                match=page_params(2),
            )
        elif name == "p002":  # an empty project
            responses.get(f"{BASE}{repos_path}", json=[], headers={"X-Total-Count": "0"})
        else:
            responses.get(
                f"{BASE}{repos_path}",
                json=[repository(1, i, f"{name}/web")],
                headers={"X-Total-Count": "1"},
            )

    repos = list(make_client().list_repositories())

    assert len(repos) == 101 + 148
    nested = next(r for r in repos if r.path == "p001/team/api")
    assert (nested.type, nested.namespace, nested.name) == ("harbor", "p001", "team/api")
    assert nested.extra == {"project": "p001"}
    assert {r.namespace for r in repos} == {p["name"] for p in projects} - {"p002"}


@responses.activate
def test_it_follows_x_total_count_when_there_is_no_link_header():
    full = [project(i, f"p{i}") for i in range(100)]
    responses.get(
        f"{API}/projects", json=full, headers={"X-Total-Count": "101"}, match=page_params(1)
    )
    responses.get(
        f"{API}/projects",
        json=[project(100, "last")],
        headers={"X-Total-Count": "101"},
        match=page_params(2),
    )
    assert len(make_client().project_names()) == 101


@responses.activate
def test_the_projects_option_restricts_the_listing_to_those_projects():
    responses.get(f"{API}/projects/team-a/repositories", json=[repository(1, 1, "team-a/api")])
    repos = list(make_client(projects=["team-a"]).list_repositories())
    assert [r.path for r in repos] == ["team-a/api"]
    repos = list(make_client(projects="team-a, ").list_repositories())
    assert [r.path for r in repos] == ["team-a/api"]
    assert all("/projects?" not in call.request.url for call in responses.calls)


@responses.activate
def test_a_repository_page_failing_midway_raises_instead_of_a_partial_listing():
    responses.get(f"{API}/projects", json=[project(1, "library")], headers={"X-Total-Count": "1"})
    path = "/api/v2.0/projects/library/repositories"
    responses.get(
        f"{BASE}{path}",
        json=[repository(n, 1, f"library/r{n}") for n in range(100)],
        headers=link_header(path, 1, 2),
        match=page_params(1),
    )
    responses.get(f"{BASE}{path}", body='[{"id": 1, "name": "library/tru', match=page_params(2))
    with pytest.raises(RegistryError) as caught:
        list(make_client().list_repositories())
    assert caught.value.code == "bad_response"
    assert "page 2" in caught.value.message


# --- images -----------------------------------------------------------------------------------


def artifacts_url(project_name: str, encoded_repo: str) -> str:
    return f"{API}/projects/{project_name}/repositories/{encoded_repo}/artifacts"


@responses.activate
def test_each_tag_becomes_an_image_and_untagged_artifacts_are_skipped():
    pushed_later = "2024-05-02T09:00:00.500Z"
    artifacts = [
        index_artifact(
            12, [tag(7, 12, "1.25", "2024-05-01T08:15:30.123Z"), tag(8, 12, "latest", pushed_later)]
        ),
        single_artifact(20, [tag(9, 20, "arm-only", ZERO)]),
        single_artifact(30, []),
    ]
    responses.get(
        artifacts_url("library", "nginx"),
        json=artifacts,
        headers={"X-Total-Count": "3"},
        match=page_params(1, with_tag="true"),
    )

    images = make_client().list_images(repo_info("library/nginx"))

    assert [i.tag for i in images] == ["1.25", "latest", "arm-only"]
    multi, latest, single = images
    assert multi.digest == latest.digest == digest(12)
    assert multi.multi_arch and multi.platforms == ("linux/amd64", "linux/arm64/v8")
    assert multi.media_type == "application/vnd.oci.image.index.v1+json"
    assert (
        multi.size is None
    )  # an index has no size of its own (manifests.py), whatever Harbor totals
    assert multi.updated == datetime(2024, 5, 1, 8, 15, 30, 123000, tzinfo=UTC)
    assert latest.updated == datetime(2024, 5, 2, 9, 0, 0, 500000, tzinfo=UTC)
    assert not single.multi_arch and single.platforms == ("linux/arm64",)
    assert single.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert single.size == 1020
    assert single.created == datetime(2024, 4, 30, 10, 0, tzinfo=UTC)
    # zero tag push time falls back to the artifact push time
    assert single.updated == datetime(2024, 4, 30, 10, 5, tzinfo=UTC)


@responses.activate
def test_nested_repository_names_are_double_encoded_in_the_artifacts_url():
    responses.get(
        artifacts_url("library", "team%252Fapps%252Fapi"),
        json=[single_artifact(1, [tag(1, 1, "v1", "2024-05-01T00:00:00Z")], arch="amd64")],
        headers={"X-Total-Count": "1"},
    )
    images = make_client().list_images(repo_info("library/team/apps/api"))
    assert [(i.tag, i.platforms) for i in images] == [("v1", ("linux/amd64",))]
    assert "/repositories/team%252Fapps%252Fapi/artifacts" in responses.calls[0].request.url


@responses.activate
def test_it_pages_through_artifacts_of_a_large_repository():
    path = "/api/v2.0/projects/library/repositories/busy/artifacts"
    for page in (1, 2, 3):
        count = 100 if page < 3 else 7
        first = (page - 1) * 100
        artifacts = [
            single_artifact(n, [tag(n, n, f"t{n}", "2024-05-01T00:00:00Z")])
            for n in range(first, first + count)
        ]
        headers = link_header(path, page, 3)
        headers["X-Total-Count"] = "207"
        responses.get(
            f"{BASE}{path}",
            json=artifacts,
            headers=headers,
            match=page_params(page, with_tag="true"),
        )
    sizes = []  # what the sync's listing budget is told, and when (imagesync.sync.budget)
    with sizing_listings(lambda images: sizes.append((images, len(responses.calls)))):
        images = make_client().list_images(repo_info("library/busy"))
    assert len(images) == 207
    assert len({i.digest for i in images}) == 207
    assert sizes == [(207, 1)]  # the artifact count, before the second page was asked for


@responses.activate
def test_an_empty_repository_has_no_images():
    responses.get(artifacts_url("library", "empty"), json=[], headers={"X-Total-Count": "0"})
    assert make_client().list_images(repo_info("library/empty")) == []


@responses.activate
def test_helm_charts_are_not_listed_as_images_unless_asked():
    chart = single_artifact(5, [tag(5, 5, "0.1.0", "2024-05-01T00:00:00Z")], type="CHART")
    image = single_artifact(6, [tag(6, 6, "1.0", "2024-05-01T00:00:00Z")])
    url = artifacts_url("library", "mixed")
    responses.get(url, json=[chart, image], headers={"X-Total-Count": "2"})
    assert [i.tag for i in make_client().list_images(repo_info("library/mixed"))] == ["1.0"]
    assert len(make_client(include_non_images=True).list_images(repo_info("library/mixed"))) == 2


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, harbor_error("UNAUTHORIZED", "unauthorized: unauthorized"), "auth_failed"),
        (403, harbor_error("FORBIDDEN", "forbidden"), "permission_denied"),
        (404, harbor_error("NOT_FOUND", "repository library/gone not found"), "not_found"),
        (400, harbor_error("NOT_FOUND", "project gone not found"), "not_found"),
        (500, harbor_error("UNKNOWN", "internal error"), "unreachable"),
    ],
)
@responses.activate
def test_listing_errors_map_to_stable_codes(status, body, code):
    responses.get(artifacts_url("library", "gone"), json=body, status=status)
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("library/gone"))
    assert caught.value.code == code
    assert SECRET not in str(caught.value)


@responses.activate
def test_a_404_message_carries_harbors_explanation():
    body = harbor_error("NOT_FOUND", "repository library/gone not found")
    responses.get(artifacts_url("library", "gone"), json=body, status=404)
    with pytest.raises(RegistryError, match="repository library/gone not found"):
        make_client().list_images(repo_info("library/gone"))


@responses.activate
def test_server_errors_are_retried_then_reported_as_unreachable():
    url = artifacts_url("library", "flaky")
    responses.get(url, status=503, body="Service Unavailable")
    client = make_client(max_retries=2)
    with pytest.raises(RegistryError) as caught:
        client.list_images(repo_info("library/flaky"))
    assert caught.value.code == "unreachable"
    assert caught.value.retryable
    assert len(responses.calls) == 3


@responses.activate
def test_rate_limiting_waits_as_told_by_retry_after_then_succeeds():
    url = artifacts_url("library", "busy")
    responses.get(
        url, status=429, headers={"Retry-After": "7"}, json=harbor_error("TOO_MANY_REQUEST", "slow")
    )
    responses.get(
        url, json=[single_artifact(1, [tag(1, 1, "v1", ZERO)])], headers={"X-Total-Count": "1"}
    )
    client = make_client()
    waits: list[float] = []
    client.transport._sleep = waits.append
    images = client.list_images(repo_info("library/busy"))
    assert [i.tag for i in images] == ["v1"]
    assert waits == [7.0]


@responses.activate
def test_rate_limiting_that_never_ends_is_reported_as_rate_limited():
    responses.get(artifacts_url("library", "busy"), status=429, headers={"Retry-After": "1"})
    with pytest.raises(RegistryError) as caught:
        make_client(max_retries=1).list_images(repo_info("library/busy"))
    assert caught.value.code == "rate_limited"


@pytest.mark.parametrize(
    "body",
    [
        '[{"id": 1, "digest": "sha256:abc", "tags": [',
        "<html>oops</html>",
        '{"not": "a list"}',
        "[1, 2]",
    ],
)
@responses.activate
def test_malformed_or_truncated_json_is_a_bad_response(body):
    responses.get(artifacts_url("library", "nginx"), body=body, content_type="application/json")
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("library/nginx"))
    assert caught.value.code == "bad_response"


@responses.activate
def test_an_artifact_page_failing_midway_raises_instead_of_a_partial_listing():
    path = "/api/v2.0/projects/library/repositories/nginx/artifacts"
    first = [single_artifact(n, [tag(n, n, f"t{n}", ZERO)]) for n in range(100)]
    responses.get(
        f"{BASE}{path}",
        json=first,
        headers=link_header(path, 1, 2),
        match=page_params(1, with_tag="true"),
    )
    responses.get(
        f"{BASE}{path}",
        status=401,
        json=harbor_error("UNAUTHORIZED", "unauthorized"),
        match=page_params(2, with_tag="true"),
    )
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("library/nginx"))
    assert caught.value.code == "auth_failed"


@responses.activate
def test_no_error_message_contains_the_secret_even_when_harbor_echoes_it():
    body = harbor_error("UNAUTHORIZED", f"bad credentials {ROBOT}:{SECRET}")
    responses.get(artifacts_url("library", "nginx"), json=body, status=401)
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("library/nginx"))
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(make_client().config)


@responses.activate
def test_a_single_platform_index_with_an_attestation_is_not_called_multi_arch():
    artifact = index_artifact(40, [tag(1, 40, "v1", ZERO)])
    artifact["references"] = [artifact["references"][0], artifact["references"][2]]
    responses.get(artifacts_url("library", "app"), json=[artifact], headers={"X-Total-Count": "1"})
    (image,) = make_client().list_images(repo_info("library/app"))
    assert image.platforms == ("linux/amd64",)
    assert not image.multi_arch


@responses.activate
def test_a_failure_on_a_later_project_yields_no_repositories_at_all():
    responses.get(
        f"{API}/projects",
        json=[project(1, "alpha"), project(2, "beta")],
        headers={"X-Total-Count": "2"},
    )
    responses.get(f"{API}/projects/alpha/repositories", json=[repository(1, 1, "alpha/api")])
    responses.get(
        f"{API}/projects/beta/repositories",
        status=403,
        json=harbor_error("FORBIDDEN", "forbidden"),
    )
    listing = make_client().list_repositories()
    with pytest.raises(RegistryError) as caught:
        next(listing)
    assert caught.value.code == "permission_denied"


@responses.activate
def test_a_tag_moved_by_a_push_between_pages_fails_the_listing_as_retryable():
    first = [single_artifact(n, [tag(n, n, f"t{n}", ZERO)]) for n in range(100)]
    second = [single_artifact(500, [tag(500, 500, "t99", ZERO)])]  # t99 now on a new digest
    serve_artifact_pages(first, second)
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("library/nginx"))
    assert (caught.value.code, caught.value.retryable) == ("bad_response", True)


@responses.activate
def test_an_artifact_repeated_by_shifted_pages_is_listed_once():
    first = [single_artifact(n, [tag(n, n, f"t{n}", ZERO)]) for n in range(100)]
    second = [first[-1], single_artifact(100, [tag(100, 100, "t100", ZERO)])]
    serve_artifact_pages(first, second)
    images = make_client().list_images(repo_info("library/nginx"))
    assert len(images) == 101


@responses.activate
def test_a_tag_moved_since_the_last_sync_is_listed_with_its_new_digest_in_one_request():
    responses.get(
        artifacts_url("library", "nginx"),
        json=[single_artifact(20, [tag(9, 20, "1.0", ZERO)])],
        headers={"X-Total-Count": "1"},
    )
    previous = {"1.0": digest(19), "gone": digest(18)}  # what the inventory holds
    [image] = make_client().list_images(repo_info("library/nginx"), {}, previous=previous)
    assert (image.tag, image.digest, len(responses.calls)) == ("1.0", digest(20), 1)


@responses.activate
@pytest.mark.parametrize("total", ["9" * 5000, "²", "-3", "lots"])
def test_a_total_count_that_is_not_a_count_ends_the_listing_at_its_last_page(total):
    """Without a Link header the pages end where X-Total-Count says; one that is not plain
    digits of a sane length says nothing: that page is the last, and no size is told."""
    artifacts = [single_artifact(1, [tag(1, 1, "v1", "2024-05-01T00:00:00Z")])]
    responses.get(
        artifacts_url("library", "odd"),
        json=artifacts,
        headers={"X-Total-Count": total},
        match=page_params(1, with_tag="true"),
    )
    sizes = []
    with sizing_listings(sizes.append):
        images = make_client().list_images(repo_info("library/odd"))
    assert [image.tag for image in images] == ["v1"] and sizes == []
