"""KnownDigests, what a sync run knows about each digest of a registry: kept compact (a run
holds every digest of a registry), and read back exactly as it was learned, since a re-sync
stores those details instead of fetching them again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from imagesync.models import Image, Registry, Repository
from imagesync.registries.base import DigestDetails, ImageInfo
from imagesync.sync.known import KnownDigests
from tests.support.fakes import T0, digest, image

OCI = "application/vnd.oci.image.manifest.v1+json"
SHA512 = "sha512:" + "ab" * 64

DETAILS = {
    digest("plain"): DigestDetails(OCI, 1234, ("linux/amd64",), False, T0),
    digest("index"): DigestDetails(OCI, 99, ("linux/amd64", "linux/arm64/v8"), True, T0),
    digest("no size, no time"): DigestDetails("", None, (), False, None),
    digest("huge"): DigestDetails(OCI, 2**62, ("linux/amd64",), False, T0),
    digest("beyond 64 bits"): DigestDetails(OCI, 2**70, ("linux/amd64",), False, T0),
    digest("microseconds"): DigestDetails(OCI, 0, (), False, T0 + timedelta(microseconds=7)),
    digest("before 1970"): DigestDetails(
        OCI, 1, (), False, datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC)
    ),
    digest("naive time"): DigestDetails(OCI, 1, (), False, datetime(2026, 1, 2, 3, 4, 5)),
    SHA512: DigestDetails(OCI, 5, ("windows/amd64",), False, T0),
    # Not canonical: kept as a digest of its own, never taken for the lower-case one.
    digest("plain").upper().replace("SHA256", "sha256"): DigestDetails(OCI, 1, (), False, None),
}


def known_of(details: dict[str, DigestDetails], how: str = "stored") -> KnownDigests:
    """What a run knows of these digests: from the inventory (`stored`) or `learned` from a
    listing."""
    known = KnownDigests()
    if how == "learned":
        known.learn(ImageInfo.of("tag", key, value) for key, value in details.items())
        return known
    for key, value in details.items():
        known.add(
            key, value.media_type, value.size, value.platforms, value.multi_arch, value.created
        )
    return known


@pytest.mark.parametrize("how", ["stored", "learned"])
def test_every_digest_reads_back_with_the_details_it_was_learned_with(how):
    known = known_of(DETAILS, how)

    assert {key: known[key] for key in DETAILS} == DETAILS
    assert len(known) == len(DETAILS) and set(known) == set(DETAILS)
    assert known.get(digest("never seen")) is None and digest("never seen") not in known
    assert known.get("not a digest", "default") == "default"


def test_a_created_time_in_another_zone_reads_back_as_the_same_instant():
    tokyo = datetime(2026, 5, 1, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=9)))
    known = known_of({digest("tokyo"): DigestDetails(OCI, 1, (), False, tokyo)})

    created = known[digest("tokyo")].created
    assert created == tokyo and created.utcoffset() == timedelta(0)


def test_learning_a_listing_keeps_the_first_details_of_a_digest():
    known = KnownDigests()
    first = image("1", content="same", size=10)
    again = image("2", content="same", size=99)  # a digest never changes: ignored

    known.learn([first, again, ImageInfo(tag="untagged", digest="")])

    assert len(known) == 1 and known[first.digest] == first.details()


@pytest.mark.django_db
def test_a_run_keeps_only_its_latest_learned_digests_but_every_stored_one():
    known = KnownDigests(learned_limit=2)
    stored = image("stored", size=1)
    known.add(stored.digest, OCI, 1, (), False, None)
    first, second, third = (image(tag) for tag in ("1", "2", "3"))

    known.learn([first, second])
    known.learn([third])

    assert first.digest not in known and known.get(first.digest) is None
    assert known[second.digest] == second.details() and known[third.digest] == third.details()
    assert known[stored.digest].size == 1 and len(known) == 3


@pytest.mark.django_db
def test_a_registry_s_stored_images_are_known_with_their_stored_details(project):
    registry = Registry.objects.create(
        project=project, kind="other", name="r", endpoint="https://r"
    )
    other = Registry.objects.create(project=project, kind="other", name="o", endpoint="https://o")
    for reg, path, info in (
        (registry, "app", image("1", platforms=("linux/arm64",), size=None)),
        (registry, "web", image("2", created=None)),
        (other, "app", image("3")),
    ):
        repo, _ = Repository.objects.get_or_create(registry=reg, type="other", path=path)
        Image.from_listing(repo, info, is_latest=True, now=T0).save()

    known = KnownDigests.for_registry(registry.pk)

    assert set(known) == {image("1").digest, image("2").digest}
    for key in known:
        row = Image.objects.get(digest=key)
        assert known[key] == DigestDetails(
            row.media_type, row.size, tuple(row.platforms), row.multi_arch, row.image_created_at
        )
