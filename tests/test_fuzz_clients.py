"""Whatever a registry sends, a client returns a result or raises RegistryError -- nothing else.

The sync engine relies on this: a RegistryError fails one repository with a reason code and
keeps its images; any other exception is an "internal error" that tells the user nothing.
Each test serves a valid conversation (shaped like each registry's API answers) through
`responses` and lets hypothesis corrupt one endpoint's answer: an arbitrary JSON document, the
valid document with one value replaced by arbitrary JSON, arbitrary bytes, odd paging headers
or an odd status. Every public client call (check, list_repositories, list_images) must then
either succeed or raise RegistryError; check() must never raise at all.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.registries import build_client
from imagesync.registries.base import ClientConfig, RegistryError, RepositoryInfo
from imagesync.registries.manifests import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_INDEX
from tests.support.harbor_payloads import index_artifact, project, repository, single_artifact
from tests.support.harbor_payloads import tag as harbor_tag
from tests.support.jfrog_payloads import (
    aql_answer,
    docker_repo,
    image_config,
    image_manifest,
    list_item,
    manifest_item,
)
from tests.support.swr_payloads import artifact, fixture, instance_repository, repo
from tests.support.swr_payloads import tag as swr_tag

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECRET = "PLANTED-SECRET-s3cr3t-9f8e7d"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


@dataclass
class Route:
    """One endpoint of a valid conversation."""

    name: str
    method: str
    pattern: str  # searched in the full URL
    body: Any = None  # JSON document (None: empty body)
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


@dataclass
class Corruption:
    route: str
    kind: str  # "json", "mutate", "bytes", "headers", "status"
    value: Any = None
    path: list = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


def _replace_at(document: Any, path: list, value: Any) -> Any:
    """The document with the value at `path` (indices chosen modulo the sizes) replaced."""
    if not path or not isinstance(document, dict | list) or not document:
        return value
    document = copy.deepcopy(document)
    node = document
    for step in path[:-1]:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        child = node[keys[step % len(keys)]]
        if not isinstance(child, dict | list) or not child:
            break
        node = child
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    node[keys[path[-1] % len(keys)]] = value
    return document


class Router:
    """A `responses` callback serving the routes, with one route's answer corrupted."""

    def __init__(self, routes: list[Route], corruption: Corruption):
        self.routes = routes
        self.corruption = corruption

    def __call__(self, request) -> tuple[int, dict[str, str], bytes]:
        for route in self.routes:
            if route.method == request.method and re.search(route.pattern, request.url):
                return self.answer(route)
        return 404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NOT_FOUND"}]}'

    def answer(self, route: Route) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json", **route.headers}
        body = b"" if route.body is None else json.dumps(route.body).encode()
        status = route.status
        c = self.corruption
        if c.route == route.name:
            if c.kind == "json":
                body = json.dumps(c.value).encode()
            elif c.kind == "mutate":
                body = json.dumps(_replace_at(route.body, c.path, c.value)).encode()
            elif c.kind == "bytes":
                body = c.value
            elif c.kind == "headers":
                headers.update(c.headers)
            elif c.kind == "status":
                status = c.status
        return status, headers, body


def corruptions(route_names: list[str]) -> st.SearchStrategy[Corruption]:
    header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    route = st.sampled_from(route_names)
    return st.one_of(
        st.builds(Corruption, route=route, kind=st.just("json"), value=json_values),
        st.builds(
            Corruption,
            route=route,
            kind=st.just("mutate"),
            value=json_values,
            path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6),
        ),
        st.builds(Corruption, route=route, kind=st.just("bytes"), value=st.binary(max_size=200)),
        st.builds(
            Corruption,
            route=route,
            kind=st.just("headers"),
            headers=st.dictionaries(
                st.sampled_from(
                    [
                        "Link",
                        "X-Total-Count",
                        "Content-Range",
                        "Docker-Content-Digest",
                        "Content-Type",
                        "Retry-After",
                        "WWW-Authenticate",
                    ]
                ),
                header_text,
                min_size=1,
                max_size=3,
            ),
        ),
        st.builds(
            Corruption,
            route=route,
            kind=st.just("status"),
            status=st.sampled_from([201, 204, 206, 400, 401, 403, 404, 405, 409, 429, 500, 503]),
        ),
    )


def exercise(kind: str, config: ClientConfig, routes: list[Route], corruption, calls) -> None:
    """Run every call against the corrupted conversation: a result or RegistryError."""
    router = Router(routes, corruption)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "HEAD", "POST"):
            mock.add_callback(method, re.compile(r".*"), callback=router)
        client = build_client(kind, config)
        client.transport._sleep = lambda seconds: None
        try:
            result = client.check()
            assert result.ok in (True, False)
            assert SECRET not in result.message
            for call in calls:
                try:
                    call(client)
                except RegistryError as exc:
                    assert exc.code
                    assert SECRET not in str(exc)
        finally:
            client.close()


FAST = {"max_retries": 1, "backoff_base": 0, "retry_budget": 1}


# --- OCI / Docker v2 --------------------------------------------------------------------------

OCI = "https://registry.example.com"


def oci_routes() -> list[Route]:
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": 100, "digest": digest(900)},
        "layers": [{"mediaType": "x", "size": 10, "digest": digest(901)}],
    }
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"digest": digest(2), "size": 5, "platform": {"os": "linux", "architecture": "amd64"}},
            {
                "digest": digest(3),
                "size": 5,
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
        ],
    }
    config = {"architecture": "amd64", "os": "linux", "created": "2024-05-01T08:00:00Z"}
    return [
        Route("version", "GET", rf"^{OCI}/v2/$", {}),
        # the catalog's second page: a valid body without a next link
        Route("catalog-2", "GET", r"/v2/_catalog\?last=", {"repositories": []}),
        Route(
            "catalog",
            "GET",
            r"/v2/_catalog",
            {"repositories": ["team/api", "team/web"]},
            {"Link": '</v2/_catalog?last=team%2Fweb&n=2>; rel="next"'},
        ),
        Route("tags", "GET", r"/v2/team/api/tags/list", {"name": "team/api", "tags": ["1", "m"]}),
        Route("head-1", "HEAD", r"/manifests/1$", None, {"Content-Type": DOCKER_MANIFEST}),
        Route("manifest-1", "GET", r"/manifests/1$", manifest, {"Content-Type": DOCKER_MANIFEST}),
        Route("head-m", "HEAD", r"/manifests/m$", None, {"Content-Type": OCI_INDEX}),
        Route("manifest-m", "GET", r"/manifests/m$", index, {"Content-Type": OCI_INDEX}),
        Route("config", "GET", r"/blobs/sha256:", config),
    ]


def list_repositories(client) -> list:
    return list(client.list_repositories())


def images_of(type: str, path: str, previous: dict | None = None, **extra) -> Callable:
    def call(client) -> list:
        return client.list_images(RepositoryInfo.from_path(type, path, **extra), previous=previous)

    return call


@FUZZ
@given(
    challenge=st.text(max_size=120),
    token_body=json_values | st.binary(max_size=60),
)
def test_the_oci_client_survives_any_auth_challenge_and_token_answer(challenge, token_body):
    routes = [
        Route(
            "token",
            "GET",
            r"^https://auth\.example\.com/",
            token_body if not isinstance(token_body, bytes) else None,
        ),
        Route(
            "version", "GET", rf"^{OCI}/v2/", {"errors": []}, {"WWW-Authenticate": challenge}, 401
        ),
    ]
    corruption = Corruption(
        "token", "bytes" if isinstance(token_body, bytes) else "none", value=token_body
    )
    config = ClientConfig(url=OCI, username="u", secret=SECRET, options=dict(FAST))
    exercise("other", config, routes, corruption, SCENARIOS["other"].calls)


# --- Harbor -----------------------------------------------------------------------------------

HARBOR = "https://harbor.example.com"


def harbor_routes() -> list[Route]:
    pushed = "2024-05-01T08:15:30.123Z"
    return [
        Route(
            "projects",
            "GET",
            r"/api/v2.0/projects(\?|$)",
            [project(1, "library")],
            {"X-Total-Count": "1"},
        ),
        Route(
            "artifacts",
            "GET",
            r"/repositories/nginx/artifacts",
            [
                index_artifact(12, [harbor_tag(7, 12, "1.25", pushed)]),
                single_artifact(20, [harbor_tag(9, 20, "arm-only", pushed)]),
            ],
            {"X-Total-Count": "2"},
        ),
        Route(
            "repositories",
            "GET",
            r"/projects/library/repositories(\?|$)",
            [repository(5, 1, "library/nginx", 2)],
            {"X-Total-Count": "1"},
        ),
    ]


# --- JFrog ------------------------------------------------------------------------------------

ART = "https://art.example.com/artifactory"


def jfrog_routes() -> list[Route]:
    manifest = image_manifest(1, layer_sizes=(3000,))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"digest": digest(3), "size": 5, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": digest(4), "size": 5, "platform": {"os": "linux", "architecture": "arm"}},
        ],
    }
    items = [
        manifest_item("docker-local", "team/api", "1.0", 1),
        list_item("docker-local", "team/api", "multi", 2),
    ]
    return [
        Route("repositories", "GET", r"/api/repositories", [docker_repo("docker-local")]),
        Route("aql", "POST", r"/api/search/aql", aql_answer(items)),
        Route(
            "manifest-1",
            "GET",
            rf"/manifests/{digest(1)}",
            manifest,
            {"Content-Type": DOCKER_MANIFEST},
        ),
        Route("manifest-2", "GET", rf"/manifests/{digest(2)}", index, {"Content-Type": OCI_INDEX}),
        Route("config", "GET", r"/blobs/", image_config()),
    ]


# --- SWR --------------------------------------------------------------------------------------

SWR = "https://swr-api.cn-north-4.myhuaweicloud.com"
PROJECT = "0123456789abcdef0123456789abcdef"
INSTANCE = "5b8f1f62-0000-4a8e-9d3e-0123456789ab"


def swr_routes() -> list[Route]:
    return [
        Route(
            "repos",
            "GET",
            r"/v2/manage/repos\?",
            [repo("team-a", "nginx", total=1)],
            {"Content-Range": "0-1/1"},
        ),
        Route(
            "shared",
            "GET",
            r"/v2/manage/shared-repositories",
            [repo("partner", "base", total=1, domain_name="partner-co", status=True)],
            {"Content-Range": "0-1/1"},
        ),
        Route(
            "tags",
            "GET",
            r"/v2/manage/namespaces/team-a/repos/nginx/tags",
            [swr_tag("latest", "2"), swr_tag("1.24", "5", size=100)],
            {"Content-Range": "0-2/2"},
        ),
        Route(
            "artifacts",
            "GET",
            r"/artifacts",
            {"artifacts": [fixture("artifact.json"), artifact("5", ["v2"])], "total": 2},
        ),
        Route(
            "instance-repositories",
            "GET",
            rf"/instances/{INSTANCE}/repositories",
            {"total": 1, "repositories": [instance_repository("shop", "api")]},
        ),
        Route(
            "instances",
            "GET",
            rf"/v2/{PROJECT}/instances(\?|$)",
            {"instances": [fixture("instance.json")], "total": 1},
        ),
    ]


# --- every kind -------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One valid conversation with a client, what to ask it, and what each call then lists."""

    username: str
    url: str
    routes: Callable[[], list[Route]]
    calls: list[Callable]
    listed: list[int]  # items per call without corruption: the fuzzing starts from valid data
    options: dict[str, Any] = field(default_factory=dict)

    def config(self) -> ClientConfig:
        options = {**FAST, **self.options}
        return ClientConfig(url=self.url, username=self.username, secret=SECRET, options=options)


SCENARIOS = {
    "other": Scenario(
        "u",
        OCI,
        oci_routes,
        [list_repositories, images_of("other", "team/api"), images_of("other", "team/api", {})],
        [2, 2, 2],
    ),
    "harbor": Scenario(
        "robot$x",
        HARBOR,
        harbor_routes,
        [list_repositories, images_of("harbor", "library/nginx", {}, project="library")],
        [1, 2],
    ),
    "jfrog": Scenario(
        "sync-bot",
        ART,
        jfrog_routes,
        [
            list_repositories,
            images_of(
                "jfrog", "docker-local/team/api", {}, repo_key="docker-local", image="team/api"
            ),
        ],
        [1, 2],
    ),
    "swr": Scenario(
        "HPUAEXAMPLEAK0000001",
        SWR,
        swr_routes,
        [
            list_repositories,
            images_of("swr_private", "team-a/nginx", {}),
            images_of(
                "swr_enterprise",
                "shop/api",
                {},
                instance_id=INSTANCE,
                instance_name="ee-prod",
                namespace_name="shop",
                repository_name="api",
            ),
        ],
        [3, 2, 2],
        {"project_id": PROJECT},
    ),
}


@pytest.mark.parametrize("kind", SCENARIOS)
@FUZZ
@given(data=st.data())
def test_every_client_survives_any_answer(kind, data):
    scenario = SCENARIOS[kind]
    routes = scenario.routes()
    corruption = data.draw(corruptions([r.name for r in routes]), label="corruption")
    exercise(kind, scenario.config(), routes, corruption, scenario.calls)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_the_valid_conversations_really_list_images(kind):
    """Without corruption every call lists something: the fuzzing starts from valid data."""
    scenario = SCENARIOS[kind]
    listed: list[int] = []
    calls = [lambda client, call=call: listed.append(len(call(client))) for call in scenario.calls]
    exercise(kind, scenario.config(), scenario.routes(), Corruption("-", "none"), calls)
    assert listed == scenario.listed


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
