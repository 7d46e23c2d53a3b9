"""Registry clients: one module per kind behind one small interface (see base.py).

Adding a registry kind = one new module and one entry in CLIENTS.
"""

from __future__ import annotations

from importlib import import_module

from imagesync.registries.base import (
    CheckResult,
    ClientConfig,
    DigestDetails,
    ImageInfo,
    Platform,
    RegistryClient,
    RegistryError,
    RepositoryInfo,
)

# kind -> "module:Class", imported on first use.
CLIENTS = {
    "other": "imagesync.registries.oci:OciClient",
    "harbor": "imagesync.registries.harbor:HarborClient",
    "jfrog": "imagesync.registries.jfrog:JFrogClient",
    "swr": "imagesync.registries.swr:SwrClient",
}


def client_class(kind: str) -> type[RegistryClient]:
    try:
        module_name, _, class_name = CLIENTS[kind].partition(":")
    except KeyError:
        raise RegistryError("unsupported", f"Unknown registry kind {kind!r}.") from None
    return getattr(import_module(module_name), class_name)


def build_client(kind: str, config: ClientConfig) -> RegistryClient:
    return client_class(kind)(config)


__all__ = [
    "CLIENTS",
    "CheckResult",
    "ClientConfig",
    "DigestDetails",
    "ImageInfo",
    "Platform",
    "RegistryClient",
    "RegistryError",
    "RepositoryInfo",
    "build_client",
    "client_class",
]
