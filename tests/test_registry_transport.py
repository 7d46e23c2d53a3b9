"""The shared HTTP transport of all registry clients: retries, Retry-After, budgets, limits.

A sync that meets a flaky or throttling registry must wait politely and then either succeed or
fail with a reason a human can act on — never hang, never hammer, never leak the secret.
"""

from __future__ import annotations

import email.utils
import threading
import time

import pytest
import requests
import responses

from imagesync.registries.base import (
    ClientConfig,
    RegistryError,
    Transport,
    error_for_status,
    parse_retry_after,
)

URL = "https://reg.example.com"
SECRET = "PLANTED-SECRET-s3cr3t-9f8e7d"


def transport(url: str = URL, **options) -> tuple[Transport, list[float]]:
    options.setdefault("backoff_base", 0.5)
    config = ClientConfig(url=url, username="robot", secret=SECRET, options=options)
    t = Transport(config)
    slept: list[float] = []
    t._sleep = slept.append
    return t, slept


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_it_retries_throttling_and_gateway_errors_with_growing_backoff(rsps, status):
    for _ in range(3):
        rsps.add(responses.GET, f"{URL}/v2/", status=status)
    rsps.add(responses.GET, f"{URL}/v2/", json={})
    t, slept = transport(backoff_base=1.0)

    response = t.request("GET", "/v2/")

    assert response.status_code == 200
    assert len(slept) == 3
    # exponential with jitter in [0.5, 1.0] of 1, 2, 4 seconds
    assert 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 2.0 and 2.0 <= slept[2] <= 4.0


def test_it_retries_connection_errors_then_succeeds(rsps):
    rsps.add(responses.GET, f"{URL}/v2/", body=requests.exceptions.ConnectionError("refused"))
    rsps.add(responses.GET, f"{URL}/v2/", json={})
    t, slept = transport()

    assert t.request("GET", "/v2/").status_code == 200
    assert len(slept) == 1


def test_a_registry_that_stays_down_is_reported_unreachable_after_the_retries(rsps):
    rsps.add(responses.GET, f"{URL}/v2/", body=requests.exceptions.ConnectionError("refused"))
    t, slept = transport(max_retries=3)

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/")

    assert caught.value.code == "unreachable"
    assert caught.value.retryable is True
    assert len(rsps.calls) == 4 and len(slept) == 3


def test_it_waits_the_seconds_retry_after_asks_for(rsps):
    rsps.add(responses.GET, f"{URL}/v2/", status=429, headers={"Retry-After": "12"})
    rsps.add(responses.GET, f"{URL}/v2/", json={})
    t, slept = transport()

    t.request("GET", "/v2/")

    assert slept == [12.0]


def test_it_waits_until_the_http_date_retry_after_gives(rsps):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    rsps.add(responses.GET, f"{URL}/v2/", status=503, headers={"Retry-After": when})
    rsps.add(responses.GET, f"{URL}/v2/", json={})
    t, slept = transport()

    t.request("GET", "/v2/")

    assert len(slept) == 1 and 27.0 <= slept[0] <= 30.0


def test_a_retry_after_beyond_the_budget_fails_at_once_as_rate_limited(rsps):
    rsps.add(responses.GET, f"{URL}/v2/", status=429, headers={"Retry-After": "3600"})
    t, slept = transport(retry_budget=60)

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/", what="catalog")

    assert caught.value.code == "rate_limited"
    assert caught.value.retryable is True
    assert "catalog" in caught.value.message
    assert slept == []  # no point in sleeping when the wait would exceed the budget


def test_the_waiting_budget_caps_the_total_time_spent_retrying(rsps):
    rsps.add(responses.GET, f"{URL}/v2/", status=429, headers={"Retry-After": "25"})
    t, slept = transport(retry_budget=60, max_retries=10)

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/")

    assert caught.value.code == "rate_limited"
    assert slept == [25.0, 25.0]
    assert sum(slept) <= 60


def test_persistent_gateway_errors_end_as_unreachable_with_the_status(rsps):
    rsps.add(responses.GET, f"{URL}/v2/", status=502)
    t, _ = transport(max_retries=2)

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/")

    assert (caught.value.code, caught.value.status) == ("unreachable", 502)
    assert len(rsps.calls) == 3


@pytest.mark.parametrize(
    "exc", [requests.exceptions.ReadTimeout("slow"), requests.exceptions.ConnectTimeout("slow")]
)
def test_timeouts_are_reported_as_timeouts(rsps, exc):
    rsps.add(responses.GET, f"{URL}/v2/", body=exc)
    t, slept = transport(max_retries=1)

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/")

    assert caught.value.code == "timeout"
    assert len(slept) == 1


def test_a_tls_failure_is_not_retried(rsps):
    rsps.add(responses.GET, f"{URL}/v2/", body=requests.exceptions.SSLError("bad cert"))
    t, slept = transport()

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/")

    assert caught.value.code == "tls_error"
    assert slept == [] and len(rsps.calls) == 1


def test_other_statuses_are_returned_at_once_for_the_client_to_map(rsps):
    rsps.add(responses.GET, f"{URL}/v2/nope/tags/list", status=404, json={"errors": []})
    t, slept = transport()

    assert t.request("GET", "/v2/nope/tags/list").status_code == 404
    assert slept == [] and len(rsps.calls) == 1


def test_plain_http_is_refused_unless_allowed():
    with pytest.raises(RegistryError) as caught:
        Transport(ClientConfig(url="http://reg.example.com"))
    assert caught.value.code == "unsupported"

    allowed = Transport(ClientConfig(url="http://reg.example.com", allow_insecure_http=True))
    assert allowed.url("/v2/") == "http://reg.example.com/v2/"


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(RegistryError) as caught:
        Transport(ClientConfig(url="ftp://reg.example.com"))
    assert caught.value.code == "unsupported"


def test_an_oversized_body_is_a_bad_response(rsps):
    rsps.add(responses.GET, f"{URL}/v2/_catalog", body=b"x" * 5000)
    t, _ = transport(max_body_bytes=1000)

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/_catalog", what="catalog")

    assert caught.value.code == "bad_response"
    assert "too large" in caught.value.message


def test_an_oversized_body_without_content_length_is_cut_off(rsps):
    rsps.add(
        responses.GET, f"{URL}/v2/_catalog", body=b"y" * 5000, auto_calculate_content_length=False
    )
    t, _ = transport(max_body_bytes=2500)

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/_catalog")

    assert caught.value.code == "bad_response"


def test_a_head_answer_announcing_a_large_body_is_fine(rsps):
    rsps.add(
        responses.HEAD,
        f"{URL}/v2/app/manifests/1",
        headers={"Content-Length": "999999999", "Docker-Content-Digest": "sha256:" + "a" * 64},
        auto_calculate_content_length=False,
    )
    t, _ = transport(max_body_bytes=1000)

    response = t.request("HEAD", "/v2/app/manifests/1")

    assert response.headers["Docker-Content-Digest"] == "sha256:" + "a" * 64


def test_error_messages_never_contain_the_secret_even_from_a_url_with_credentials(rsps):
    url = f"https://robot:{SECRET}@reg.example.com"
    rsps.add(responses.GET, f"{URL}/v2/", body=requests.exceptions.ConnectionError(SECRET))
    t, _ = transport(url, max_retries=0)

    with pytest.raises(RegistryError) as caught:
        t.request("GET", "/v2/")

    assert SECRET not in caught.value.message
    assert SECRET not in str(caught.value)
    assert "reg.example.com" in caught.value.message
    assert SECRET not in repr(t.config)


def test_requests_per_second_spaces_requests_out(rsps):
    rsps.add(responses.GET, f"{URL}/v2/", json={})
    t, _ = transport(requests_per_second=20)

    started = time.monotonic()
    for _ in range(5):
        t.request("GET", "/v2/")
    elapsed = time.monotonic() - started

    assert elapsed >= 0.19  # four gaps of 1/20 s
    assert t.request_count == 5


def test_no_more_requests_than_max_concurrency_are_in_flight(rsps):
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(request):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.03)
        with lock:
            state["now"] -= 1
        return 200, {}, "{}"

    rsps.add_callback(responses.GET, f"{URL}/v2/", callback=slow)
    t, _ = transport(max_concurrency=2)
    threads = [threading.Thread(target=t.request, args=("GET", "/v2/")) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert state["peak"] == 2
    assert len(rsps.calls) == 8


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (401, "auth_failed", False),
        (403, "permission_denied", False),
        (404, "not_found", False),
        (405, "unsupported", False),
        (429, "rate_limited", True),
        (500, "unreachable", True),
        (418, "bad_response", False),
    ],
)
def test_unexpected_statuses_map_to_stable_codes(status, code, retryable):
    response = requests.Response()
    response.status_code = status

    error = error_for_status(response, "catalog", "reg.example.com")

    assert (error.code, error.retryable, error.status) == (code, retryable, status)
    assert "catalog" in error.message


def test_retry_after_parsing():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_proxies_from_the_environment_are_still_used_and_no_proxy_still_bypasses_them(
    rsps, monkeypatch
):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example.com")
    rsps.add(responses.GET, f"{URL}/v2/", json={})
    rsps.add(responses.GET, "https://internal.example.com/v2/", json={})
    t, _ = transport()

    for _ in range(2):  # the second request reads the cached settings
        t.request("GET", "/v2/")
    t.request("GET", "https://internal.example.com/v2/")

    proxies = [call.request.req_kwargs["proxies"] for call in rsps.calls]
    assert proxies[0] == proxies[1]
    assert proxies[0]["https"] == "http://proxy.corp.example:3128"
    assert "https" not in proxies[2]


def test_a_netrc_entry_is_still_used_and_read_once_per_host(rsps, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine reg.example.com login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    looked = []
    real = requests.utils.get_netrc_auth
    monkeypatch.setattr(requests.utils, "get_netrc_auth", lambda *a: looked.append(a) or real(*a))
    rsps.add(responses.GET, f"{URL}/v2/", json={})
    rsps.add(responses.GET, "https://other.example.com/v2/", json={})
    t, _ = transport()

    for _ in range(3):
        t.request("GET", "/v2/")
    t.request("GET", "https://other.example.com/v2/")

    sent = [call.request.headers.get("Authorization") for call in rsps.calls]
    basic = requests.auth._basic_auth_str("netrc-user", "netrc-pass")
    assert sent == [basic, basic, basic, None]  # the host's entry, and none for another host
    assert len(looked) == 2  # once per host, not once per request


def test_a_redirect_is_followed_and_a_cookie_kept_as_requests_would(rsps):
    rsps.add(
        responses.GET,
        f"{URL}/v2/app/blobs/sha256:abc",
        status=307,
        headers={"Location": "https://storage.example.net/blob?sig=1"},
    )
    rsps.add(responses.GET, "https://storage.example.net/blob", json={"config": 1})
    rsps.add(responses.GET, f"{URL}/v2/", json={}, headers={"Set-Cookie": "sid=abc; Path=/"})
    t, _ = transport()

    blob = t.request("GET", "/v2/app/blobs/sha256:abc")
    assert blob.json() == {"config": 1} and blob.url.startswith("https://storage.example.net/")
    assert [r.status_code for r in blob.history] == [307]
    t.request("GET", "/v2/")  # sets a cookie
    t.request("GET", "/v2/")  # sends it back

    assert rsps.calls[-1].request.headers.get("Cookie") == "sid=abc"
    assert "Cookie" not in rsps.calls[0].request.headers
