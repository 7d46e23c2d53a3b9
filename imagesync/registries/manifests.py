"""Manifests, indexes and image configs: the one place that knows their media types and reads
platforms, sizes and created times from them. Every registry client uses it, whether it reads
the documents itself (OCI, JFrog) or gets the same facts from a vendor API (Harbor, SWR).

The rules, the same for every registry:

* **Platform**: "os/arch[/variant]", from an index entry's `platform` or from an image config
  (which carries `os`, `architecture`, `variant` at its top level). A missing platform and
  BuildKit's unknown/unknown give none.
* **Attestations** (BuildKit files provenance and SBOMs as index entries annotated
  `vnd.docker.reference.type: attestation-manifest`, on platform unknown/unknown) are not
  platforms: an image built for one platform with its attestation is not multi-arch.
* **Multi-arch**: an index, unless its entries name exactly one real platform (an index whose
  platforms are not known is taken for what its type says: a list of platforms).
* **Size** of a single image: its config plus its layers, as the manifest declares them
  (compressed, what one pull downloads); unknown (None) when any of them has no size.
  **An index has no size (None)**, in every client. Its own descriptor sizes are the bytes of
  its child manifests, not of any image, and the totals some registries report for an index
  count different things (Harbor: every child artifact including attestations; SWR: the
  child manifests). An inventory that shows one of those beside an image's real size would
  compare unlike figures; the size of each platform's image is one pull of that image away.
* **Created**: the `created` time of the image config, never the push time (that is the
  registry's `updated`).

A listing of 100,000 tags holds as many media types and platforms, nearly all the same few:
`media_type` and `platform` return one shared copy of each distinct text (`sys.intern`: a
copy no one holds any more is freed), and `shared_platforms` one shared tuple, so that each
image does not hold its own (~200 bytes an image).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from imagesync.reasons import BAD_RESPONSE
from imagesync.registries.base import DigestDetails, RegistryError, as_count, parse_time

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
# What a client accepts when it GETs or HEADs a manifest (indexes first: never a converted one).
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
ATTESTATION = "attestation-manifest"
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # image configs are a few KB; never download a big blob
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")

# What an image config tells: its platforms (none or one) and its created time.
ConfigFacts = tuple[tuple[str, ...], datetime | None]
NO_FACTS: ConfigFacts = ((), None)


def media_type(value: Any) -> str:
    """A media type as sent in a header or a document, without parameters, in lower case (one
    shared copy of each: see the module docstring)."""
    return sys.intern(str(value or "").split(";", 1)[0].strip().lower())


def is_index(kind: str) -> bool:
    return media_type(kind) in INDEX_TYPES


def platform(data: Any) -> str:
    """ "os/arch[/variant]" of an index entry's `platform` or of an image config; "" when it
    names none or is an attestation's unknown/unknown."""
    if not isinstance(data, Mapping):
        return ""
    os_name = str(data.get("os") or "")
    arch = str(data.get("architecture") or "")
    if (not os_name and not arch) or (os_name == "unknown" and arch == "unknown"):
        return ""
    parts = [os_name or "unknown", arch or "unknown"]
    if data.get("variant"):
        parts.append(str(data["variant"]))
    return sys.intern("/".join(parts))


def is_attestation(entry: Any) -> bool:
    """Whether an index entry is an attestation (provenance, SBOM), not a platform's image."""
    if not isinstance(entry, Mapping):
        return False
    annotations = entry.get("annotations")
    if isinstance(annotations, Mapping) and annotations.get(ATTESTATION_ANNOTATION) == ATTESTATION:
        return True
    found = entry.get("platform")
    return isinstance(found, Mapping) and (found.get("os"), found.get("architecture")) == (
        "unknown",
        "unknown",
    )


def index_platforms(entries: Iterable[Any]) -> tuple[str, ...]:
    """The real platforms of an index's entries (Harbor's `references` have the same shape),
    in order, each once."""
    real = (e for e in entries if isinstance(e, Mapping) and not is_attestation(e))
    return unique(platform(entry.get("platform")) for entry in real)


def unique(values: Iterable[str]) -> tuple[str, ...]:
    return shared_platforms(tuple(dict.fromkeys(v for v in values if v)))


@lru_cache(maxsize=1024)
def shared_platforms(platforms: tuple[str, ...]) -> tuple[str, ...]:
    """One shared tuple for equal platform tuples (the last 1,024 distinct ones)."""
    return platforms


def multi_arch(index: bool, platforms: tuple[str, ...]) -> bool:
    return index and len(platforms) != 1


def index_details(kind: str, platforms: tuple[str, ...]) -> DigestDetails:
    """Details of an index: its platforms, and no size (see the module docstring)."""
    return DigestDetails(kind, None, platforms, multi_arch(True, platforms), None)


def config_facts(config: Any) -> ConfigFacts:
    """Platform and created time from an image config blob (or Harbor's `extra_attrs`, which
    copies the config's top level)."""
    if not isinstance(config, Mapping):
        return NO_FACTS
    found = platform(config)
    return shared_platforms((found,) if found else ()), parse_time(config.get("created"))


def image_size(config: Mapping[str, Any], layers: list[Any]) -> int | None:
    sizes = [as_count(config.get("size"))]
    sizes += [
        as_count(layer.get("size")) if isinstance(layer, Mapping) else None for layer in layers
    ]
    return None if None in sizes else sum(sizes)  # type: ignore[arg-type]


def config_to_read(config: Mapping[str, Any]) -> str:
    """The digest of a config blob worth one small GET, or "" (no valid digest, too big to be
    a config, or not JSON: an artifact, not an image)."""
    digest = config.get("digest")
    size = as_count(config.get("size"))
    kind = media_type(config.get("mediaType"))
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        return ""
    if size is not None and size > MAX_CONFIG_BYTES:
        return ""
    return digest if not kind or kind.endswith(("+json", "/json")) else ""


def details(
    manifest: Any, sent_type: str, what: str, read_config: Callable[[str], ConfigFacts] | None
) -> DigestDetails:
    """What a manifest or an index tells about its digest. `sent_type` is the Content-Type it
    came with (the document's own `mediaType` wins); `read_config(digest)` fetches the facts
    of a single image's config blob (None: platforms and created time stay unknown)."""
    if not isinstance(manifest, dict):
        raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected manifest ({what}).")
    declared = manifest.get("mediaType")
    kind = media_type(declared if isinstance(declared, str) and declared else sent_type)
    if kind in INDEX_TYPES or "manifests" in manifest:
        entries = manifest.get("manifests")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected index ({what}).")
        return index_details(kind or OCI_INDEX, index_platforms(entries))
    if "config" in manifest or "layers" in manifest:
        config, layers = manifest.get("config"), manifest.get("layers") or []
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected manifest ({what}).")
        digest = config_to_read(config)
        platforms, created = read_config(digest) if digest and read_config else NO_FACTS
        size = image_size(config, layers)
        return DigestDetails(kind or DOCKER_MANIFEST, size, platforms, False, created)
    if manifest.get("schemaVersion") == 1:  # legacy schema 1: architecture only, always Linux
        arch = manifest.get("architecture")
        platforms = (f"linux/{arch}",) if isinstance(arch, str) and arch else ()
        return DigestDetails(kind or DOCKER_SCHEMA1, None, platforms, False, None)
    raise RegistryError(BAD_RESPONSE, f"The registry sent an unexpected manifest ({what}).")
