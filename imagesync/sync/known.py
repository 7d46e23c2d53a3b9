"""What a run already knows about each digest of a registry."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from imagesync.models import Image
from imagesync.registries.base import DigestDetails, ImageInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# size, created (microseconds since the epoch), the index of (media type, platforms,
# multi-arch) in `_kinds`, and which of size and created are None (bits 1 and 2).
_PACKED = struct.Struct("<qqIB")
_NO_SIZE, _NO_CREATED = 1, 2
_SHA256 = "sha256:"


class KnownDigests(Mapping):
    """digest -> DigestDetails for one registry, from the images already stored and those
    learned during this run. A digest is immutable, so what was learned about it (platforms,
    size, created time) never needs fetching again.

    A registry's every digest is held for the whole run, so each costs as little as it can
    (bench/bench_memory.py: ~170 bytes instead of ~340 as a string and a tuple): a sha256
    digest is kept as its 32 bytes, and its details as one packed bytes value, where the
    created time is an exact count of microseconds and the media type, platforms and
    multi-arch flag (few distinct combinations in a registry) are the index of their one
    shared copy. What does not fit that form (another algorithm, a naive time, a size beyond
    64 bits) is kept as given. Details read back equal those given: a created time comes back
    as the same instant, in UTC."""

    def __init__(self) -> None:
        self._packed: dict[bytes, bytes] = {}
        self._other: dict[str, tuple] = {}
        self._kinds: list[tuple[str, tuple[str, ...], bool]] = []
        self._kind_index: dict[tuple[str, tuple[str, ...], bool], int] = {}

    def add(self, digest, media_type, size, platforms, multi_arch, created) -> None:
        media_type, platforms, multi_arch = (
            media_type or "",
            tuple(platforms or ()),
            bool(multi_arch),
        )
        key = _key(digest)
        value = (
            None if key is None else self._pack(media_type, size, platforms, multi_arch, created)
        )
        if value is None:
            self._other[digest] = (media_type, size, platforms, multi_arch, created)
        else:
            self._packed[key] = value

    def learn(self, images: Iterable[ImageInfo]) -> None:
        """Remember the details of the digests a listing found that were not known yet."""
        for image in images:
            if image.digest and image.digest not in self:
                self.add(
                    image.digest,
                    image.media_type,
                    image.size,
                    image.platforms,
                    image.multi_arch,
                    image.created,
                )

    def __getitem__(self, digest: str) -> DigestDetails:
        key = _key(digest)
        value = None if key is None else self._packed.get(key)
        if value is None:
            return DigestDetails(*self._other[digest])
        size, micros, kind, missing = _PACKED.unpack(value)
        media_type, platforms, multi_arch = self._kinds[kind]
        return DigestDetails(
            media_type,
            None if missing & _NO_SIZE else size,
            platforms,
            multi_arch,
            None if missing & _NO_CREATED else _EPOCH + micros * _MICROSECOND,
        )

    def get(self, digest, default=None):
        try:
            return self[digest]
        except KeyError:
            return default

    def __contains__(self, digest: object) -> bool:
        key = _key(digest)
        return (key is not None and key in self._packed) or digest in self._other

    def __iter__(self) -> Iterator[str]:
        for key in self._packed:
            yield _SHA256 + key.hex()
        yield from self._other

    def __len__(self) -> int:
        return len(self._packed) + len(self._other)

    def _pack(self, media_type, size, platforms, multi_arch, created) -> bytes | None:
        """The packed details, or None when they do not fit (kept as given then)."""
        missing = 0
        if size is None:
            missing, size = _NO_SIZE, 0
        elif type(size) is not int or not -(2**63) <= size < 2**63:
            return None
        if created is None:
            missing, micros = missing | _NO_CREATED, 0
        elif type(created) is datetime and created.utcoffset() is not None:
            micros = (created - _EPOCH) // _MICROSECOND
        else:
            return None
        kind = (media_type, platforms, multi_arch)
        try:
            index = self._kind_index.get(kind)
        except TypeError:  # platforms that are not strings: kept as given
            return None
        if index is None:
            index = self._kind_index[kind] = len(self._kinds)
            self._kinds.append(kind)
        return _PACKED.pack(size, micros, index, missing)

    @classmethod
    def for_registry(cls, registry_id: int) -> KnownDigests:
        known = cls()
        rows = Image.objects.filter(repository__registry_id=registry_id).values_list(
            "digest", "media_type", "size", "platforms", "multi_arch", "image_created_at"
        )
        for row in rows.iterator(chunk_size=5000):
            known.add(*row)
        return known


def _key(digest: object) -> bytes | None:
    """The 32 bytes of a canonical `sha256:<64 lower-case hex>` digest; None for any other."""
    if type(digest) is not str or len(digest) != 71 or not digest.startswith(_SHA256):
        return None
    try:
        key = bytes.fromhex(digest[7:])
    except ValueError:
        return None
    return key if len(key) == 32 and key.hex() == digest[7:] else None
