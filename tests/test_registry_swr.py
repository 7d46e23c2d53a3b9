"""SWR client against `responses` fixtures shaped like the SWR API's answers.

No database: the client imports no models. Signatures are checked two ways: against vectors
produced by huaweicloudsdkcore 3.1.219's own Signer, and against a canonical request rebuilt by
hand in the test from what was actually sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import responses
from responses import matchers

from imagesync.registries import build_client
from imagesync.registries.base import (
    ClientConfig,
    DigestDetails,
    RegistryError,
    RepositoryInfo,
    sizing_listings,
)
from imagesync.registries.swr import SwrClient
from imagesync.registries.swr_signer import AkSkSigner
from tests.support.swr_payloads import (
    artifact,
    fixture,
    instance,
    instance_repository,
    repo,
    tag,
)

BASE = "https://swr-api.cn-north-4.myhuaweicloud.com"
AK = "HPUAEXAMPLEAK0000001"
SK = "exampleSecretKey0123456789abcdefEXAMPLE"
PROJECT = "0123456789abcdef0123456789abcdef"
INSTANCE = "5b8f1f62-0000-4a8e-9d3e-0123456789ab"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def page(offset: int, items: list, total: int, **extra_headers) -> dict:
    """Keyword arguments for responses.add: a v2 JSON array page with its Content-Range."""
    headers = {"Content-Range": f"{offset}-{len(items)}/{total}", **extra_headers}
    return {"json": items, "headers": headers}


def query(**params) -> list:
    return [matchers.query_param_matcher({k: str(v) for k, v in params.items()})]


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(sleeps):
    """A client whose transport records the waits instead of sleeping."""

    def make(url: str = BASE, secret: str = SK, **options) -> SwrClient:
        options.setdefault("project_id", PROJECT)
        config = ClientConfig(url=url, username=AK, secret=secret, options=options)
        client = build_client("swr", config)
        client.transport._sleep = sleeps.append
        return client

    return make


# -- signing ------------------------------------------------------------------------------------

SDK_VECTORS = [
    # (path as sent, query params, security token, signed headers, signature) — computed with
    # huaweicloudsdkcore 3.1.219 `Signer.sign` for AK/SK/PROJECT above at 20240501T080000Z.
    (
        "/v2/manage/repos",
        [("offset", "0"), ("limit", "100"), ("namespace", "team-a")],
        "",
        "content-type;host;x-project-id;x-sdk-date",
        "7e2430c312b6088b77f783f7b00f23a2b1da1f8fed51b23c8547d3bd07558fc3",
    ),
    (
        "/v2/manage/namespaces/team-a/repos/app%2Fweb/tags",
        [("offset", "100"), ("limit", "100")],
        "",
        "content-type;host;x-project-id;x-sdk-date",
        "3b6ab05d7f71409be9b5b16dc8b7191dbe4c1a79a32091b641e3ee79f5e105f3",
    ),
    (
        "/v2/manage/namespaces",
        [],
        "temporary-token-value",
        "content-type;host;x-project-id;x-sdk-date;x-security-token",
        "e28e3a90ce177a7f7ae30ac93895180dae9a12f1e0dc923db52e5f05c9c2ef19",
    ),
]


@pytest.mark.parametrize("path,params,token,signed_headers,expected", SDK_VECTORS)
def test_its_signatures_match_the_official_sdk(path, params, token, signed_headers, expected):
    signer = AkSkSigner(AK, SK, PROJECT, token)
    when = datetime(2024, 5, 1, 8, 0, 0, tzinfo=UTC)
    url, headers = signer.sign("GET", BASE + path, params, when=when)
    assert headers["Authorization"] == (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders={signed_headers}, Signature={expected}"
    )
    assert headers["X-Sdk-Date"] == "20240501T080000Z"
    # the query is sent sorted, exactly as it was signed
    assert url.endswith(
        path + ("?" + "&".join(f"{k}={v}" for k, v in sorted(params)) if params else "")
    )


def test_it_signs_each_request_so_the_gateway_can_verify_it(mocked, make_client):
    mocked.get(
        f"{BASE}/v2/manage/namespaces/team-a/repos/app%2Fweb/tags",
        match=query(limit=100, offset=0),
        **page(0, [tag("latest")], 1),
    )
    client = make_client()
    client.list_images(RepositoryInfo.from_path("swr_private", "team-a/app/web"))

    sent = mocked.calls[0].request
    headers = sent.headers
    assert re.fullmatch(r"\d{8}T\d{6}Z", headers["X-Sdk-Date"])
    assert headers["X-Project-Id"] == PROJECT
    assert headers["Host"] == "swr-api.cn-north-4.myhuaweicloud.com"
    match = re.fullmatch(
        r"SDK-HMAC-SHA256 Access=(\S+), SignedHeaders=(\S+), Signature=([0-9a-f]{64})",
        headers["Authorization"],
    )
    assert match, headers["Authorization"]
    access, signed, signature = match.groups()
    assert access == AK
    assert signed == "content-type;host;x-project-id;x-sdk-date"

    # Rebuild the canonical request by hand from what went over the wire.
    parts = urlsplit(sent.url)
    assert parts.path.endswith("/repos/app%2Fweb/tags")
    canonical_uri = "/v2/manage/namespaces/team-a/repos/app/web/tags/"
    canonical_query = "limit=100&offset=0"
    assert parts.query == canonical_query
    canonical_headers = (
        "content-type:application/json\n"
        "host:swr-api.cn-north-4.myhuaweicloud.com\n"
        f"x-project-id:{PROJECT}\n"
        f"x-sdk-date:{headers['X-Sdk-Date']}\n"
    )
    canonical = "\n".join(
        ["GET", canonical_uri, canonical_query, canonical_headers, signed, EMPTY_SHA256]
    )
    to_sign = "\n".join(
        [
            "SDK-HMAC-SHA256",
            headers["X-Sdk-Date"],
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    assert signature == hmac.new(SK.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def test_it_sends_and_signs_the_security_token_of_temporary_credentials(mocked, make_client):
    mocked.get(f"{BASE}/v2/manage/namespaces", json=fixture("namespaces.json"))
    client = make_client(security_token="temporary-token-value")
    assert client.check().ok
    headers = mocked.calls[0].request.headers
    assert headers["X-Security-Token"] == "temporary-token-value"
    assert "x-security-token" in headers["Authorization"].split("SignedHeaders=")[1]
    assert "temporary-token-value" not in repr(client.signer)


# -- configuration and check() --------------------------------------------------------------------


def test_check_reports_a_working_connection(mocked, make_client):
    mocked.get(f"{BASE}/v2/manage/namespaces", json=fixture("namespaces.json"))
    result = make_client().check()
    assert result.ok
    assert "2 namespace(s)" in result.message


def test_check_without_project_id_fails_with_a_clear_message_and_sends_nothing(mocked, make_client):
    client = make_client(project_id="")
    result = client.check()
    assert not result.ok
    assert result.code == "auth_failed"
    assert "project ID" in result.message and "project_id" in result.message
    with pytest.raises(RegistryError, match="project ID"):
        list(client.list_repositories(["swr_private"]))
    assert len(mocked.calls) == 0


def test_check_without_secret_key_asks_for_ak_and_sk(mocked, make_client):
    result = make_client(secret="").check()
    assert (result.ok, result.code) == (False, "auth_failed")
    assert "secret key (SK)" in result.message


def test_it_derives_the_endpoint_and_registry_host_from_the_region(mocked, make_client):
    client = make_client(url="", region="eu-west-101")
    assert client.transport.base_url == "https://swr-api.eu-west-101.myhuaweicloud.eu"
    assert client.registry_host == "swr.eu-west-101.myhuaweicloud.eu"
    assert make_client().registry_host == "swr.cn-north-4.myhuaweicloud.com"


def test_it_refuses_a_connection_with_neither_endpoint_nor_region(make_client):
    with pytest.raises(RegistryError) as caught:
        make_client(url="")
    assert caught.value.code == "unsupported"
    assert "region" in caught.value.message


# -- private repositories -------------------------------------------------------------------------


def test_it_lists_private_repositories_across_pages_using_content_range(mocked, make_client):
    first = [repo("team-a", f"app-{i:03d}", total=150) for i in range(100)]
    second = [repo("team-b", f"svc-{i:03d}", total=150) for i in range(50)]
    mocked.get(f"{BASE}/v2/manage/repos", match=query(limit=100, offset=0), **page(0, first, 150))
    mocked.get(
        f"{BASE}/v2/manage/repos", match=query(limit=100, offset=100), **page(100, second, 150)
    )

    found = list(make_client().list_repositories(["swr_private"]))

    assert len(found) == 150
    assert len(mocked.calls) == 2  # stopped once the total was reached
    assert found[0].path == "team-a/app-000"
    assert (found[0].namespace, found[0].name) == ("team-a", "app-000")
    assert found[-1].path == "team-b/svc-049"
    assert {r.type for r in found} == {"swr_private"}
    assert found[0].extra["registry_host"] == "swr.cn-north-4.myhuaweicloud.com"


def test_it_restricts_private_repositories_to_the_configured_namespaces(mocked, make_client):
    mocked.get(
        f"{BASE}/v2/manage/repos",
        match=query(limit=100, namespace="team-a", offset=0),
        **page(0, [repo()], 1),
    )
    found = list(make_client(namespaces="team-a").list_repositories(["swr_private"]))
    assert [r.path for r in found] == ["team-a/nginx"]


def test_an_account_without_repositories_lists_none(mocked, make_client):
    mocked.get(f"{BASE}/v2/manage/repos", body="[]", content_type="application/json")
    assert list(make_client().list_repositories(["swr_private"])) == []


def test_it_follows_total_range_when_content_range_is_missing(mocked, make_client):
    mocked.get(
        f"{BASE}/v2/manage/repos",
        match=query(limit=2, offset=0),
        json=[repo(name="a", total=3), repo(name="b", total=3)],
    )
    mocked.get(
        f"{BASE}/v2/manage/repos", match=query(limit=2, offset=2), json=[repo(name="c", total=3)]
    )
    found = list(make_client(page_size=2).list_repositories(["swr_private"]))
    assert [r.name for r in found] == ["a", "b", "c"]


def test_it_refuses_a_listing_that_ends_before_the_reported_total(mocked, make_client):
    mocked.get(
        f"{BASE}/v2/manage/repos",
        match=query(limit=2, offset=0),
        **page(0, [repo(name="a", total=5), repo(name="b", total=5)], 5),
    )
    mocked.get(f"{BASE}/v2/manage/repos", match=query(limit=2, offset=2), **page(2, [], 5))
    with pytest.raises(RegistryError) as caught:
        list(make_client(page_size=2).list_repositories(["swr_private"]))
    assert caught.value.code == "bad_response"
    assert "2 of 5" in caught.value.message


# -- shared repositories --------------------------------------------------------------------------


def test_it_lists_repositories_shared_with_the_account_and_keeps_expired_shares(
    mocked, make_client
):
    shared = [
        repo("partner", "base-image", total=3, domain_name="partner-co", status=True),
        repo("partner", "old-tool", total=3, domain_name="partner-co", status=False),
    ]
    mocked.get(
        f"{BASE}/v2/manage/shared-repositories",
        match=query(center="thirdparty", limit=2, offset=0),
        **page(0, shared, 3),
    )
    mocked.get(
        f"{BASE}/v2/manage/shared-repositories",
        match=query(center="thirdparty", limit=2, offset=2),
        **page(2, [repo("team-a", "nginx", total=3, domain_name="other-co", status=True)], 3),
    )

    found = list(make_client(page_size=2).list_repositories(["swr_shared"]))

    assert [r.path for r in found] == ["partner/base-image", "partner/old-tool", "team-a/nginx"]
    assert {r.type for r in found} == {"swr_shared"}
    assert found[1].extra["shared_status"] is False
    assert found[1].extra["domain_name"] == "partner-co"
    assert found[0].extra["shared_status"] is True


def test_the_same_path_can_be_private_and_shared_because_the_type_belongs_to_the_repository(
    mocked, make_client
):
    mocked.get(f"{BASE}/v2/manage/repos", **page(0, [repo()], 1))
    mocked.get(f"{BASE}/v2/manage/shared-repositories", **page(0, [repo(status=True)], 1))
    found = list(make_client(enterprise=False).list_repositories())
    assert [(r.type, r.path) for r in found] == [
        ("swr_private", "team-a/nginx"),
        ("swr_shared", "team-a/nginx"),
    ]


# -- tags of private and shared repositories ------------------------------------------------------


def test_it_lists_tags_across_pages_with_their_digest_size_and_times(mocked, make_client):
    tags_url = f"{BASE}/v2/manage/namespaces/team-a/repos/nginx/tags"
    mocked.get(
        tags_url,
        match=query(limit=2, offset=0),
        **page(0, [tag("latest", "2"), tag("1.24", "5", size=100)], 3),
    )
    mocked.get(
        tags_url,
        match=query(limit=2, offset=2),
        **page(2, [tag("1.23", "6", updated="2024-06-01 12:30:00")], 3),
    )

    sizes = []  # what the sync's listing budget is told, and when (imagesync.sync.budget)
    with sizing_listings(lambda images: sizes.append((images, len(mocked.calls)))):
        images = make_client(page_size=2).list_images(
            RepositoryInfo.from_path("swr_private", "team-a/nginx")
        )

    assert sizes == [(3, 1)]  # the total, before the second page was asked for
    assert [i.tag for i in images] == ["latest", "1.24", "1.23"]
    latest = images[0]
    assert latest.digest == "sha256:" + "2" * 64
    assert latest.size == 26214400
    assert latest.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert latest.multi_arch is False
    assert latest.created == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert images[2].updated == datetime(2024, 6, 1, 12, 30, tzinfo=UTC)


def test_it_encodes_a_slash_in_a_repository_name(mocked, make_client):
    mocked.get(
        f"{BASE}/v2/manage/namespaces/team-a/repos/app%2Fweb/tags", **page(0, [tag("v1")], 1)
    )
    images = make_client().list_images(RepositoryInfo.from_path("swr_shared", "team-a/app/web"))
    assert [i.tag for i in images] == ["v1"]
    assert "/repos/app%2Fweb/tags?" in mocked.calls[0].request.url


def test_an_empty_repository_has_no_images(mocked, make_client):
    mocked.get(
        f"{BASE}/v2/manage/namespaces/team-a/repos/empty/tags",
        body="[]",
        content_type="application/json",
    )
    repository = RepositoryInfo.from_path("swr_private", "team-a/empty")
    assert make_client().list_images(repository) == []


def test_a_manifest_list_tag_is_multi_arch_with_its_platforms(mocked, make_client):
    plain_list = tag("edge", "7", tag_type=1, manifest="")
    mocked.get(
        f"{BASE}/v2/manage/namespaces/team-a/repos/nginx/tags",
        **page(0, [fixture("tag_manifest_list.json"), plain_list], 2),
    )
    images = make_client().list_images(RepositoryInfo.from_path("swr_private", "team-a/nginx"))

    indexed, bare = images
    assert indexed.multi_arch is True
    assert indexed.platforms == ("linux/amd64", "linux/arm64/v8")  # attestation left out
    assert indexed.media_type == "application/vnd.oci.image.index.v1+json"
    assert bare.multi_arch is True  # tag_type 1, no manifest to read platforms from
    assert bare.platforms == ()


def test_known_digests_fill_in_platforms_swr_does_not_report(mocked, make_client):
    mocked.get(
        f"{BASE}/v2/manage/namespaces/team-a/repos/nginx/tags",
        **page(0, [tag("latest", "2", manifest="")], 1),
    )
    known = {"sha256:" + "2" * 64: DigestDetails(platforms=("linux/amd64",))}
    images = make_client().list_images(
        RepositoryInfo.from_path("swr_private", "team-a/nginx"), known
    )
    assert images[0].platforms == ("linux/amd64",)


# -- Enterprise Edition ---------------------------------------------------------------------------


def test_it_lists_repositories_of_running_enterprise_instances(mocked, make_client):
    instances_url = f"{BASE}/v2/{PROJECT}/instances"
    second_id = "9c0d0000-0000-4000-8000-000000000002"
    mocked.get(
        instances_url,
        match=query(offset=0, limit=2),
        json={"instances": [instance(), instance(id="creating-1", status="Creating")], "total": 3},
    )
    mocked.get(
        instances_url,
        match=query(offset=2, limit=2),
        json={
            "instances": [
                instance(id=second_id, name="ee-test", access_address="ee-test.example.com")
            ],
            "total": 3,
        },
    )
    mocked.get(
        f"{BASE}/v2/{PROJECT}/instances/{INSTANCE}/repositories",
        match=query(offset=0, limit=2),
        json={
            "total": 3,
            "repositories": [
                instance_repository("shop", "api"),
                instance_repository("shop", "app/web"),
            ],
        },
    )
    mocked.get(
        f"{BASE}/v2/{PROJECT}/instances/{INSTANCE}/repositories",
        match=query(offset=2, limit=2),
        json={"total": 3, "repositories": [instance_repository("ops", "agent")]},
    )
    mocked.get(
        f"{BASE}/v2/{PROJECT}/instances/{second_id}/repositories",
        match=query(offset=0, limit=2),
        json={"total": 1, "repositories": [instance_repository("shop", "api")]},
    )

    found = list(make_client(page_size=2).list_repositories(["swr_enterprise"]))

    assert [(r.path, r.extra["instance_name"]) for r in found] == [
        ("shop/api", "ee-prod"),
        ("shop/app/web", "ee-prod"),
        ("ops/agent", "ee-prod"),
        ("shop/api", "ee-test"),
    ]
    web = found[1]
    assert web.type == "swr_enterprise"
    assert (web.namespace, web.name) == ("shop", "app/web")
    assert web.extra == {
        "instance_id": INSTANCE,
        "instance_name": "ee-prod",
        "namespace_name": "shop",
        "repository_name": "app/web",
        "registry_host": "ee-prod.swr.cn-north-4.myhuaweicloud.com",
    }
    assert not any("creating-1" in call.request.url for call in mocked.calls)


def test_enterprise_listing_can_be_switched_off(mocked, make_client):
    assert list(make_client(enterprise="false").list_repositories(["swr_enterprise"])) == []
    assert len(mocked.calls) == 0


def ee_repository(path: str = "shop/app/web") -> RepositoryInfo:
    namespace, _, name = path.partition("/")
    return RepositoryInfo.from_path(
        "swr_enterprise",
        path,
        instance_id=INSTANCE,
        instance_name="ee-prod",
        namespace_name=namespace,
        repository_name=name,
    )


ARTIFACTS_URL = (
    f"{BASE}/v2/{PROJECT}/instances/{INSTANCE}/namespaces/shop/repositories/app%2Fweb/artifacts"
)


def test_it_lists_one_image_per_artifact_tag_across_pages(mocked, make_client):
    index_type = "application/vnd.oci.image.index.v1+json"
    mocked.get(
        ARTIFACTS_URL,
        match=query(offset=0, limit=2),
        json={
            "artifacts": [
                fixture("artifact.json"),
                artifact("5", ["v2", "latest"], manifest_media_type=index_type),
            ],
            "total": 3,
        },
    )
    untagged = artifact("6", [])
    mocked.get(
        ARTIFACTS_URL,
        match=query(offset=2, limit=2),
        json={"artifacts": [untagged], "total": 3},
    )

    sizes = []
    with sizing_listings(lambda images: sizes.append((images, len(mocked.calls)))):
        images = make_client(page_size=2).list_images(ee_repository())

    assert sizes == [(3, 1)]  # the artifact total, before the second page
    assert [(i.tag, i.digest[-4:]) for i in images] == [
        ("v1", "4444"),
        ("v2", "5555"),
        ("latest", "5555"),
    ]
    v1 = images[0]
    assert v1.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert v1.size == 31457280
    assert v1.updated == datetime(2024, 5, 2, 9, 0, tzinfo=UTC)  # the tag's push time
    assert v1.multi_arch is False
    assert images[1].multi_arch is True


def test_an_enterprise_tag_without_push_time_uses_the_artifacts(mocked, make_client):
    item = fixture("artifact.json")
    item["tags"][0]["push_time"] = ""
    mocked.get(ARTIFACTS_URL, json={"artifacts": [item], "total": 1})
    images = make_client().list_images(ee_repository())
    assert images[0].updated == datetime(2024, 5, 2, 8, 0, tzinfo=UTC)


def test_an_enterprise_repository_known_only_by_path_is_found_by_listing(mocked, make_client):
    mocked.get(f"{BASE}/v2/{PROJECT}/instances", json={"instances": [instance()], "total": 1})
    mocked.get(
        f"{BASE}/v2/{PROJECT}/instances/{INSTANCE}/repositories",
        json={"total": 1, "repositories": [instance_repository("shop", "app/web")]},
    )
    mocked.get(ARTIFACTS_URL, json={"artifacts": [fixture("artifact.json")], "total": 1})
    images = make_client().list_images(RepositoryInfo.from_path("swr_enterprise", "shop/app/web"))
    assert [i.tag for i in images] == ["v1"]


def test_an_empty_enterprise_repository_has_no_images(mocked, make_client):
    mocked.get(ARTIFACTS_URL, json={"artifacts": [], "total": 0})
    assert make_client().list_images(ee_repository()) == []


# -- errors ---------------------------------------------------------------------------------------

ERROR_BODIES = {
    "swr": fixture("error_swr.json"),
    "apigw": fixture("error_apigw.json"),
}


@pytest.mark.parametrize("shape", ["swr", "apigw"])
@pytest.mark.parametrize(
    "status,code",
    [(401, "auth_failed"), (403, "permission_denied"), (404, "not_found"), (400, "bad_response")],
)
def test_http_errors_map_to_stable_codes_with_swrs_own_reason(
    mocked, make_client, status, code, shape
):
    mocked.get(f"{BASE}/v2/manage/namespaces", status=status, json=ERROR_BODIES[shape])
    result = make_client().check()
    assert (result.ok, result.code) == (False, code)
    vendor_code = "SVCSTG.SWR.4010000" if shape == "swr" else "APIGW.0301"
    assert vendor_code in result.message
    assert SK not in result.message
    assert "Authorization" not in result.message and "Signature" not in result.message


def test_an_authentication_failure_says_to_check_the_ak_and_sk(mocked, make_client):
    mocked.get(f"{BASE}/v2/manage/repos", status=401, json=fixture("error_apigw.json"))
    with pytest.raises(RegistryError) as caught:
        list(make_client().list_repositories(["swr_private"]))
    assert caught.value.code == "auth_failed"
    assert "access key (AK)" in caught.value.message
    assert "verify aksk signature fail" in caught.value.message


def test_a_missing_repository_is_not_found(mocked, make_client):
    body = [{"errorCode": "SVCSTG.SWR.4040010", "errorMessage": "Repo not found", "detail": ""}]
    mocked.get(f"{BASE}/v2/manage/namespaces/team-a/repos/gone/tags", status=404, json=body)
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(RepositoryInfo.from_path("swr_private", "team-a/gone"))
    assert caught.value.code == "not_found"
    assert "Repo not found" in caught.value.message


def test_no_error_message_ever_contains_the_secret_key(mocked, make_client):
    echo = [{"errorCode": "SVCSTG.SWR.4000014", "errorMessage": f"bad key {SK}", "detail": SK}]
    mocked.get(f"{BASE}/v2/manage/namespaces", status=400, json=echo)
    mocked.get(f"{BASE}/v2/manage/repos", status=403, json=echo)
    client = make_client()
    result = client.check()
    assert not result.ok and SK not in result.message
    with pytest.raises(RegistryError) as caught:
        list(client.list_repositories(["swr_private"]))
    assert SK not in caught.value.message and SK not in str(caught.value)
    assert SK not in repr(client.config) and SK not in repr(client.signer)


def test_it_waits_as_told_by_retry_after_when_rate_limited(mocked, make_client, sleeps):
    url = f"{BASE}/v2/manage/repos"
    mocked.get(url, status=429, headers={"Retry-After": "7"}, json=fixture("error_apigw.json"))
    mocked.get(url, **page(0, [repo()], 1))
    found = list(make_client().list_repositories(["swr_private"]))
    assert [r.path for r in found] == ["team-a/nginx"]
    assert sleeps == [7.0]


def test_it_gives_up_as_rate_limited_when_429s_do_not_stop(mocked, make_client, sleeps):
    mocked.get(f"{BASE}/v2/manage/repos", status=429, headers={"Retry-After": "1"})
    with pytest.raises(RegistryError) as caught:
        list(make_client(max_retries=2).list_repositories(["swr_private"]))
    assert caught.value.code == "rate_limited"
    assert caught.value.retryable
    assert sleeps == [1.0, 1.0]


@pytest.mark.parametrize(
    "body",
    [
        '[{"name": "nginx", "namespace": "team-a",',  # truncated
        "<html>gateway error</html>",  # not JSON at all
        '{"repos": []}',  # an object where v2 sends an array
        '["nginx"]',  # an array of the wrong things
    ],
)
def test_a_malformed_or_truncated_listing_is_a_bad_response(mocked, make_client, body):
    mocked.get(f"{BASE}/v2/manage/repos", body=body, content_type="application/json")
    with pytest.raises(RegistryError) as caught:
        list(make_client().list_repositories(["swr_private"]))
    assert caught.value.code == "bad_response"


def test_a_malformed_enterprise_page_is_a_bad_response(mocked, make_client):
    mocked.get(ARTIFACTS_URL, body='{"artifacts": [{"digest": "sha256:', status=200)
    with pytest.raises(RegistryError) as caught:
        make_client().list_images(ee_repository())
    assert caught.value.code == "bad_response"


def test_a_failure_on_a_later_page_yields_nothing_at_all(mocked, make_client):
    mocked.get(
        f"{BASE}/v2/manage/repos",
        match=query(limit=1, offset=0),
        **page(0, [repo(name="a", total=2)], 2),
    )
    mocked.get(f"{BASE}/v2/manage/repos", match=query(limit=1, offset=1), body="[{")
    yielded = []
    with pytest.raises(RegistryError):
        for repository in make_client(page_size=1).list_repositories(["swr_private"]):
            yielded.append(repository)
    assert yielded == []


def test_a_tag_list_that_shifted_between_pages_is_refused_rather_than_returned_short(
    mocked, make_client
):
    # "1.24" moved across the page boundary (a push meanwhile): it comes twice, "1.23" never.
    tags_url = f"{BASE}/v2/manage/namespaces/team-a/repos/nginx/tags"
    mocked.get(
        tags_url,
        match=query(limit=2, offset=0),
        **page(0, [tag("latest", "2"), tag("1.24", "5")], 3),
    )
    mocked.get(tags_url, match=query(limit=2, offset=2), **page(2, [tag("1.24", "5")], 3))
    with pytest.raises(RegistryError) as caught:
        make_client(page_size=2).list_images(
            RepositoryInfo.from_path("swr_private", "team-a/nginx")
        )
    assert caught.value.code == "bad_response"
    assert caught.value.retryable


def test_a_tag_moved_since_the_last_sync_is_listed_with_its_new_digest(mocked, make_client):
    tags_url = f"{BASE}/v2/manage/namespaces/team-a/repos/nginx/tags"
    mocked.get(tags_url, **page(0, [tag("latest", "7")], 1))
    repository = RepositoryInfo.from_path("swr_private", "team-a/nginx")
    previous = {"latest": "sha256:" + "2" * 64}  # what the inventory holds
    [image] = make_client().list_images(repository, {}, previous=previous)
    assert (image.tag, image.digest, len(mocked.calls)) == ("latest", "sha256:" + "7" * 64, 1)


@pytest.mark.parametrize("total", ["9" * 5000, "²"])
def test_a_total_that_is_not_a_count_counts_as_none(mocked, make_client, total):
    """SWR's total_range is a registry's answer: digits int() refuses are no count, and the
    listing ends with its page as when there is none (it used to fail as an internal error)."""
    tags_url = f"{BASE}/v2/manage/namespaces/team-a/repos/nginx/tags"
    mocked.get(tags_url, json=[{**tag("v1"), "total_range": total}])
    images = make_client().list_images(RepositoryInfo.from_path("swr_private", "team-a/nginx"))
    assert [i.tag for i in images] == ["v1"]
