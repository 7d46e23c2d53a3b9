"""JFrog Artifactory client against `responses` fixtures shaped like Artifactory's REST API
answers (repository list, AQL results with properties, Docker API manifests and config blobs).

What a user would notice: every image of every Docker repository key shows up with its tags,
digests, sizes and platforms; a big repository costs one AQL query, not one per image; each auth
method sends what Artifactory expects; failures are named precisely, never leave a partial
listing, and never show the secret.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import responses
from responses import matchers

from imagesync.registries import build_client
from imagesync.registries.base import ClientConfig, DigestDetails, RegistryError, RepositoryInfo
from imagesync.registries.jfrog import MANIFEST_ACCEPT, JFrogClient, aql_query
from imagesync.registries.manifests import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX
from tests.support.jfrog_payloads import (
    aql_answer,
    digest,
    docker_repo,
    hexdigest,
    image_config,
    image_manifest,
    index_manifest,
    list_item,
    manifest_item,
)

HOST = "https://art.example.com"
ART = f"{HOST}/artifactory"
AQL_URL = f"{ART}/api/search/aql"
REPOS_URL = f"{ART}/api/repositories"
SECRET = "cmVmdGtuOjAxOjE3MzQ-Secret-Token-42"
USER = "sync-bot"


def make_client(url: str = ART, username: str = USER, **options) -> JFrogClient:
    options.setdefault("backoff_base", 0)
    config = ClientConfig(url=url, username=username, secret=SECRET, options=options)
    client = build_client("jfrog", config)
    client.transport._sleep = lambda seconds: None
    return client


def repositories(*repos: dict) -> None:
    responses.get(
        REPOS_URL,
        json=list(repos),
        match=[matchers.query_param_matcher({"packageType": "docker"})],
    )


EAST = timezone(timedelta(hours=2))


def aql(repo: str, results: list[dict], transitive: bool = False, **range_extra) -> None:
    responses.post(
        AQL_URL,
        json=aql_answer(results, **range_extra),
        match=[matchers.body_matcher(aql_query(repo, transitive))],
    )


def aql_calls() -> int:
    return sum(1 for call in responses.calls if call.request.url == AQL_URL)


def manifest_url(key: str, image: str, ref: str) -> str:
    return f"{ART}/api/docker/{key}/v2/{image}/manifests/{ref}"


def blob_url(key: str, image: str, ref: str) -> str:
    return f"{ART}/api/docker/{key}/v2/{image}/blobs/{ref}"


def serve_image(key: str, image: str, n: int, arch: str = "amd64") -> None:
    """The manifest of digest n (config 1000+n, layers 3000 and 40000) and its config blob."""
    body = image_manifest(n)
    responses.get(
        manifest_url(key, image, digest(n)),
        json=body,
        content_type=DOCKER_MANIFEST,
        match=[matchers.header_matcher({"Accept": MANIFEST_ACCEPT})],
    )
    responses.get(blob_url(key, image, body["config"]["digest"]), json=image_config(arch))


def serve_index(key: str, image: str, n: int) -> None:
    body = index_manifest(n)
    responses.get(manifest_url(key, image, digest(n)), json=body, content_type=OCI_INDEX)


def repo_info(key: str, image: str, **extra) -> RepositoryInfo:
    return RepositoryInfo.from_path("jfrog", f"{key}/{image}", repo_key=key, image=image, **extra)


# --- auth and check ---------------------------------------------------------------------------


@responses.activate
def test_basic_auth_is_sent_when_a_username_is_set():
    repositories(docker_repo("docker-local"))
    result = make_client().check()
    assert result.ok, result
    sent = responses.calls[0].request.headers
    assert (
        sent["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    )
    assert "X-JFrog-Art-Api" not in sent


@pytest.mark.parametrize(
    ("username", "options"), [("", {}), (USER, {"auth": "token"})], ids=["no-user", "explicit"]
)
@responses.activate
def test_an_access_token_is_sent_as_bearer(username, options):
    repositories(docker_repo("docker-local"))
    assert make_client(username=username, **options).check().ok
    sent = responses.calls[0].request.headers
    assert sent["Authorization"] == f"Bearer {SECRET}"


@responses.activate
def test_an_api_key_is_sent_in_the_jfrog_header_only():
    repositories(docker_repo("docker-local"))
    assert make_client(auth="apikey").check().ok
    sent = responses.calls[0].request.headers
    assert sent["X-JFrog-Art-Api"] == SECRET
    assert "Authorization" not in sent


def test_an_unknown_auth_method_is_refused_up_front():
    with pytest.raises(RegistryError) as caught:
        make_client(auth="kerberos")
    assert caught.value.code == "unsupported"


@pytest.mark.parametrize("url", [HOST, f"{HOST}/", ART, f"{ART}/"])
@responses.activate
def test_the_endpoint_works_with_or_without_the_artifactory_suffix(url):
    repositories(docker_repo("docker-local"), docker_repo("docker-prod"))
    result = make_client(url=url).check()
    assert result.ok
    assert "2 Docker repositories" in result.message
    assert responses.calls[0].request.url == f"{REPOS_URL}?packageType=docker"


@pytest.mark.parametrize(
    ("status", "code"), [(401, "auth_failed"), (403, "permission_denied"), (404, "not_found")]
)
@responses.activate
def test_check_reports_rejected_credentials_with_a_stable_code(status, code):
    body = {"errors": [{"status": status, "message": "Bad credentials"}]}
    responses.get(REPOS_URL, json=body, status=status)
    result = make_client().check()
    assert (result.ok, result.code) == (False, code)
    assert "Bad credentials" in result.message
    assert SECRET not in result.message


@responses.activate
def test_check_says_bad_response_when_the_url_is_not_artifactory():
    responses.get(REPOS_URL, body="<html>Welcome</html>", content_type="text/html")
    result = make_client().check()
    assert (result.ok, result.code) == (False, "bad_response")


# --- repositories -----------------------------------------------------------------------------


@responses.activate
def test_each_image_path_of_each_docker_key_is_a_repository():
    repositories(
        docker_repo("docker-local"),
        {**docker_repo("maven-local"), "packageType": "Maven"},
        docker_repo("dockerhub", "REMOTE"),
        docker_repo("docker", "VIRTUAL"),
        docker_repo("empty-local"),
    )
    aql(
        "docker-local",
        [
            manifest_item("docker-local", "team/api", "1.0", 1),
            manifest_item("docker-local", "team/api", "latest", 1),
            manifest_item("docker-local", "web", "2.0", 2, name="list.manifest.json"),
            # not tags: multi-arch children by digest, upload leftovers
            manifest_item("docker-local", "web/sha256:" + hexdigest(3), "x", 3),
            manifest_item("docker-local", "web", "sha256__" + hexdigest(4), 4),
            manifest_item("docker-local", "_uploads/tmp", "1", 5),
            {**manifest_item("docker-local", "web", "2.0", 6), "name": "repository.catalog"},
        ],
    )
    aql("dockerhub-cache", [manifest_item("dockerhub-cache", "library/nginx", "1.25", 7)])
    aql("empty-local", [])

    repos = list(make_client().list_repositories())

    assert [r.path for r in repos] == [
        "docker-local/team/api",
        "docker-local/web",
        "dockerhub/library/nginx",
    ]
    api = repos[0]
    assert (api.type, api.namespace, api.name) == ("jfrog", "docker-local", "team/api")
    assert api.extra == {"repo_key": "docker-local", "image": "team/api"}
    assert repos[2].extra["repo_key"] == "dockerhub"  # pulled through the remote key
    assert aql_calls() == 3  # the virtual key is skipped


@responses.activate
def test_the_repo_keys_option_restricts_the_listing_to_those_keys():
    repositories(docker_repo("a-local"), docker_repo("b-local"))
    aql("b-local", [manifest_item("b-local", "app", "1", 1)])
    repos = list(make_client(repo_keys="b-local").list_repositories())
    assert [r.path for r in repos] == ["b-local/app"]
    assert aql_calls() == 1


@responses.activate
def test_virtual_keys_are_listed_transitively_when_asked():
    repositories(docker_repo("docker", "VIRTUAL"))
    aql("docker", [manifest_item("docker", "app", "1", 1)], transitive=True)
    repos = list(make_client(include_virtual=True).list_repositories())
    assert [r.path for r in repos] == ["docker/app"]


@responses.activate
def test_a_failure_on_a_later_key_yields_no_repositories_at_all():
    repositories(docker_repo("a-local"), docker_repo("b-local"))
    aql("a-local", [manifest_item("a-local", "app", "1", 1)])
    responses.post(
        AQL_URL, status=401, json={"errors": [{"status": 401, "message": "Token expired"}]}
    )
    listing = make_client().list_repositories()
    with pytest.raises(RegistryError) as caught:
        next(listing)
    assert caught.value.code == "auth_failed"


# --- images: one AQL call per key ---------------------------------------------------------------


@responses.activate
def test_listing_fifty_images_of_one_key_costs_exactly_one_aql_call():
    repositories(docker_repo("docker-local"))
    items = []
    for n in range(50):
        items += [
            manifest_item("docker-local", f"svc/app{n:02}", "1.0", 10 + n),
            manifest_item("docker-local", f"svc/app{n:02}", "latest", 10 + n),
        ]
    aql("docker-local", items)
    client = make_client(fetch_manifests=False)

    repos = list(client.list_repositories())
    images = [client.list_images(repo) for repo in repos]

    assert len(repos) == 50
    assert all([i.tag for i in tags] == ["1.0", "latest"] for tags in images)
    assert aql_calls() == 1
    assert client.aql_calls == 1
    assert len(responses.calls) == 2  # the repository list and the one AQL query


@responses.activate
def test_a_fresh_client_listing_images_directly_also_uses_one_aql_call_per_key():
    aql("docker-local", [manifest_item("docker-local", f"app{n}", "v1", n) for n in range(1, 21)])
    client = make_client(fetch_manifests=False)
    for n in range(1, 21):
        assert [i.digest for i in client.list_images(repo_info("docker-local", f"app{n}"))] == [
            digest(n)
        ]
    assert aql_calls() == 1


@responses.activate
def test_tags_carry_digest_type_times_and_multi_arch_from_aql_alone():
    aql(
        "docker-local",
        [
            manifest_item("docker-local", "team/api", "1.0", 1),
            list_item("docker-local", "team/api", "multi", 2, DOCKER_LIST),
            manifest_item("docker-local", "team/api", "nodigestprop", 3, digest_property=False),
        ],
    )
    images = make_client(fetch_manifests=False).list_images(repo_info("docker-local", "team/api"))
    by_tag = {i.tag: i for i in images}
    assert set(by_tag) == {"1.0", "multi", "nodigestprop"}
    single = by_tag["1.0"]
    assert single.digest == digest(1)
    assert single.media_type == DOCKER_MANIFEST
    assert not single.multi_arch and single.size is None and single.platforms == ()
    assert single.updated == datetime(2021, 3, 21, 13, 54, 52, 383000, tzinfo=EAST)
    assert single.created == datetime(2021, 3, 20, 8, 0, tzinfo=UTC)
    assert by_tag["multi"].multi_arch and by_tag["multi"].media_type == DOCKER_LIST
    assert by_tag["nodigestprop"].digest == digest(3)  # from the sha256 field


@responses.activate
def test_manifests_give_sizes_and_platforms_without_touching_a_layer():
    key, image = "docker-local", "team/api"
    aql(
        key,
        [
            manifest_item(key, image, "1.0", 1),
            manifest_item(key, image, "stable", 1),  # same digest: fetched once
            manifest_item(key, image, "arm", 2),
            list_item(key, image, "multi", 100),
        ],
    )
    serve_image(key, image, 1)
    serve_image(key, image, 2, arch="arm64")
    serve_index(key, image, 100)

    images = {i.tag: i for i in make_client().list_images(repo_info(key, image))}

    assert images["1.0"].size == 1001 + 3000 + 40000
    assert images["1.0"].platforms == ("linux/amd64",)
    assert images["1.0"].created == datetime(2021, 3, 19, 8, 0, tzinfo=UTC)  # from the config
    assert images["stable"].size == images["1.0"].size
    assert images["arm"].platforms == ("linux/arm64",)
    multi = images["multi"]
    assert multi.multi_arch and multi.platforms == ("linux/amd64", "linux/arm/v7")
    assert multi.media_type == OCI_INDEX
    fetched = [call.request.url for call in responses.calls if call.request.method == "GET"]
    assert sum("/manifests/" in url for url in fetched) == 3
    assert not any(
        hexdigest(n + 600_000) in url or hexdigest(n + 700_000) in url
        for n in (1, 2)
        for url in fetched
    )


@responses.activate
def test_known_digests_are_not_fetched_again():
    key, image = "docker-local", "app"
    aql(key, [manifest_item(key, image, "1.0", 1)])
    known = {digest(1): DigestDetails(DOCKER_MANIFEST, 777, ("linux/s390x",), False, None)}
    images = make_client().list_images(repo_info(key, image), known)
    assert (images[0].size, images[0].platforms) == (777, ("linux/s390x",))
    assert aql_calls() == len(responses.calls) == 1


@responses.activate
def test_a_remote_repository_is_queried_through_its_cache_but_pulled_through_its_key():
    aql("dockerhub-cache", [manifest_item("dockerhub-cache", "library/nginx", "1.25", 1)])
    serve_image("dockerhub", "library/nginx", 1)
    repo = repo_info("dockerhub", "library/nginx", aql_repo="dockerhub-cache")
    images = make_client().list_images(repo)
    assert [(i.tag, i.platforms) for i in images] == [("1.25", ("linux/amd64",))]


@responses.activate
def test_an_image_with_no_tags_left_has_no_images():
    aql("docker-local", [manifest_item("docker-local", "other", "1", 1)])
    assert make_client().list_images(repo_info("docker-local", "gone")) == []


@responses.activate
def test_a_config_blob_redirected_to_storage_is_fetched_without_credentials():
    key, image = "docker-local", "app"
    aql(key, [manifest_item(key, image, "1.0", 1)])
    serve_image(key, image, 1)
    config_digest = digest(1 + 500_000)
    responses.replace(
        responses.GET,
        blob_url(key, image, config_digest),
        status=302,
        headers={"Location": "https://storage.example.net/blob?sig=abc"},
    )
    responses.get(
        "https://storage.example.net/blob",
        json={"architecture": "ppc64le", "os": "linux"},
    )
    client = make_client(auth="apikey")
    images = client.list_images(repo_info(key, image))
    assert images[0].platforms == ("linux/ppc64le",)
    storage_call = responses.calls[-1].request
    assert storage_call.url.startswith("https://storage.example.net/")
    assert "X-JFrog-Art-Api" not in storage_call.headers
    assert "Authorization" not in storage_call.headers


# --- errors ---------------------------------------------------------------------------------------


@responses.activate
def test_trimmed_aql_results_are_an_error_not_a_short_listing():
    notification = "AQL query reached the search hard limit, results are trimmed."
    aql("docker-local", [manifest_item("docker-local", "app", "1", 1)], notification=notification)
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("docker-local", "app"))
    assert caught.value.code == "bad_response"
    assert "cut the AQL results short" in caught.value.message


@responses.activate
def test_fewer_aql_results_than_the_reported_total_is_an_error():
    results = [manifest_item("docker-local", "app", "1", 1)]
    responses.post(
        AQL_URL, json={"results": results, "range": {"start_pos": 0, "end_pos": 1, "total": 9}}
    )
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("docker-local", "app"))
    assert caught.value.code == "bad_response"


@responses.activate
def test_too_many_concurrent_aql_queries_waits_as_told_then_succeeds():
    responses.post(AQL_URL, status=429, headers={"Retry-After": "3"}, body="Too Many Requests")
    aql("docker-local", [manifest_item("docker-local", "app", "1", 1)])
    client = make_client(fetch_manifests=False)
    waits: list[float] = []
    client.transport._sleep = waits.append
    assert [i.tag for i in client.list_images(repo_info("docker-local", "app"))] == ["1"]
    assert waits == [3.0]


@responses.activate
def test_endless_rate_limiting_is_reported_as_rate_limited():
    responses.post(AQL_URL, status=429, headers={"Retry-After": "1"})
    with pytest.raises(RegistryError) as caught:
        make_client(max_retries=2).list_images(repo_info("docker-local", "app"))
    assert caught.value.code == "rate_limited"
    assert aql_calls() == 3


@responses.activate
def test_server_errors_are_retried_then_reported_as_unreachable():
    responses.post(AQL_URL, status=502, body="Bad Gateway")
    with pytest.raises(RegistryError) as caught:
        make_client(max_retries=3).list_images(repo_info("docker-local", "app"))
    assert (caught.value.code, caught.value.retryable) == ("unreachable", True)
    assert aql_calls() == 4


@pytest.mark.parametrize(
    ("status", "code"), [(401, "auth_failed"), (403, "permission_denied"), (400, "bad_response")]
)
@responses.activate
def test_aql_failures_map_to_stable_codes(status, code):
    responses.post(AQL_URL, status=status, json={"errors": [{"status": status, "message": "nope"}]})
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("docker-local", "app"))
    assert caught.value.code == code


@pytest.mark.parametrize(
    "body",
    ['{"results":[{"repo":"docker-local","path":"app/1","na', "<html/>", '{"range": {}}', "[]"],
)
@responses.activate
def test_malformed_or_truncated_aql_json_is_a_bad_response(body):
    responses.post(AQL_URL, body=body, content_type="application/json")
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("docker-local", "app"))
    assert caught.value.code == "bad_response"


@responses.activate
def test_a_truncated_manifest_fails_the_listing():
    aql("docker-local", [manifest_item("docker-local", "app", "1", 1)])
    responses.get(manifest_url("docker-local", "app", digest(1)), body='{"schemaVersion": 2, "con')
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(repo_info("docker-local", "app"))
    assert caught.value.code == "bad_response"


@responses.activate
def test_a_token_expiring_mid_listing_raises_auth_failed_instead_of_a_partial_listing():
    key, image = "docker-local", "app"
    aql(key, [manifest_item(key, image, f"v{n}", n) for n in (1, 2, 3)])
    serve_image(key, image, 1)
    expired = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
    responses.get(manifest_url(key, image, digest(2)), status=401, json=expired)
    serve_image(key, image, 3)
    client = make_client(username="")
    with pytest.raises(RegistryError) as caught:
        client.list_images(repo_info(key, image))
    assert caught.value.code == "auth_failed"
    assert SECRET not in str(caught.value)


@responses.activate
def test_a_manifest_deleted_since_the_query_keeps_the_tag_without_details():
    item = list_item("docker-local", "app", "1", 1)
    aql("docker-local", [item])
    unknown = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
    responses.get(manifest_url("docker-local", "app", digest(1)), status=404, json=unknown)
    images = make_client().list_images(repo_info("docker-local", "app"))
    assert [(i.tag, i.digest, i.size, i.multi_arch) for i in images] == [
        ("1", digest(1), None, True)
    ]


@responses.activate
def test_no_error_message_contains_the_secret_even_when_artifactory_echoes_it():
    body = {"errors": [{"status": 401, "message": f"Token {SECRET} is expired"}]}
    responses.get(REPOS_URL, json=body, status=401)
    responses.post(AQL_URL, json=body, status=401)
    client = make_client(auth="token")
    assert SECRET not in client.check().message
    with pytest.raises(RegistryError) as caught:
        client.list_images(repo_info("docker-local", "app"))
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(client.config)


def test_the_aql_query_asks_for_both_manifest_kinds_with_properties():
    query = aql_query("docker-local")
    assert query.startswith('items.find({"repo":{"$eq":"docker-local"},"$or":[')
    assert json.loads(query[len("items.find(") : query.index(").include(")])["$or"] == [
        {"name": {"$eq": "manifest.json"}},
        {"name": {"$eq": "list.manifest.json"}},
    ]
    assert query.endswith(
        '.include("repo","path","name","size","created","modified","updated","sha256","property",'
        '"stat.downloaded","stat.downloads")'
    )


@responses.activate
def test_a_tag_moved_since_the_last_sync_is_listed_with_its_new_digest():
    key, image = "docker-local", "app"
    aql(key, [manifest_item(key, image, "1.0", 2)])
    previous = {"1.0": digest(1)}  # what the inventory holds: the tag's old digest
    [found] = make_client(fetch_manifests=False).list_images(
        repo_info(key, image), previous=previous
    )
    assert (found.tag, found.digest) == ("1.0", digest(2))
    assert aql_calls() == len(responses.calls) == 1
