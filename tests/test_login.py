"""Sign-in lockout: after LOGIN_FAILURE_LIMIT failures for one username or from one client
address, sign-in is refused (HTTP 429) for LOGIN_LOCKOUT_SECONDS; lockouts show in the admin."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.support.api import FAST_HASHERS, api_url, client_with_token
from tests.support.factories import PASSWORD

LIMIT = 5  # LOGIN_FAILURE_LIMIT's default
LOCKED = "Too many failed sign-in attempts. Try again in 15 minutes."


@pytest.fixture(autouse=True)
def _fast_hashers(db, settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS


def sign_in(client: Client, username: str, password: str, address: str = "192.0.2.10", **extra):
    return client.post(
        "/login/", {"username": username, "password": password}, REMOTE_ADDR=address, **extra
    )


def fail(client: Client, usernames, address: str = "192.0.2.10") -> list[int]:
    return [sign_in(client, name, "wrong", address).status_code for name in usernames]


def page_text(response) -> str:
    """The page without its CSRF tokens, which differ on every render."""
    return re.sub(r"[A-Za-z0-9]{64}", "<csrf>", response.content.decode())


def test_the_failure_that_reaches_the_limit_already_says_sign_in_is_locked(client, viewer):
    statuses = fail(client, [viewer.username] * LIMIT)
    assert statuses == [200] * (LIMIT - 1) + [429]


def test_a_locked_username_is_refused_even_with_the_right_password(client, viewer):
    fail(client, [viewer.username] * LIMIT)
    response = sign_in(client, viewer.username, PASSWORD, address="198.51.100.7")
    assert response.status_code == 429
    body = response.content.decode()
    assert LOCKED in body
    assert 'name="password"' in body  # the sign-in page itself, not a bare error
    assert "no-cache" in response["Cache-Control"]
    assert "_auth_user_id" not in client.session


def test_failures_from_one_address_lock_out_that_address_for_other_names(client, operator):
    fail(client, [f"nobody-{n}" for n in range(LIMIT)], address="203.0.113.5")
    assert sign_in(client, operator.username, PASSWORD, "203.0.113.5").status_code == 429
    # Another address is not affected.
    assert sign_in(Client(), operator.username, PASSWORD, "203.0.113.6").status_code == 302


def test_the_lockout_page_tells_nothing_about_which_usernames_exist(client, viewer):
    fail(client, [viewer.username] * LIMIT)
    known = sign_in(client, viewer.username, PASSWORD)
    unknown = sign_in(client, "nobody", PASSWORD)
    assert known.status_code == unknown.status_code == 429
    assert page_text(known).replace(viewer.username, "nobody") == page_text(unknown)
    assert PASSWORD not in known.content.decode()


def test_a_successful_sign_in_clears_the_failures_of_that_username(client, viewer):
    fail(client, [viewer.username] * (LIMIT - 1))
    assert sign_in(client, viewer.username, PASSWORD).status_code == 302
    client.logout()
    # The count starts again: LIMIT - 1 more failures still leave sign-in open.
    assert fail(client, [viewer.username] * (LIMIT - 1), address="192.0.2.99") == [200] * 4
    assert sign_in(client, viewer.username, PASSWORD, "192.0.2.99").status_code == 302


def test_signing_in_to_ones_own_account_does_not_clear_failures_against_others(
    client, viewer, operator
):
    fail(client, [viewer.username] * (LIMIT - 1))
    assert sign_in(client, operator.username, PASSWORD).status_code == 302
    client.logout()
    assert sign_in(client, viewer.username, "wrong").status_code == 429


def test_the_lockout_ends_after_login_lockout_seconds(client, viewer, settings):
    fail(client, [viewer.username] * LIMIT)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(seconds=901))
    assert sign_in(client, viewer.username, PASSWORD).status_code == 302


def test_behind_a_proxy_the_forwarded_client_address_is_the_one_locked_out(
    client, operator, settings
):
    settings.BEHIND_PROXY = True
    proxy = "10.0.0.1"
    for n in range(LIMIT):
        sign_in(client, f"nobody-{n}", "wrong", proxy, HTTP_X_FORWARDED_FOR="203.0.113.5")
    # Another client behind the same proxy signs in; a forged left-hand entry changes nothing.
    other = sign_in(Client(), operator.username, PASSWORD, proxy, HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert other.status_code == 302
    forged = sign_in(
        Client(), operator.username, PASSWORD, proxy, HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.5"
    )
    assert forged.status_code == 429


def test_bad_api_tokens_never_lock_anybody_out(client, viewer):
    for _ in range(LIMIT + 2):
        response = client_with_token("isk_not-a-real-token").get(api_url("project-list"))
        assert response.status_code == 401
    assert not AccessAttempt.objects.exists()
    assert sign_in(client, viewer.username, PASSWORD, "127.0.0.1").status_code == 302


def test_an_administrator_sees_the_lockout_in_the_admin_and_clears_it(client, superuser, viewer):
    fail(Client(), [viewer.username] * LIMIT)
    client.force_login(superuser)
    changelist = client.get(reverse("admin:axes_accessattempt_changelist"), {"locked_out": "yes"})
    assert changelist.status_code == 200
    assert viewer.username in changelist.content.decode()

    attempt = AccessAttempt.objects.get(username=viewer.username)
    delete_url = reverse("admin:axes_accessattempt_delete", args=[attempt.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 302
    assert sign_in(Client(), viewer.username, PASSWORD).status_code == 302


def test_a_too_long_username_is_a_failed_sign_in_that_counts_not_a_server_error(client):
    """Axes records the tried username in a 255-character column (PostgreSQL refuses longer
    values): the console counts it cut to the 150 characters a username can have."""
    username = "u" * 300
    statuses = fail(client, [username] * LIMIT, address="192.0.2.77")
    assert statuses == [200] * (LIMIT - 1) + [429]
    assert AccessAttempt.objects.get(ip_address="192.0.2.77").username == "u" * 150


def test_a_username_with_a_nul_is_refused_by_the_form_and_never_reaches_the_database(client):
    responses = [sign_in(client, "nul\x00name", "wrong") for _ in range(LIMIT)]
    assert [r.status_code for r in responses] == [200] * LIMIT
    assert 'name="username"' in responses[-1].content.decode()  # the sign-in form again
    assert not AccessAttempt.objects.exists()
