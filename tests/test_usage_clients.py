"""Usage data from each registry client, against `responses` fixtures shaped like the
registries' answers: pull times and counts, the zero time "0001-01-01" that means never,
untagged artifacts, a refused statistics query, and -- for every kind -- that reading usage
never pulls a manifest by tag (a GET by tag is a pull to Harbor and would move the very time
read here)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import responses
from responses import matchers

from imagesync.registries import build_client
from imagesync.registries.base import ClientConfig, RepositoryInfo
from imagesync.registries.jfrog import aql_query
from tests.support import harbor_payloads as hp
from tests.support import jfrog_payloads as jp
from tests.support.swr_payloads import artifact, fixture

# --- the no-pull-by-tag check, shared by every kind ------------------------------------------


def manifest_requests_by_tag(calls) -> list[str]:
    """GETs of a manifest whose reference is not a digest: what a registry counts as a pull
    of that tag (HEAD is not a pull to Harbor, JFrog or Docker Hub)."""
    found = []
    for call in calls:
        url = call.request.url.split("?", 1)[0]
        if "/manifests/" in url and call.request.method == "GET":
            reference = url.rsplit("/manifests/", 1)[1]
            if not reference.startswith("sha256:"):
                found.append(url)
    return found


# --- Harbor ----------------------------------------------------------------------------------

HARBOR = "https://harbor.example.com"
HARBOR_API = f"{HARBOR}/api/v2.0"
PULLED = "2024-06-01T10:00:00.250Z"
TAG_PULLED = "2024-05-20T07:00:00.000Z"


def harbor_client():
    config = ClientConfig(url=HARBOR, username="robot$lib+sync", secret="x" * 12)
    client = build_client("harbor", config)
    client.transport._sleep = lambda seconds: None
    return client


def harbor_listing(artifacts: list[dict]) -> None:
    responses.get(
        f"{HARBOR_API}/projects/library/repositories/nginx/artifacts",
        json=artifacts,
        headers={"X-Total-Count": str(len(artifacts))},
        match=[matchers.query_param_matcher({"page": "1", "page_size": "100", "with_tag": "true"})],
    )


def harbor_repository_with_pulls(pulls: int) -> RepositoryInfo:
    """The repository as the client lists it, with Harbor's repository pull_count."""
    responses.get(
        f"{HARBOR_API}/projects/library/repositories",
        json=[dict(hp.repository(5, 1, "library/nginx"), pull_count=pulls)],
        headers={"X-Total-Count": "1"},
    )
    client = harbor_client()
    client.config.options["projects"] = ["library"]
    (info,) = list(client.list_repositories())
    return info


@responses.activate
def test_harbor_gives_last_pulled_per_tag_never_for_the_zero_time_and_untagged_artifacts():
    pulled_tag = hp.tag(7, 12, "1.25", "2024-05-01T08:15:30.123Z")
    pulled_tag["pull_time"] = TAG_PULLED
    index = hp.index_artifact(12, [pulled_tag, hp.tag(8, 12, "latest", "2024-05-02T08:00:00Z")])
    index["pull_time"] = PULLED  # a pull by digest moves the artifact's time only
    never = hp.single_artifact(20, [hp.tag(9, 20, "old", "2024-04-01T00:00:00Z")])
    lone = hp.single_artifact(30, [])  # no tags: still served by digest
    lone["pull_time"] = TAG_PULLED
    untagged_index = hp.index_artifact(40, [])
    attestation = hp.single_artifact(50, [], annotations={"vnd.docker.reference.type": "x"})
    child = hp.single_artifact(13, [])  # a platform manifest of index 12 (q=base=* shows it)
    harbor_listing([index, never, lone, untagged_index, attestation, child])
    info = harbor_repository_with_pulls(42)

    images = harbor_client().list_images(info)

    by_tag = {image.tag: image for image in images}
    assert by_tag["1.25"].last_pulled == datetime(2024, 6, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert by_tag["latest"].last_pulled == by_tag["1.25"].last_pulled
    old = by_tag["old"]
    assert old.pull_known and old.last_pulled is None  # 0001-01-01: never pulled
    assert {image.pull_source for image in images} == {"harbor"}
    assert {image.pull_count for image in images} == {42}  # the repository's pulls
    untagged = {image.digest: image for image in images.untagged}
    # The lone image and the untagged index (one row); not the index's child, not attestations.
    assert set(untagged) == {hp.digest(30), hp.digest(40)}
    assert all(not image.tagged and image.tag == "" for image in untagged.values())
    assert untagged[hp.digest(40)].multi_arch
    assert untagged[hp.digest(30)].last_pulled == datetime(2024, 5, 20, 7, 0, tzinfo=UTC)
    assert images.usage_missing is None
    assert manifest_requests_by_tag(responses.calls) == []
    assert all(call.request.url.startswith(HARBOR_API) for call in responses.calls)


@responses.activate
def test_an_old_harbor_without_pull_times_still_lists_and_says_the_pull_data_is_missing():
    artifact_ = hp.single_artifact(20, [hp.tag(9, 20, "1.0", "2024-04-01T00:00:00Z")])
    del artifact_["pull_time"]
    for item in artifact_["tags"]:
        del item["pull_time"]
    harbor_listing([artifact_])

    images = harbor_client().list_images(
        RepositoryInfo.from_path("harbor", "library/nginx", project="library")
    )

    assert [image.tag for image in images] == ["1.0"]
    assert not images[0].pull_known and images[0].last_pulled is None
    code, message = images.usage_missing
    assert code == "unsupported" and "pull times" in message


# --- JFrog -----------------------------------------------------------------------------------

ART = "https://art.example.com/artifactory"
AQL_URL = f"{ART}/api/search/aql"


def jfrog_client():
    config = ClientConfig(
        url=ART, username="sync", secret="t" * 20, options={"fetch_manifests": False}
    )
    client = build_client("jfrog", config)
    client.transport._sleep = lambda seconds: None
    return client


def with_stats(item: dict, downloaded: str, downloads: int) -> dict:
    """An AQL row with the stat domain included, as Artifactory returns it."""
    return dict(item, stats=[{"downloaded": downloaded, "downloads": downloads}])


@responses.activate
def test_jfrog_reads_last_download_and_count_of_every_tag_in_the_one_aql_call():
    rows = [
        with_stats(jp.manifest_item("docker-local", "team/api", f"1.{n}", n), "", 0)
        for n in range(50)
    ]
    rows[7] = with_stats(
        jp.manifest_item("docker-local", "team/api", "1.7", 7), "2024-06-02T09:30:00.000+02:00", 12
    )
    del rows[8]["stats"]  # never downloaded: Artifactory sends no stats at all
    responses.post(
        AQL_URL,
        json=jp.aql_answer(rows),
        match=[matchers.body_matcher(aql_query("docker-local"))],
    )
    client = jfrog_client()
    info = RepositoryInfo.from_path("jfrog", "docker-local/team/api", repo_key="docker-local")

    images = client.list_images(info)

    assert len(images) == 50
    by_tag = {image.tag: image for image in images}
    assert by_tag["1.7"].last_pulled == datetime(2024, 6, 2, 7, 30, tzinfo=UTC)
    assert by_tag["1.7"].pull_count == 12
    assert by_tag["1.8"].pull_known and by_tag["1.8"].last_pulled is None
    assert by_tag["1.8"].pull_count == 0
    assert {image.pull_source for image in images} == {"jfrog"}
    assert '"stat.downloaded","stat.downloads"' in responses.calls[0].request.body.decode()
    assert len(responses.calls) == 1 and client.aql_calls == 1  # batched: not one per tag
    assert manifest_requests_by_tag(responses.calls) == []


@responses.activate
def test_jfrog_refusing_the_statistics_lists_the_inventory_and_says_why():
    responses.post(
        AQL_URL,
        status=403,
        json={"errors": [{"status": 403, "message": "Forbidden: stat domain"}]},
        match=[matchers.body_matcher(aql_query("docker-local"))],
    )
    responses.post(
        AQL_URL,
        json=jp.aql_answer([jp.manifest_item("docker-local", "app", "1.0", 3)]),
        match=[matchers.body_matcher(aql_query("docker-local", stats=False))],
    )
    info = RepositoryInfo.from_path("jfrog", "docker-local/app", repo_key="docker-local")

    images = jfrog_client().list_images(info)

    assert [(image.tag, image.digest) for image in images] == [("1.0", jp.digest(3))]
    assert not images[0].pull_known and images[0].pull_source == ""
    code, message = images.usage_missing
    assert code == "permission_denied" and "download statistics" in message


def test_jfrog_manifests_are_only_ever_read_by_digest():
    """With fetch_manifests on (the default), new digests are read through the Docker API --
    by digest, never by tag."""
    with responses.RequestsMock() as mocked:
        mocked.post(
            AQL_URL,
            json=jp.aql_answer(
                [with_stats(jp.manifest_item("docker-local", "app", "1.0", 3), "", 0)]
            ),
        )
        mocked.get(
            f"{ART}/api/docker/docker-local/v2/app/manifests/{jp.digest(3)}",
            json=jp.image_manifest(3),
            headers={"Content-Type": jp.DOCKER_MANIFEST},
        )
        mocked.get(
            f"{ART}/api/docker/docker-local/v2/app/blobs/{jp.digest(500_003)}",
            json=jp.image_config(),
        )
        config = ClientConfig(url=ART, username="sync", secret="t" * 20)
        client = build_client("jfrog", config)
        info = RepositoryInfo.from_path("jfrog", "docker-local/app", repo_key="docker-local")
        images = client.list_images(info)
        assert images[0].size is not None
        assert manifest_requests_by_tag(mocked.calls) == []


# --- SWR -------------------------------------------------------------------------------------

SWR = "https://swr-api.cn-north-4.myhuaweicloud.com"
PROJECT = "0123456789abcdef0123456789abcdef"
INSTANCE = "5b8f1f62-0000-4a8e-9d3e-0123456789ab"
ARTIFACTS_URL = (
    f"{SWR}/v2/{PROJECT}/instances/{INSTANCE}/namespaces/shop/repositories/app%2Fweb/artifacts"
)


def swr_client(**options):
    options.setdefault("project_id", PROJECT)
    config = ClientConfig(
        url=SWR, username="HPUAEXAMPLEAK0000001", secret="k" * 40, options=options
    )
    client = build_client("swr", config)
    client.transport._sleep = lambda seconds: None
    return client


def ee_info(pulls: int | None) -> RepositoryInfo:
    return RepositoryInfo.from_path(
        "swr_enterprise",
        "shop/app/web",
        pull_count=pulls,
        instance_id=INSTANCE,
        instance_name="ee-prod",
        namespace_name="shop",
        repository_name="app/web",
    )


@responses.activate
def test_swr_enterprise_gives_pull_times_never_for_the_zero_time_and_untagged_artifacts():
    pulled = fixture("artifact.json")  # pull_time 2024-05-03T08:00:00Z on artifact and tag
    never = artifact("5", ["v0"], pull_time="0001-01-01T00:00:00Z")
    never["tags"][0]["pull_time"] = "0001-01-01T00:00:00Z"
    lone = artifact("6", [], pull_time="0001-01-01T00:00:00Z")
    signature = artifact("7", [], type="SIGNATURE")
    responses.get(ARTIFACTS_URL, json={"artifacts": [pulled, never, lone, signature], "total": 4})

    images = swr_client().list_images(ee_info(9))

    by_tag = {image.tag: image for image in images}
    assert by_tag["v1"].last_pulled == datetime(2024, 5, 3, 8, 0, tzinfo=UTC)
    assert by_tag["v0"].pull_known and by_tag["v0"].last_pulled is None
    assert {image.pull_source for image in images} == {"swr"}
    assert {image.pull_count for image in images} == {9}
    assert [image.digest for image in images.untagged] == ["sha256:" + "6" * 64]
    assert images.untagged[0].pull_known and not images.untagged[0].tagged
    assert manifest_requests_by_tag(responses.calls) == []


@responses.activate
def test_swr_enterprise_repositories_carry_their_pull_count():
    responses.get(
        f"{SWR}/v2/{PROJECT}/instances",
        json={"instances": [fixture("instance.json")], "total": 1},
    )
    responses.get(
        f"{SWR}/v2/{PROJECT}/instances/{INSTANCE}/repositories",
        json={"repositories": [fixture("instance_repository.json")], "total": 1},
    )
    (found,) = list(swr_client(enterprise=True).list_repositories(["swr_enterprise"]))
    assert found.pull_count == 9


@pytest.mark.parametrize(("downloads", "known"), [(5, False), (0, True)])
def test_swr_basic_shows_the_repositorys_downloads_on_each_row_and_no_time(downloads, known):
    with responses.RequestsMock() as mocked:
        repo = dict(fixture("repo.json"), num_download=downloads)
        mocked.get(f"{SWR}/v2/manage/repos", json=[repo], headers={"Content-Range": "0-1/1"})
        mocked.get(
            f"{SWR}/v2/manage/namespaces/team-a/repos/nginx/tags",
            json=[fixture("tag.json")],
            headers={"Content-Range": "0-1/1"},
        )
        client = swr_client(enterprise=False)
        (info,) = list(client.list_repositories(["swr_private"]))
        images = client.list_images(info)
        image = images[0]
        assert (image.pull_count, image.pull_source) == (downloads, "swr_repository")
        assert image.last_pulled is None
        # "Never pulled" only when the repository was never downloaded; otherwise unknown.
        assert image.pull_known is known
        assert manifest_requests_by_tag(mocked.calls) == []


def test_the_console_says_who_it_is_to_the_registry():
    """Its own requests are told from real pulls by this User-Agent (see test_usage_events)."""
    from imagesync.usage import is_console_agent

    client = harbor_client()
    agent = client.transport.session.headers["User-Agent"]
    assert is_console_agent(agent)
    assert not is_console_agent("docker/24.0.7 go/go1.20.10 git-commit/311b9ff os/linux")
    assert not is_console_agent(None)
