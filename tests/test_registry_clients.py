"""What every registry client promises through the one base class, checked for each kind."""

from __future__ import annotations

import pytest
import responses

from imagesync.registries import CLIENTS, build_client
from imagesync.registries.base import ClientConfig, RegistryClient

CONFIG = {
    "other": ClientConfig(url="https://registry.example.com", username="u", secret="s3cr3t-x"),
    "harbor": ClientConfig(url="https://harbor.example.com", username="r", secret="s3cr3t-x"),
    "jfrog": ClientConfig(url="https://art.example.com", username="u", secret="s3cr3t-x"),
    "swr": ClientConfig(
        url="https://swr-api.cn-north-4.myhuaweicloud.com",
        username="AK",
        secret="s3cr3t-x",
        options={"project_id": "p"},
    ),
}


def test_every_kind_has_a_client_built_on_the_one_base_class():
    assert set(CLIENTS) == set(CONFIG)
    assert all(issubclass(client, RegistryClient) for client in CLIENTS.values())


@pytest.mark.parametrize("kind", CONFIG)
@responses.activate
def test_it_lists_nothing_and_asks_nothing_for_repository_types_it_does_not_serve(kind):
    client = build_client(kind, CONFIG[kind])
    assert list(client.list_repositories(types=["no-such-type"])) == []
    assert len(responses.calls) == 0
