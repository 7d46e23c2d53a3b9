"""What a run already knows about each digest of a registry."""

from __future__ import annotations

import struct
from collections import OrderedDict
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
LEARNED_LIMIT = 100_000  # digests learned during a run that are kept (the latest ones)


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
    as the same instant, in UTC.

    The inventory's digests (`for_registry`) are all kept; of the digests a run learns from
    its listings, the latest LEARNED_LIMIT: a first sync of 1,000,000 images would otherwise
    hold every one of them. One that was forgotten is only fetched again if a repository
    synced later in the same run has it too (the next run knows it from the inventory)."""

    def __init__(self, learned_limit: int | None = None) -> None:
        self._packed: dict[bytes, bytes] = {}
        self._other: dict[str, tuple] = {}
        self._learned: OrderedDict[bytes | str, bytes | tuple] = OrderedDict()
        self._learned_limit = LEARNED_LIMIT if learned_limit is None else learned_limit
        self._kinds: list[tuple[str, tuple[str, ...], bool]] = []
        self._kind_index: dict[tuple[str, tuple[str, ...], bool], int] = {}

    def add(self, digest, media_type, size, platforms, multi_arch, created) -> None:
        """Keep the details of a digest of the inventory."""
        key, value = self._entry(digest, media_type, size, platforms, multi_arch, created)
        if type(value) is bytes:
            self._packed[key] = value
        else:
            self._other[key] = value

    def learn(self, images: Iterable[ImageInfo]) -> None:
        """Remember the details of the digests a listing found that were not known yet (the
        latest LEARNED_LIMIT of them)."""
        learned = self._learned
        for image in images:
            if image.digest and image.digest not in self:
                key, value = self._entry(
                    image.digest,
                    image.media_type,
                    image.size,
                    image.platforms,
                    image.multi_arch,
                    image.created,
                )
                learned[key] = value
                if len(learned) > self._learned_limit:
                    learned.popitem(last=False)

    def __getitem__(self, digest: str) -> DigestDetails:
        value = self._find(digest)
        if value is None:
            raise KeyError(digest)
        if type(value) is tuple:
            return DigestDetails(*value)
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
        return self._find(digest) is not None

    def _find(self, digest) -> bytes | tuple | None:
        """The packed or plain details of a digest, None when not known."""
        key = _key(digest)
        if key is not None:
            value = self._packed.get(key) or self._learned.get(key)
            if value is not None:
                return value
        return self._other.get(digest) or self._learned.get(digest)

    def __iter__(self) -> Iterator[str]:
        for key in (*self._packed, *self._other, *self._learned):
            yield _SHA256 + key.hex() if type(key) is bytes else key

    def __len__(self) -> int:
        return len(self._packed) + len(self._other) + len(self._learned)

    def _entry(self, digest, media_type, size, platforms, multi_arch, created) -> tuple:
        """(key, value): a canonical sha256 digest's 32 bytes and its packed details when they
        fit, else the digest and its details as given."""
        media_type, platforms, multi_arch = (
            media_type or "",
            tuple(platforms or ()),
            bool(multi_arch),
        )
        key = _key(digest)
        packed = (
            None if key is None else self._pack(media_type, size, platforms, multi_arch, created)
        )
        if packed is None:
            return digest, (media_type, size, platforms, multi_arch, created)
        return key, packed

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
