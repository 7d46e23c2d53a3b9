"""The receiver through the console's WSGI entry point (console/wsgi.py, what gunicorn serves):
a notification skips Django's middleware but is answered exactly as Django's view answers it,
and everything else still goes through Django."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from console.wsgi import application
from imagesync.events import RefreshPending, RegistryEvent
from tests.support.registry_events import (
    EVENTS_MEDIA_TYPE,
    distribution_envelope,
    events_turned_on,
    hook_post,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def events_on(registry):
    return events_turned_on(registry)


def served(method: str, path: str, body: bytes = b"", **headers) -> tuple[int, dict, bytes]:
    """(status, headers, body) of `application` for one request, as a WSGI server calls it."""
    request = getattr(RequestFactory(), method)(
        path, data=body, content_type=EVENTS_MEDIA_TYPE, headers=headers
    )
    seen = {}

    def start_response(status, response_headers):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)

    response = application(request.environ, start_response)
    try:
        content = b"".join(response)
    finally:
        response.close()  # as the server does: request_finished
    return seen["status"], seen["headers"], content


def test_a_push_through_the_entry_point_is_stored_and_marks_its_repository(events_on):
    receiver, secret = events_on
    body = distribution_envelope([("push", "team/api", "1.0")])
    status, headers, content = served("post", receiver.path(), body, authorization=secret)
    assert (status, content) == (202, b"")
    assert "Set-Cookie" not in headers  # no session was started for a registry
    assert RegistryEvent.objects.filter(receiver=receiver).count() == 1
    assert list(RefreshPending.objects.values_list("path", flat=True)) == ["team/api"]


def test_the_entry_point_answers_every_case_as_the_view_does(client, events_on, settings):
    receiver, secret = events_on
    settings.REGISTRY_EVENTS_MAX_BYTES = 2048
    push = distribution_envelope([("push", "team/api", "1.0")])
    cases = [
        (receiver.path(), push, "wrong"),  # 401
        (receiver.path(), b"{not json", secret),  # 400
        (receiver.path(), b"x" * 4096, secret),  # 413
        ("/hooks/registry/" + "A" * 32 + "/", push, secret),  # 404: no such receiver
        (receiver.path(), push, secret),  # 202
        (receiver.path(), push, secret),  # 202, a duplicate
    ]
    through_view = [
        hook_post(client, receiver, body, auth).status_code for _, body, auth in cases[:3]
    ]
    through_view.append(client.post(cases[3][0], push, content_type=EVENTS_MEDIA_TYPE).status_code)
    through_entry = [
        served("post", path, body, authorization=auth)[0] for path, body, auth in cases
    ]
    assert through_view == through_entry[:4] == [401, 400, 413, 404]
    assert through_entry[4:] == [202, 202]
    receiver.refresh_from_db()
    assert (receiver.refused_secret, receiver.refused_malformed, receiver.refused_too_large) == (
        2,
        2,
        2,
    )
    assert receiver.duplicates == 1
    assert RegistryEvent.objects.count() == 1


def test_a_get_or_another_url_still_goes_through_django(events_on):
    receiver, _secret = events_on
    assert served("get", receiver.path())[0] == 405
    status, headers, _ = served("get", "/login/")
    assert status == 200 and "Content-Security-Policy" in headers  # the middleware ran


def test_a_host_outside_allowed_hosts_is_refused_and_writes_nothing(events_on, settings):
    receiver, secret = events_on
    settings.ALLOWED_HOSTS = ["console.example.com"]
    body = distribution_envelope([("push", "team/api", "1.0")])
    assert served("post", receiver.path(), body, authorization=secret)[0] == 400
    assert not RegistryEvent.objects.exists() and not RefreshPending.objects.exists()
