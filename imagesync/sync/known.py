"""What a run already knows about each digest of a registry."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from imagesync.models import Image
from imagesync.registries.base import DigestDetails, ImageInfo


class KnownDigests(Mapping):
    """digest -> DigestDetails for one registry, from the images already stored and those
    learned during this run. A digest is immutable, so what was learned about it (platforms,
    size, created time) never needs fetching again. Stored as compact tuples: 100,000 digests
    stay a few dozen MB."""

    def __init__(self) -> None:
        self._data: dict[str, tuple] = {}
        self._platforms: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._strings: dict[str, str] = {}

    def add(self, digest, media_type, size, platforms, multi_arch, created) -> None:
        plat = tuple(platforms or ())
        plat = self._platforms.setdefault(plat, plat)
        media_type = self._strings.setdefault(media_type or "", media_type or "")
        self._data[digest] = (media_type, size, plat, bool(multi_arch), created)

    def learn(self, images: Iterable[ImageInfo]) -> None:
        """Remember the details of the digests a listing found that were not known yet."""
        for image in images:
            if image.digest and image.digest not in self._data:
                self.add(
                    image.digest,
                    image.media_type,
                    image.size,
                    image.platforms,
                    image.multi_arch,
                    image.created,
                )

    def __getitem__(self, digest: str) -> DigestDetails:
        return DigestDetails(*self._data[digest])

    def __contains__(self, digest: object) -> bool:
        return digest in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @classmethod
    def for_registry(cls, registry_id: int) -> KnownDigests:
        known = cls()
        rows = Image.objects.filter(repository__registry_id=registry_id).values_list(
            "digest", "media_type", "size", "platforms", "multi_arch", "image_created_at"
        )
        for row in rows.iterator(chunk_size=5000):
            known.add(*row)
        return known
