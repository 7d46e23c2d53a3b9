"""Registry clients: one module per kind behind one small interface (see base.py), and one module
that knows manifests, indexes and configs (manifests.py).

Adding a registry kind = one new module and one entry in CLIENTS.
"""

from __future__ import annotations

from imagesync.reasons import UNSUPPORTED
from imagesync.registries.base import CheckResult, ClientConfig, RegistryClient, RegistryError
from imagesync.registries.harbor import HarborClient
from imagesync.registries.jfrog import JFrogClient
from imagesync.registries.oci import OciClient
from imagesync.registries.swr import SwrClient

CLIENTS: dict[str, type[RegistryClient]] = {
    "other": OciClient,
    "harbor": HarborClient,
    "jfrog": JFrogClient,
    "swr": SwrClient,
}


def client_class(kind: str) -> type[RegistryClient]:
    try:
        return CLIENTS[kind]
    except KeyError:
        raise RegistryError(UNSUPPORTED, f"Unknown registry kind {kind!r}.") from None


def build_client(kind: str, config: ClientConfig) -> RegistryClient:
    return client_class(kind)(config)


__all__ = [
    "CLIENTS",
    "CheckResult",
    "ClientConfig",
    "RegistryClient",
    "RegistryError",
    "build_client",
    "client_class",
]
