"""Sign-in: throttled after repeated failures, per username and per client address."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings

from tests.support.factories import PASSWORD


@pytest.fixture(autouse=True)
def fresh_cache(db):
    cache.clear()
    yield
    cache.clear()


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_sign_in_is_refused_after_repeated_failures_even_with_the_right_password(client, viewer):
    for _ in range(3):
        response = client.post("/login/", {"username": viewer.username, "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/login/", {"username": viewer.username, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_failures_from_one_address_lock_out_that_address_for_other_names(client, viewer, operator):
    for name in ("a", "b", "c"):
        client.post("/login/", {"username": name, "password": "wrong"})
    response = client.post("/login/", {"username": operator.username, "password": PASSWORD})
    assert response.status_code == 429


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_a_successful_sign_in_clears_the_failures_of_that_username(client, viewer):
    client.post("/login/", {"username": viewer.username, "password": "wrong"})
    response = client.post("/login/", {"username": viewer.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(viewer.pk)
