"""OciClient against a mocked OCI / Docker Registry v2 API (shapes from the OCI distribution spec).

The same client is exercised end to end against a real Distribution registry in
test_registry_oci_e2e.py; these tests cover what a local registry will not do on demand:
expiring tokens, rate limits, broken bodies, registries without digests on HEAD, ...
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
import responses
from responses import matchers

from imagesync.registries import oci as oci_module
from imagesync.registries.base import (
    ClientConfig,
    DigestDetails,
    RegistryError,
    RepositoryInfo,
)
from imagesync.registries.manifests import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from imagesync.registries.oci import (
    OciClient,
    parse_challenges,
    pick_challenge,
)

BASE = "https://reg.example.com"
SECRET = "PLANTED-SECRET-s3cr3t-9f8e7d"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client(**options) -> OciClient:
    options.setdefault("backoff_base", 0.01)
    config = ClientConfig(url=BASE, username="robot", secret=SECRET, options=options)
    oci = OciClient(config)
    oci.transport._sleep = lambda seconds: None
    return oci


def repo(path: str) -> RepositoryInfo:
    return RepositoryInfo.from_path("other", path)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def oci_error(code: str, message: str = "") -> dict:
    return {"errors": [{"code": code, "message": message or code.lower(), "detail": {}}]}


SIZES: dict[str, int] = {}  # digest -> config + layers, as pushed by image()


def image(
    rsps,
    path: str,
    tags: list[str],
    *,
    arch: str = "amd64",
    os: str = "linux",
    variant: str = "",
    media_type: str = DOCKER_MANIFEST,
    layer_sizes: tuple[int, ...] = (1000, 2000),
    created: str = "2024-04-30T10:00:00.123456789Z",
    label: str = "",
) -> str:
    """Register one single-platform image under `tags`: HEAD and GET per tag, manifest GET by
    digest and config GET."""
    config = {"architecture": arch, "os": os, "created": created, "label": label or path}
    if variant:
        config["variant"] = variant
    config_body = json.dumps(config).encode()
    config_type = (
        "application/vnd.oci.image.config.v1+json"
        if media_type == OCI_MANIFEST
        else "application/vnd.docker.container.image.v1+json"
    )
    layers = [
        {"mediaType": "layer", "digest": "sha256:" + f"{i:x}" * 64, "size": size}
        for i, size in enumerate(layer_sizes, start=1)
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": sha(config_body), "size": len(config_body)},
        "layers": layers,
    }
    body = json.dumps(manifest).encode()
    digest = sha(body)
    SIZES[digest] = len(config_body) + sum(layer_sizes)
    for tag in tags:
        rsps.add(
            responses.HEAD,
            f"{BASE}/v2/{path}/manifests/{tag}",
            headers={"Docker-Content-Digest": digest, "Content-Type": media_type},
        )
    for reference in [digest, *tags]:  # by digest, and by tag for a tag new to the inventory
        rsps.add(
            responses.GET,
            f"{BASE}/v2/{path}/manifests/{reference}",
            body=body,
            content_type=media_type,
            headers={"Docker-Content-Digest": digest},
        )
    rsps.add(responses.GET, f"{BASE}/v2/{path}/blobs/{sha(config_body)}", body=config_body)
    return digest


def tag_list(rsps, path: str, tags, **kwargs) -> None:
    rsps.add(
        responses.GET, f"{BASE}/v2/{path}/tags/list", json={"name": path, "tags": tags}, **kwargs
    )


def calls(rsps, method: str, fragment: str) -> list:
    return [c for c in rsps.calls if c.request.method == method and fragment in c.request.url]


# --- catalog ------------------------------------------------------------------------------


def test_it_lists_every_repository_across_catalog_pages_following_relative_links(rsps):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        json={"repositories": ["alpha", "team/api"]},
        headers={"Link": '</v2/_catalog?last=team%2Fapi&n=2>; rel="next"'},
        match=[matchers.query_param_matcher({"n": "2"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        json={"repositories": ["team/web", "a/b/c"]},
        headers={"Link": '</v2/_catalog?last=a%2Fb%2Fc&n=2>; rel="next"'},
        match=[matchers.query_param_matcher({"last": "team/api", "n": "2"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        json={"repositories": ["zeta"]},
        match=[matchers.query_param_matcher({"last": "a/b/c", "n": "2"})],
    )

    repos = list(client(catalog_page_size=2).list_repositories())

    assert [r.path for r in repos] == ["alpha", "team/api", "team/web", "a/b/c", "zeta"]
    nested = repos[3]
    assert (nested.type, nested.namespace, nested.name) == ("other", "a", "b/c")
    assert repos[0].namespace == "" and repos[0].name == "alpha"


def test_it_retries_the_catalog_with_smaller_pages_when_the_registry_refuses_the_page_size(rsps):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        status=400,
        json=oci_error("PAGINATION_NUMBER_INVALID", "invalid number of results requested"),
        match=[matchers.query_param_matcher({"n": "1000"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        json={"repositories": ["alpha"]},
        match=[matchers.query_param_matcher({"n": "100"})],
    )

    assert [r.path for r in client().list_repositories()] == ["alpha"]


@pytest.mark.parametrize(
    ("second_page", "code"),
    [
        ({"status": 500, "body": "oops"}, "unreachable"),
        ({"body": '{"repositories": ["b", "c"'}, "bad_response"),  # truncated
        ({"body": "<html>proxy error</html>"}, "bad_response"),  # malformed
        ({"json": {"repositories": "b"}}, "bad_response"),  # wrong shape
    ],
)
def test_it_raises_instead_of_returning_part_of_the_catalog_when_a_later_page_breaks(
    rsps, second_page, code
):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        json={"repositories": ["a"]},
        headers={"Link": '</v2/_catalog?last=a&n=1>; rel="next"'},
        match=[matchers.query_param_matcher({"n": "1"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        match=[matchers.query_param_matcher({"last": "a", "n": "1"})],
        **second_page,
    )

    with pytest.raises(RegistryError) as caught:
        list(client(catalog_page_size=1, max_retries=1).list_repositories())

    assert caught.value.code == code


def test_it_uses_the_repositories_option_when_the_registry_has_no_catalog(rsps):
    oci = client(repositories=["library/nginx", "bitnami/redis", "library/nginx"])

    repos = list(oci.list_repositories())

    assert [r.path for r in repos] == ["library/nginx", "bitnami/redis"]
    assert not calls(rsps, "GET", "_catalog")


def test_it_lists_nothing_when_asked_only_for_types_it_does_not_serve(rsps):
    assert list(client().list_repositories(types=["harbor", "swr_private"])) == []
    assert not rsps.calls


# --- images -------------------------------------------------------------------------------


def test_it_lists_tags_across_pages_with_digests_sizes_platforms_and_created_times(rsps):
    path = "team/api"
    rsps.add(
        responses.GET,
        f"{BASE}/v2/{path}/tags/list",
        json={"name": path, "tags": ["1.0", "1.1"]},
        headers={"Link": f'</v2/{path}/tags/list?last=1.1&n=2>; rel="next"'},
        match=[matchers.query_param_matcher({"n": "2"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/v2/{path}/tags/list",
        json={"name": path, "tags": ["latest"]},
        match=[matchers.query_param_matcher({"last": "1.1", "n": "2"})],
    )
    docker = image(rsps, path, ["1.0"], layer_sizes=(100, 200))
    oci = image(rsps, path, ["1.1", "latest"], arch="arm64", variant="v8", media_type=OCI_MANIFEST)

    images = client(tags_page_size=2).list_images(repo(path))

    by_tag = {i.tag: i for i in images}
    assert sorted(by_tag) == ["1.0", "1.1", "latest"]
    assert by_tag["1.0"].digest == docker
    assert by_tag["1.0"].media_type == DOCKER_MANIFEST
    assert by_tag["1.0"].platforms == ("linux/amd64",)
    assert by_tag["1.0"].size == SIZES[docker] > 300
    assert by_tag["1.1"].digest == by_tag["latest"].digest == oci
    assert by_tag["1.1"].media_type == OCI_MANIFEST
    assert by_tag["1.1"].platforms == ("linux/arm64/v8",)
    assert by_tag["1.1"].multi_arch is False
    assert by_tag["1.1"].created == datetime(2024, 4, 30, 10, 0, 0, 123456, tzinfo=UTC)
    assert by_tag["1.1"].updated is None
    # one manifest GET per distinct digest, one HEAD per tag
    assert len(calls(rsps, "HEAD", "/manifests/")) == 3
    assert len(calls(rsps, "GET", "/manifests/")) == 2


def test_it_never_fetches_a_layer_blob(rsps):
    tag_list(rsps, "app", ["1"])
    image(rsps, "app", ["1"], layer_sizes=(5, 6, 7))

    client().list_images(repo("app"))

    blob_urls = [c.request.url for c in calls(rsps, "GET", "/blobs/")]
    assert len(blob_urls) == 1  # the config
    assert not any(("sha256:" + f"{i:x}" * 64) in url for url in blob_urls for i in (1, 2, 3))


def index_body(entries: list[dict], media_type: str = OCI_INDEX) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()


def entry(arch: str, size: int, variant: str = "", os: str = "linux", **extra) -> dict:
    platform = {"architecture": arch, "os": os}
    if variant:
        platform["variant"] = variant
    return {
        "mediaType": OCI_MANIFEST,
        "digest": sha(f"{os}{arch}{variant}{size}".encode()),
        "size": size,
        "platform": platform,
        **extra,
    }


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_a_multi_arch_index_lists_its_real_platforms_and_skips_attestations(rsps, media_type):
    body = index_body(
        [
            entry("amd64", 500),
            entry("arm64", 700, variant="v8"),
            entry(
                "unknown",
                900,
                os="unknown",
                annotations={"vnd.docker.reference.type": "attestation-manifest"},
            ),
        ],
        media_type,
    )
    digest = sha(body)
    tag_list(rsps, "multi", ["latest"])
    rsps.add(
        responses.HEAD,
        f"{BASE}/v2/multi/manifests/latest",
        headers={"Docker-Content-Digest": digest, "Content-Type": media_type},
    )
    rsps.add(
        responses.GET, f"{BASE}/v2/multi/manifests/{digest}", body=body, content_type=media_type
    )

    [latest] = client().list_images(repo("multi"))

    assert latest.platforms == ("linux/amd64", "linux/arm64/v8")
    assert latest.multi_arch is True
    assert latest.size is None  # an index has no size: its entries' sizes are manifest bytes
    assert latest.media_type == media_type
    assert not calls(rsps, "GET", "/blobs/")  # platforms come from the index itself


def test_an_index_with_one_real_platform_and_its_attestation_is_not_multi_arch(rsps):
    body = index_body(
        [
            entry("amd64", 500),
            entry("unknown", 900, os="unknown"),
        ]
    )
    tag_list(rsps, "single", ["1"])
    rsps.add(
        responses.HEAD,
        f"{BASE}/v2/single/manifests/1",
        headers={"Docker-Content-Digest": sha(body), "Content-Type": OCI_INDEX},
    )
    rsps.add(responses.GET, f"{BASE}/v2/single/manifests/{sha(body)}", body=body)

    [only] = client().list_images(repo("single"))

    assert only.platforms == ("linux/amd64",)
    assert only.multi_arch is False


@pytest.mark.parametrize("tags", [None, []])
def test_an_empty_repository_has_no_images(rsps, tags):
    tag_list(rsps, "empty", tags)

    assert client().list_images(repo("empty")) == []


def test_digests_already_known_are_resolved_by_head_only(rsps):
    tag_list(rsps, "app", ["1", "2"])
    known_digest = image(rsps, "app", ["1"], label="old")
    new_digest = image(rsps, "app", ["2"], label="new")
    known = {
        known_digest: DigestDetails(DOCKER_MANIFEST, 42, ("linux/s390x",), False, None),
    }

    images = {i.tag: i for i in client().list_images(repo("app"), known)}

    assert images["1"].size == 42 and images["1"].platforms == ("linux/s390x",)
    assert images["2"].platforms == ("linux/amd64",)
    fetched = [c.request.url for c in calls(rsps, "GET", "/manifests/")]
    assert fetched == [f"{BASE}/v2/app/manifests/{new_digest}"]


def requests_made(rsps) -> list[tuple[str, str]]:
    """(method, what) of every request after the tag listing: "manifest" or "blob"."""
    made = []
    for call in rsps.calls:
        url = call.request.url
        if "/manifests/" in url:
            made.append((call.request.method, "manifest"))
        elif "/blobs/" in url:
            made.append((call.request.method, "blob"))
    return sorted(made)


def test_a_first_listing_costs_one_manifest_get_and_one_config_get_per_new_image(rsps):
    tag_list(rsps, "app", ["1", "2", "3", "multi"])
    for tag in ("1", "2", "3"):
        image(rsps, "app", [tag], label=f"image {tag}")
    body = index_body([entry("amd64", 10), entry("arm64", 20)])
    rsps.add(
        responses.GET,
        f"{BASE}/v2/app/manifests/multi",
        body=body,
        content_type=OCI_INDEX,
        headers={"Docker-Content-Digest": sha(body)},
    )

    images = {i.tag: i for i in client().list_images(repo("app"), {}, previous={})}

    assert (
        images["2"].platforms == ("linux/amd64",) and images["2"].size == SIZES[images["2"].digest]
    )
    assert images["multi"].multi_arch is True and images["multi"].digest == sha(body)
    assert requests_made(rsps) == [("GET", "blob")] * 3 + [("GET", "manifest")] * 4  # no HEAD


def test_a_relisting_costs_one_head_per_unchanged_tag_and_nothing_else(rsps):
    tag_list(rsps, "app", ["1", "2"])
    digests = {tag: image(rsps, "app", [tag], label=f"image {tag}") for tag in ("1", "2")}
    oci = client()
    first = oci.list_images(repo("app"), {}, previous={})
    known = {i.digest: i.details() for i in first}
    rsps.calls.reset()

    again = client().list_images(repo("app"), known, previous=digests)

    assert {i.tag: i.details() for i in again} == {i.tag: i.details() for i in first}
    assert requests_made(rsps) == [("HEAD", "manifest")] * 2


def test_a_repushed_tag_is_noticed_by_its_head_and_fetched_by_digest(rsps):
    tag_list(rsps, "app", ["1"])
    new = image(rsps, "app", ["1"], label="re-pushed")

    [one] = client().list_images(repo("app"), {}, previous={"1": sha(b"the old manifest")})

    assert one.digest == new and one.platforms == ("linux/amd64",)
    assert requests_made(rsps) == [("GET", "blob"), ("GET", "manifest"), ("HEAD", "manifest")]
    assert calls(rsps, "GET", "/manifests/")[0].request.url.endswith(new)


def test_new_tags_sharing_an_image_and_images_sharing_a_config_fetch_the_config_once(rsps):
    tag_list(rsps, "app", ["a", "b", "c"])
    image(rsps, "app", ["a", "b"], label="same")  # two tags, one digest
    image(rsps, "app", ["c"], label="same", media_type=OCI_MANIFEST)  # same config, new manifest

    images = {i.tag: i for i in client().list_images(repo("app"), {}, previous={})}

    assert images["a"].digest == images["b"].digest != images["c"].digest
    assert len(calls(rsps, "GET", "/blobs/")) == 1
    assert len(calls(rsps, "GET", "/manifests/")) == 3  # one per new tag


def test_a_new_tag_deleted_while_listing_is_left_out(rsps):
    tag_list(rsps, "app", ["1", "gone"])
    image(rsps, "app", ["1"])
    rsps.add(
        responses.GET,
        f"{BASE}/v2/app/manifests/gone",
        status=404,
        json=oci_error("MANIFEST_UNKNOWN", "manifest unknown"),
    )

    assert [i.tag for i in client().list_images(repo("app"), {}, previous={})] == ["1"]


@pytest.mark.parametrize("option", [False, "false"])
def test_resolving_new_tags_with_get_can_be_turned_off_for_rate_limited_registries(rsps, option):
    tag_list(rsps, "app", ["1", "2"])
    digest = image(rsps, "app", ["1", "2"])

    oci = client(resolve_new_tags_with_get=option)
    images = oci.list_images(repo("app"), {}, previous={})

    assert [i.digest for i in images] == [digest, digest]
    assert requests_made(rsps) == [
        ("GET", "blob"),
        ("GET", "manifest"),
        *[("HEAD", "manifest")] * 2,
    ]
    assert calls(rsps, "GET", "/manifests/")[0].request.url.endswith(digest)


def test_a_digest_seen_in_one_repository_is_not_fetched_again_for_another(rsps):
    tag_list(rsps, "one", ["1"])
    tag_list(rsps, "two", ["1"])
    shared = image(rsps, "one", ["1"], label="base")
    image(rsps, "two", ["1"], label="base")  # same content, same digest
    oci = client()

    first = oci.list_images(repo("one"))
    second = oci.list_images(repo("two"))

    assert first[0].digest == second[0].digest == shared
    assert second[0].platforms == ("linux/amd64",)
    assert len(calls(rsps, "GET", "/manifests/")) == 1
    assert len(calls(rsps, "GET", "/blobs/")) == 1


def test_it_hashes_the_manifest_itself_when_head_gives_no_digest(rsps):
    body = index_body([entry("amd64", 10), entry("arm64", 20)])
    tag_list(rsps, "old", ["1"])
    rsps.add(responses.HEAD, f"{BASE}/v2/old/manifests/1", headers={"Content-Type": OCI_INDEX})
    rsps.add(responses.GET, f"{BASE}/v2/old/manifests/1", body=body, content_type=OCI_INDEX)

    [one] = client().list_images(repo("old"))

    assert one.digest == sha(body)
    assert one.multi_arch is True
    assert len(calls(rsps, "GET", "/manifests/")) == 1  # the body was parsed, not fetched twice


def test_a_manifest_that_does_not_match_its_digest_is_a_bad_response(rsps):
    tag_list(rsps, "app", ["1"])
    digest = "sha256:" + "e" * 64
    rsps.add(
        responses.HEAD,
        f"{BASE}/v2/app/manifests/1",
        headers={"Docker-Content-Digest": digest, "Content-Type": OCI_INDEX},
    )
    rsps.add(responses.GET, f"{BASE}/v2/app/manifests/{digest}", body=index_body([]))

    with pytest.raises(RegistryError) as caught:
        client().list_images(repo("app"))

    assert caught.value.code == "bad_response"


def test_a_tag_deleted_while_listing_is_left_out(rsps):
    tag_list(rsps, "app", ["1", "gone"])
    image(rsps, "app", ["1"])
    rsps.add(responses.HEAD, f"{BASE}/v2/app/manifests/gone", status=404)
    rsps.add(
        responses.GET,
        f"{BASE}/v2/app/manifests/gone",
        status=404,
        json=oci_error("MANIFEST_UNKNOWN", "manifest unknown"),
    )

    assert [i.tag for i in client().list_images(repo("app"))] == ["1"]


def test_a_repository_deleted_while_listing_fails_the_listing(rsps):
    tag_list(rsps, "app", ["1"])
    rsps.add(responses.HEAD, f"{BASE}/v2/app/manifests/1", status=404)
    rsps.add(
        responses.GET,
        f"{BASE}/v2/app/manifests/1",
        status=404,
        json=oci_error("NAME_UNKNOWN", "repository name not known to registry"),
    )

    with pytest.raises(RegistryError) as caught:
        client().list_images(repo("app"))

    assert caught.value.code == "not_found"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "UNAUTHORIZED", "auth_failed"),
        (403, "DENIED", "permission_denied"),
        (404, "NAME_UNKNOWN", "not_found"),
        (400, "DENIED", "permission_denied"),  # the body's code wins over an odd status
        (403, "TOOMANYREQUESTS", "rate_limited"),
        (400, "NAME_INVALID", "bad_response"),
    ],
)
def test_registry_error_codes_map_to_stable_reasons(rsps, status, code, expected):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/nope/tags/list",
        status=status,
        json=oci_error(code, "repository name not known to registry"),
    )

    with pytest.raises(RegistryError) as caught:
        client(max_retries=0).list_images(repo("nope"))

    assert caught.value.code == expected
    assert code in caught.value.message
    assert SECRET not in caught.value.message


def test_it_waits_as_long_as_retry_after_says_and_then_continues(rsps):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/app/tags/list",
        status=429,
        body="You have reached your pull rate limit.",
        headers={"Retry-After": "7"},
    )
    tag_list(rsps, "app", [])
    oci = client()
    slept = []
    oci.transport._sleep = slept.append

    assert oci.list_images(repo("app")) == []
    assert slept == [7.0]


@pytest.mark.parametrize(
    "body", [b'{"schemaVersion":2,"config":{"digest":', b"not json", b'["a list"]']
)
def test_a_malformed_or_truncated_manifest_is_a_bad_response(rsps, body):
    digest = sha(body)
    tag_list(rsps, "app", ["1"])
    rsps.add(
        responses.HEAD,
        f"{BASE}/v2/app/manifests/1",
        headers={"Docker-Content-Digest": digest, "Content-Type": DOCKER_MANIFEST},
    )
    rsps.add(responses.GET, f"{BASE}/v2/app/manifests/{digest}", body=body)

    with pytest.raises(RegistryError) as caught:
        client().list_images(repo("app"))

    assert caught.value.code == "bad_response"


# --- auth ---------------------------------------------------------------------------------

CHALLENGE = 'Bearer realm="https://auth.example.com/token",service="reg.example.com"'


def test_challenges_with_quoted_commas_and_several_scopes_are_parsed():
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push repository:other:pull", error="invalid_token"'
    )

    [challenge] = parse_challenges(header)

    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scope == "repository:samalba/my-app:pull,push repository:other:pull"
    assert pick_challenge('Basic realm="Registry Realm"').scheme == "basic"
    assert pick_challenge('Basic realm="x", Bearer realm="https://a/t",service=s').realm == (
        "https://a/t"
    )
    assert pick_challenge("") is None


class TokenServer:
    """A token endpoint and a registry that accepts only the tokens still valid."""

    def __init__(self, rsps):
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.token_requests: list = []
        rsps.add_callback(responses.GET, "https://auth.example.com/token", callback=self.token)

    def token(self, request):
        self.token_requests.append(request)
        expected = "Basic " + base64.b64encode(f"robot:{SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return 401, {}, "{}"
        token = f"t{len(self.issued) + 1}"
        self.issued.append(token)
        self.valid.add(token)
        return 200, {}, json.dumps({"token": token, "expires_in": 300})

    def guard(self, body: dict, headers: dict | None = None):
        def callback(request):
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.valid:
                return 401, {"WWW-Authenticate": CHALLENGE}, json.dumps(oci_error("UNAUTHORIZED"))
            return 200, dict(headers or {}), json.dumps(body)

        return callback


def test_a_bearer_token_that_expires_mid_listing_is_renewed_and_the_listing_continues(rsps):
    server = TokenServer(rsps)
    rsps.add_callback(
        responses.GET,
        f"{BASE}/v2/_catalog",
        callback=server.guard(
            {"repositories": ["a"]}, {"Link": '</v2/_catalog?last=a&n=1>; rel="next"'}
        ),
        match=[matchers.query_param_matcher({"n": "1"})],
    )
    second = server.guard({"repositories": ["b"]})

    def expire_then_serve(request):
        server.valid.discard("t1")  # the token expired between the two pages
        return second(request)

    rsps.add_callback(
        responses.GET,
        f"{BASE}/v2/_catalog",
        callback=expire_then_serve,
        match=[matchers.query_param_matcher({"last": "a", "n": "1"})],
    )

    repos = list(client(catalog_page_size=1).list_repositories())

    assert [r.path for r in repos] == ["a", "b"]
    assert server.issued == ["t1", "t2"]
    first_token = server.token_requests[0]
    assert "service=reg.example.com" in first_token.url
    assert "scope=registry%3Acatalog%3A%2A" in first_token.url


def test_tokens_are_cached_per_scope(rsps):
    server = TokenServer(rsps)
    for path in ("one", "two"):
        rsps.add_callback(
            responses.GET,
            f"{BASE}/v2/{path}/tags/list",
            callback=server.guard({"name": path, "tags": []}),
        )
    oci = client()

    oci.list_images(repo("one"))
    oci.list_images(repo("one"))
    oci.list_images(repo("two"))

    scopes = [r.url.split("scope=")[1] for r in server.token_requests]
    assert scopes == ["repository%3Aone%3Apull", "repository%3Atwo%3Apull"]


def test_wrong_credentials_at_the_token_service_are_an_auth_failure_without_the_secret(rsps):
    rsps.add(responses.GET, "https://auth.example.com/token", status=401, json={})
    rsps.add(
        responses.GET,
        f"{BASE}/v2/",
        status=401,
        headers={"WWW-Authenticate": CHALLENGE},
        json=oci_error("UNAUTHORIZED"),
    )

    result = client().check()

    assert (result.ok, result.code) == (False, "auth_failed")
    assert SECRET not in result.message


def test_basic_auth_is_used_when_the_registry_asks_for_it(rsps):
    expected = "Basic " + base64.b64encode(f"robot:{SECRET}".encode()).decode()

    def v2(request):
        if request.headers.get("Authorization") == expected:
            return 200, {}, "{}"
        return 401, {"WWW-Authenticate": 'Basic realm="Registry Realm"'}, "{}"

    rsps.add_callback(responses.GET, f"{BASE}/v2/", callback=v2)
    rsps.add_callback(
        responses.GET,
        f"{BASE}/v2/app/tags/list",
        callback=lambda request: (
            (200, {}, '{"name":"app","tags":[]}')
            if request.headers.get("Authorization") == expected
            else (401, {}, "{}")
        ),
    )
    oci = client()

    assert oci.check().ok
    assert oci.list_images(repo("app")) == []  # Basic sent up front once the scheme is known


def test_rejected_basic_credentials_fail_the_check_without_the_secret(rsps):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/",
        status=401,
        headers={"WWW-Authenticate": 'Basic realm="Registry Realm"'},
        json=oci_error("UNAUTHORIZED", "authentication required"),
    )

    result = client().check()

    assert (result.ok, result.code) == (False, "auth_failed")
    assert SECRET not in result.message
    assert len(rsps.calls) == 2  # anonymous, then Basic once; no loop


def test_the_check_says_when_the_endpoint_is_not_a_v2_registry(rsps):
    rsps.add(responses.GET, f"{BASE}/v2/", status=404, body="<html>not here</html>")

    result = client().check()

    assert (result.ok, result.code) == (False, "unsupported")


def test_the_check_passes_against_an_open_registry(rsps):
    rsps.add(responses.GET, f"{BASE}/v2/", json={})

    assert client().check().ok


def test_a_token_service_on_plain_http_is_refused_for_an_https_registry(rsps):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/",
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token",service=x'},
    )

    result = client().check()

    assert (result.ok, result.code) == (False, "unsupported")
    assert not calls(rsps, "GET", "auth.example.com")


def test_a_config_that_is_not_a_small_json_document_is_never_downloaded(rsps):
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/octet-stream",
            "digest": "sha256:" + "c" * 64,
            "size": 10,
        },
        "layers": [{"mediaType": "layer", "digest": "sha256:" + "d" * 64, "size": 5}],
    }
    huge = dict(
        manifest,
        config=dict(
            manifest["config"],
            mediaType="application/json",
            digest="sha256:" + "f" * 64,
            size=50_000_000,
        ),
    )
    tag_list(rsps, "art", ["blob", "huge"])
    for tag, document in (("blob", manifest), ("huge", huge)):
        body = json.dumps(document).encode()
        rsps.add(
            responses.HEAD,
            f"{BASE}/v2/art/manifests/{tag}",
            headers={"Docker-Content-Digest": sha(body), "Content-Type": OCI_MANIFEST},
        )
        rsps.add(responses.GET, f"{BASE}/v2/art/manifests/{sha(body)}", body=body)

    images = {i.tag: i for i in client().list_images(repo("art"))}

    assert images["blob"].size == 15 and images["blob"].platforms == ()
    assert images["huge"].size == 50_000_005
    assert not calls(rsps, "GET", "/blobs/")


def test_one_tag_that_cannot_be_resolved_fails_the_whole_listing(rsps):
    tag_list(rsps, "app", ["1", "2"])
    image(rsps, "app", ["1"])
    rsps.add(responses.HEAD, f"{BASE}/v2/app/manifests/2", status=503)

    with pytest.raises(RegistryError) as caught:
        client(max_retries=0).list_images(repo("app"))

    assert caught.value.code == "unreachable"


def test_a_catalog_that_links_back_to_itself_is_a_bad_response(rsps):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        json={"repositories": ["a"]},
        headers={"Link": '</v2/_catalog?last=a&n=1>; rel="next"'},
    )

    with pytest.raises(RegistryError) as caught:
        list(client(catalog_page_size=1).list_repositories())

    assert caught.value.code == "bad_response"


def test_a_token_service_answer_without_a_token_is_a_bad_response(rsps):
    rsps.add(responses.GET, f"{BASE}/v2/", status=401, headers={"WWW-Authenticate": CHALLENGE})
    rsps.add(responses.GET, "https://auth.example.com/token", json={"expires_in": 300})

    result = client().check()

    assert (result.ok, result.code) == (False, "bad_response")


def test_a_token_without_the_needed_scope_is_a_permission_problem_not_a_password_one(rsps):
    server = TokenServer(rsps)
    rsps.add_callback(
        responses.GET,
        f"{BASE}/v2/_catalog",
        callback=lambda request: (
            401,
            {
                "WWW-Authenticate": CHALLENGE
                + ',scope="registry:catalog:*",error="insufficient_scope"'
            },
            json.dumps(oci_error("UNAUTHORIZED", "authentication required")),
        ),
    )

    with pytest.raises(RegistryError) as caught:
        list(client().list_repositories())

    assert caught.value.code == "permission_denied"
    assert server.issued == ["t1"]  # one fresh token was tried, then no loop


def test_a_next_page_link_to_another_host_is_not_followed_with_our_credentials(rsps):
    rsps.add(
        responses.GET,
        f"{BASE}/v2/_catalog",
        json={"repositories": ["a"]},
        headers={"Link": '<https://collector.example.net/v2/_catalog?last=a>; rel="next"'},
    )

    with pytest.raises(RegistryError) as caught:
        list(client().list_repositories())

    assert caught.value.code == "bad_response"
    assert not calls(rsps, "GET", "collector.example.net")


def test_a_pathologically_nested_manifest_is_a_bad_response(rsps):
    body = b"[" * 100_000 + b"]" * 100_000
    tag_list(rsps, "app", ["1"])
    rsps.add(
        responses.HEAD,
        f"{BASE}/v2/app/manifests/1",
        headers={"Docker-Content-Digest": sha(body), "Content-Type": DOCKER_MANIFEST},
    )
    rsps.add(responses.GET, f"{BASE}/v2/app/manifests/{sha(body)}", body=body)

    with pytest.raises(RegistryError) as caught:
        client().list_images(repo("app"))

    assert caught.value.code == "bad_response"


def test_a_repository_with_more_tags_than_are_queued_at_once_lists_every_tag_in_order(
    rsps, monkeypatch
):
    monkeypatch.setattr(oci_module, "TAGS_IN_FLIGHT", 2)
    tags = [f"v{number}" for number in range(7)]
    tag_list(rsps, "app", tags)
    digests = {tag: image(rsps, "app", [tag], label=f"image {tag}") for tag in tags}

    images = client().list_images(repo("app"), {}, previous={})

    assert [(i.tag, i.digest) for i in images] == list(digests.items())
    assert requests_made(rsps) == [("GET", "blob")] * 7 + [("GET", "manifest")] * 7


def test_a_client_keeps_only_the_latest_details_yet_lists_every_image_right(rsps, monkeypatch):
    monkeypatch.setattr(oci_module, "CACHE_SIZE", 1)
    for path in ("one", "two", "three"):
        tag_list(rsps, path, ["1"])
    base = image(rsps, "one", ["1"], label="base")
    image(rsps, "two", ["1"], label="other")
    image(rsps, "three", ["1"], label="base")  # the first one's image, forgotten meanwhile
    oci = client()

    one, two, three = (oci.list_images(repo(path)) for path in ("one", "two", "three"))

    assert one[0].digest == three[0].digest == base != two[0].digest
    assert one[0].details() == three[0].details() and three[0].platforms == ("linux/amd64",)
    assert len(calls(rsps, "GET", "/manifests/")) == 3  # fetched again: the cache held one
