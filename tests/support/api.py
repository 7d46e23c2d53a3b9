"""API test helpers: token-authenticated clients, API URLs and the one error shape."""

from __future__ import annotations

from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient


def token_for(user, name: str = "tests") -> str:
    """A fresh API token of `user` (the raw secret)."""
    from apitokens.models import ApiToken

    return ApiToken.issue(user, name)[1]


def client_with_token(raw: str | None) -> APIClient:
    client = APIClient()
    if raw is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def api_as(user) -> APIClient:
    """An API client authenticated with a new token of `user` (anonymous for None)."""
    return client_with_token(token_for(user) if user is not None else None)


def api_url(name: str, **kwargs) -> str:
    return reverse(f"api:{name}", kwargs=kwargs)


def assert_error(response, status: int, code: str) -> dict:
    """The response is an error in the API's one shape, with this status and code."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def reset_rate_limits() -> None:
    """Throttle counters live in the cache; tests must not inherit each other's requests."""
    cache.clear()


FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # personas' passwords only


def bound_counts(settings, limit: int) -> None:
    """Lists count their matches only up to `limit` (IMAGE_COUNT_LIMIT), for a test that pages
    past it through the pages and the API (fast personas' passwords, no inherited throttle)."""
    settings.IMAGE_COUNT_LIMIT = limit
    settings.PASSWORD_HASHERS = FAST_HASHERS
    reset_rate_limits()


def follow_pages(client, body: dict) -> tuple[list[int], int, dict]:
    """From a list's first page (`body`), every row's id through the `next` links, the number
    of pages read and the last page's body."""
    ids = [row["id"] for row in body["results"]]
    pages = 1
    while body["next"]:
        body = client.get(body["next"]).json()
        ids += [row["id"] for row in body["results"]]
        pages += 1
    return ids, pages, body
