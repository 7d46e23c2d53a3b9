"""manifests.py: the one reading of manifests, indexes and configs that every registry client
shares, so the same image shows the same platforms, multi-arch flag, size and created time
whichever registry it was listed from."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imagesync.registries import manifests
from imagesync.registries.base import RegistryError
from imagesync.registries.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    OCI_INDEX,
    OCI_MANIFEST,
)

CONFIG = "sha256:" + "c" * 64
ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}


def entry(os: str, arch: str, variant: str = "", size: int = 500, **more) -> dict:
    platform = {"os": os, "architecture": arch, **({"variant": variant} if variant else {})}
    return {"mediaType": OCI_MANIFEST, "digest": CONFIG, "size": size, "platform": platform, **more}


def image(media_type: str | None, config_size: int = 1000, layers=(3000, 40000)) -> dict:
    document = {
        "schemaVersion": 2,
        "config": {"mediaType": manifests.DOCKER_CONFIG, "size": config_size, "digest": CONFIG},
        "layers": [{"size": size, "digest": CONFIG} for size in layers],
    }
    return document | ({"mediaType": media_type} if media_type else {})


def config_reader(platform: str = "linux/amd64", created: datetime | None = None):
    asked: list[str] = []

    def read(digest: str):
        asked.append(digest)
        return (platform,), created

    return read, asked


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_an_index_of_either_kind_lists_its_platforms_with_variants_and_skips_attestations(
    media_type,
):
    index = {
        "mediaType": media_type,
        "manifests": [
            entry("linux", "amd64"),
            entry("linux", "arm64", "v8"),
            entry("linux", "arm", "v7"),
            entry("unknown", "unknown", annotations=ATTESTATION),
        ],
    }
    details = manifests.details(index, "", "test", None)
    assert details.platforms == ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")
    assert (details.media_type, details.multi_arch, details.created) == (media_type, True, None)


def test_an_index_has_no_size_whatever_its_entries_declare():
    index = {"mediaType": OCI_INDEX, "manifests": [entry("linux", "amd64", size=7000)] * 2}
    assert manifests.details(index, "", "test", None).size is None
    assert manifests.index_details(DOCKER_LIST, ("linux/amd64", "linux/arm64")).size is None


def test_an_attestation_is_recognised_by_its_annotation_or_its_unknown_platform():
    assert manifests.is_attestation(entry("linux", "amd64", annotations=ATTESTATION))
    assert manifests.is_attestation(entry("unknown", "unknown"))
    assert not manifests.is_attestation(entry("linux", "amd64"))


def test_one_platform_and_its_attestation_is_not_multi_arch():
    index = {
        "manifests": [entry("linux", "amd64"), entry("linux", "s390x", annotations=ATTESTATION)]
    }
    details = manifests.details(index, "", "test", None)
    assert (details.platforms, details.multi_arch) == (("linux/amd64",), False)
    assert details.media_type == OCI_INDEX  # an index without mediaType is an OCI index


@pytest.mark.parametrize(
    ("declared", "sent", "expected"),
    [
        (OCI_MANIFEST, "", OCI_MANIFEST),
        (DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_MANIFEST),  # the document's own type wins
        (None, f"{OCI_MANIFEST}; charset=utf-8", OCI_MANIFEST),
        (None, "", DOCKER_MANIFEST),
    ],
)
def test_a_single_image_is_sized_from_config_and_layers_with_platform_and_time_from_its_config(
    declared, sent, expected
):
    created = datetime(2024, 5, 1, 8, tzinfo=UTC)
    read, asked = config_reader("linux/arm64/v8", created)
    details = manifests.details(image(declared), sent, "test", read)
    assert (details.media_type, details.size) == (expected, 1000 + 3000 + 40000)
    assert (details.platforms, details.multi_arch, details.created) == (
        ("linux/arm64/v8",),
        False,
        created,
    )
    assert asked == [CONFIG]


def test_an_image_with_a_layer_of_unknown_size_has_no_size():
    assert manifests.details(image(OCI_MANIFEST, layers=(10, "big")), "", "t", None).size is None


def test_a_config_too_big_to_be_one_is_never_downloaded():
    read, asked = config_reader()
    details = manifests.details(image(OCI_MANIFEST, config_size=50_000_000), "", "t", read)
    assert (asked, details.platforms) == ([], ())


def test_a_legacy_schema1_manifest_names_its_linux_architecture():
    details = manifests.details({"schemaVersion": 1, "architecture": "amd64"}, "", "t", None)
    assert (details.media_type, details.platforms) == (DOCKER_SCHEMA1, ("linux/amd64",))


@pytest.mark.parametrize("document", [[], {"manifests": "x"}, {"manifests": [1]}, {"x": 1}])
def test_a_document_that_is_no_manifest_is_a_bad_response(document):
    with pytest.raises(RegistryError) as caught:
        manifests.details(document, "", "manifest x", None)
    assert caught.value.code == "bad_response" and "manifest x" in caught.value.message


@pytest.mark.parametrize(
    ("config", "platforms", "created"),
    [
        (
            {
                "os": "linux",
                "architecture": "arm",
                "variant": "v6",
                "created": "2024-01-02T03:04:05Z",
            },
            ("linux/arm/v6",),
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        ({"os": "windows", "architecture": "amd64"}, ("windows/amd64",), None),
        ({"created": "not a time"}, (), None),
        ("not a config", (), None),
    ],
)
def test_a_config_blob_gives_its_platform_and_created_time(config, platforms, created):
    assert manifests.config_facts(config) == (platforms, created)


def test_media_types_are_compared_without_parameters_or_case():
    assert manifests.is_index("Application/VND.OCI.image.index.v1+json; charset=utf-8")
    assert not manifests.is_index(OCI_MANIFEST)
    assert manifests.MANIFEST_ACCEPT.split(", ") == [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_LIST,
        DOCKER_MANIFEST,
    ]
