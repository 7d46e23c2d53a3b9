"""OciClient end to end against a real Distribution registry (Debian docker-registry 2.8).

What the console shows for an "other" registry must be exactly what was pushed — tags, digests,
platforms, multi-arch flags, media types, sizes — and getting it must never download a layer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imagesync.registries.base import ClientConfig
from imagesync.registries.manifests import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from imagesync.registries.oci import (
    OciClient,
)
from tests.support.registry_seed import (
    PushedImage,
    copy_image,
    delete_manifest,
    delete_tag,
    push_image,
    push_image_details,
    push_index_details,
    seed,
    tag_manifest,
)

pytestmark = pytest.mark.registry

CREATED = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def expected_row(pushed: PushedImage) -> tuple:
    created = CREATED if pushed.created else None
    return (
        pushed.digest,
        pushed.media_type,
        None if pushed.children else pushed.size,  # an index has no size (manifests.py)
        pushed.platforms,
        pushed.multi_arch,
        created,
    )


def listed_rows(client: OciClient, path: str) -> dict[str, tuple]:
    [repository] = [r for r in client.list_repositories() if r.path == path] or [None]
    assert repository is not None, f"{path} is missing from the catalog"
    return {
        image.tag: (
            image.digest,
            image.media_type,
            image.size,
            image.platforms,
            image.multi_arch,
            image.created,
        )
        for image in client.list_images(repository)
    }


def test_the_listing_is_exactly_what_was_pushed_and_no_layer_is_downloaded(fresh_registry):
    reg = fresh_registry
    pushed: dict[str, dict[str, PushedImage]] = {}

    def keep(image: PushedImage, tag: str | None = None) -> None:
        pushed.setdefault(image.path, {})[tag or image.tag] = image

    keep(push_image_details(reg, "shop/docker-app", "1.0", layer_sizes=(3000, 700)))
    arm = push_image_details(reg, "shop/docker-app", "1.1", arch="arm64", variant="v8")
    keep(arm)
    tag_manifest(reg, "shop/docker-app", "1.1", "latest")
    keep(arm, "latest")
    keep(push_image_details(reg, "shop/oci-app", "2024.05", oci=True, layer_sizes=(2048, 512)))
    keep(push_image_details(reg, "shop/oci-app", "no-date", oci=True, created=None))
    keep(
        push_index_details(
            reg, "shop/multi", "latest", ["linux/amd64", "linux/arm64/v8"], with_attestation=True
        )
    )
    keep(push_index_details(reg, "shop/multi", "list", ["linux/amd64", "linux/arm/v7"], oci=False))
    keep(push_index_details(reg, "shop/multi", "one-arch", ["linux/s390x"], with_attestation=True))
    keep(push_image_details(reg, "a/b/c", "deep", os="windows", arch="amd64"))
    for number in range(12):  # more repositories than one catalog page of 5
        keep(push_image_details(reg, f"filler/repo-{number:02d}", "v1"))
    mark = reg.log_mark()

    with OciClient(reg.client_config(catalog_page_size=5)) as client:
        assert client.check().ok
        repositories = list(client.list_repositories())
        listing = {r.path: listed_rows(client, r.path) for r in repositories}

    assert sorted(listing) == sorted(pushed)
    for path, tags in pushed.items():
        assert listing[path] == {tag: expected_row(image) for tag, image in tags.items()}, path
    multi = listing["shop/multi"]
    assert multi["latest"][1:] == (
        OCI_INDEX,
        None,
        ("linux/amd64", "linux/arm64/v8"),
        True,
        None,
    )
    assert multi["list"][1] == DOCKER_LIST
    assert multi["one-arch"][3:5] == (("linux/s390x",), False)
    assert listing["shop/docker-app"]["1.1"][1:4] == (
        DOCKER_MANIFEST,
        arm.size,
        ("linux/arm64/v8",),
    )
    assert listing["shop/oci-app"]["2024.05"][1] == OCI_MANIFEST
    assert listing["a/b/c"]["deep"][3] == ("windows/amd64",)

    served = reg.served(since=mark)
    assert len([r for r in served if r.path == "/v2/_catalog"]) >= 4  # 19 repositories, pages of 5
    layers = set().union(*(i.all_layer_digests for tags in pushed.values() for i in tags.values()))
    assert layers and reg.blob_requests(layers, since=mark) == []
    # tags sharing a digest ("1.1" and "latest") cost one manifest fetch
    arm_fetches = [r for r in served if r.method == "GET" and r.path.endswith(arm.digest)]
    assert len(arm_fetches) == 1


def test_known_digests_cost_one_head_per_tag_and_nothing_else(
    distribution_registry, registry_namespace
):
    reg = distribution_registry
    path = f"{registry_namespace}/app"
    for tag in ("1", "2", "3"):
        push_image(reg, path, tag, oci=tag == "2")
    config = reg.client_config(repositories=[path])
    with OciClient(config) as first:
        [repository] = list(first.list_repositories())
        known = {image.digest: image.details() for image in first.list_images(repository)}
    mark = reg.log_mark()

    with OciClient(config) as second:
        again = second.list_images(repository, known)

    assert {image.digest for image in again} == set(known)
    authenticated = [r for r in reg.served(since=mark) if r.status != 401]
    assert sorted(r.method for r in authenticated if "/manifests/" in r.path) == ["HEAD"] * 3
    assert not [r for r in authenticated if "/blobs/" in r.path]


def test_a_first_listing_gets_each_new_tag_in_one_request_and_lists_the_same(
    distribution_registry, registry_namespace
):
    reg = distribution_registry
    path = f"{registry_namespace}/fresh"
    pushed = {
        "docker": push_image_details(reg, path, "docker"),
        "oci": push_image_details(reg, path, "oci", oci=True, arch="arm64", variant="v8"),
        "multi": push_index_details(
            reg, path, "multi", ["linux/amd64", "linux/arm64/v8"], with_attestation=True
        ),
    }
    tag_manifest(reg, path, "oci", "latest")
    pushed["latest"] = pushed["oci"]
    config = reg.client_config(repositories=[path])
    with OciClient(config) as client:
        [repository] = list(client.list_repositories())
        head_first = {i.tag: i for i in client.list_images(repository)}
    mark = reg.log_mark()

    with OciClient(config) as client:
        by_get = {i.tag: i for i in client.list_images(repository, {}, previous={})}

    assert by_get == head_first
    listed = {
        tag: (i.digest, i.media_type, i.size, i.platforms, i.multi_arch)
        for tag, i in by_get.items()
    }
    assert listed == {tag: expected_row(image)[:5] for tag, image in pushed.items()}
    served = [r for r in reg.served(since=mark) if r.status != 401]
    manifests = [r.method for r in served if "/manifests/" in r.path]
    assert manifests == ["GET"] * 4  # one per tag, no HEAD
    blobs = [r.path for r in served if "/blobs/" in r.path]
    assert sorted(blobs) == sorted(
        {f"/v2/{path}/blobs/{pushed[t].config_digest}" for t in ("docker", "oci")}
    )  # one config per distinct image ("oci" and "latest" share one), none for the index


def test_an_image_in_many_repositories_is_fetched_once_per_client(
    distribution_registry, registry_namespace
):
    reg = distribution_registry
    source = push_image_details(reg, f"{registry_namespace}/base", "1.0")
    for number in range(3):
        copy_image(reg, source.path, "1.0", f"{registry_namespace}/copy-{number}", "stable")
    paths = [source.path] + [f"{registry_namespace}/copy-{n}" for n in range(3)]
    mark = reg.log_mark()

    with OciClient(reg.client_config(repositories=paths)) as client:
        listings = [client.list_images(r) for r in client.list_repositories()]

    assert {images[0].digest for images in listings} == {source.digest}
    assert all(images[0].platforms == ("linux/amd64",) for images in listings)
    served = reg.served(since=mark)
    assert len([r for r in served if r.method == "GET" and source.digest in r.path]) == 1
    assert len([r for r in served if source.config_digest in r.path]) == 1


def test_a_page_size_the_registry_refuses_falls_back_to_smaller_pages(
    distribution_registry, registry_namespace
):
    reg = distribution_registry
    push_image(reg, f"{registry_namespace}/paged", "1")

    with OciClient(reg.client_config(catalog_page_size=5000)) as client:
        paths = [r.path for r in client.list_repositories()]

    assert f"{registry_namespace}/paged" in paths
    assert len(paths) == len(set(paths))


def test_deleted_tags_and_manifests_disappear_from_the_listing(
    distribution_registry, registry_namespace
):
    reg = distribution_registry
    path = f"{registry_namespace}/shrinking"
    keep = push_image(reg, path, "keep")
    tag_manifest(reg, path, "keep", "alias")
    doomed = push_image(reg, path, "doomed")
    config = reg.client_config(repositories=[path])

    delete_manifest(reg, path, doomed)
    delete_tag(reg, path, "alias")

    with OciClient(config) as client:
        [repository] = list(client.list_repositories())
        images = client.list_images(repository)
    assert [(i.tag, i.digest) for i in images] == [("keep", keep)]


def test_the_check_reports_wrong_credentials_without_echoing_them(distribution_registry):
    reg = distribution_registry
    config = ClientConfig(
        url=reg.url, username=reg.username, secret="wrong-Pa55-xyz", allow_insecure_http=True
    )

    with OciClient(config) as client:
        result = client.check()

    assert (result.ok, result.code) == (False, "auth_failed")
    assert "wrong-Pa55-xyz" not in result.message


@pytest.mark.parametrize(
    "how", [{"via": "api"}, {"via": "api", "shared_config": True}, {"via": "storage"}]
)
def test_bulk_seeded_repositories_list_exactly_as_seeded(
    distribution_registry, registry_namespace, how
):
    reg = distribution_registry
    seeded = seed(reg, repos=3, tags=4, prefix=registry_namespace, **how)
    mark = reg.log_mark()

    config = reg.client_config(repositories=list(seeded.images))
    with OciClient(config) as client:
        listed = {
            r.path: {i.tag: i for i in client.list_images(r)} for r in client.list_repositories()
        }

    assert {p: {t: i.digest for t, i in tags.items()} for p, tags in listed.items()} == (
        seeded.images
    )
    assert len({i.digest for tags in listed.values() for i in tags.values()}) == 12
    assert all(
        i.platforms == ("linux/amd64",) and i.created == CREATED
        for tags in listed.values()
        for i in tags.values()
    )
    assert reg.blob_requests(seeded.layer_digests, since=mark) == []
