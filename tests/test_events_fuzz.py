"""Whatever reaches a receiver URL -- any headers, any body, of any kind of connection -- the
answer is a status from the receiver's list, never a server error; and a request without the
connection's secret writes nothing but its refusal counter."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imagesync.events import EventReceiver, RefreshPending, RegistryEvent
from imagesync.models import Registry, SyncTask

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KINDS = ("other", "harbor", "jfrog", "swr")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
words = st.sampled_from(
    [
        "push",
        "pull",
        "delete",
        "mount",
        "PUSH_ARTIFACT",
        "DELETE_ARTIFACT",
        "PULL_ARTIFACT",
        "harbor.artifact.pushed",
        "pushed",
        "deleted",
        "promoted",
        "docker",
        "team/api",
        "a/../b",
        "",
        "\x00",
        "x" * 300,
        "ns/" + "é" * 5,
    ]
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "events": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": words | json_values,
                    "action": words | json_values,
                    "target": st.fixed_dictionaries(
                        {},
                        optional={
                            "repository": words | json_values,
                            "mediaType": words | json_values,
                            "tag": words | json_values,
                        },
                    )
                    | json_values,
                },
            )
            | json_values,
            max_size=4,
        ),
        "type": words | json_values,
        "specversion": st.just("1.0"),
        "id": words | json_values,
        "event_data": json_values
        | st.fixed_dictionaries(
            {},
            optional={"repository": json_values | st.fixed_dictionaries({"repo_full_name": words})},
        ),
        "data": json_values
        | st.fixed_dictionaries({}, optional={"repo_key": words, "image_name": words}),
        "domain": words,
        "event_type": words,
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    event_like.map(lambda v: json.dumps(v).encode()),
)
header_values = st.one_of(
    st.text(max_size=60).filter(lambda v: "\n" not in v and "\r" not in v),
    st.sampled_from(["Bearer ", "Bearer", "bearer x", "sha256=", "0" * 64, " "]),
)


@pytest.fixture
def receivers(db, project):
    """kind -> (receiver, secret), events on."""
    found = {}
    for kind in KINDS:
        registry = Registry.objects.create(
            project=project, kind=kind, name=f"fuzz-{kind}", endpoint=f"https://{kind}.example"
        )
        receiver = EventReceiver.of(registry)
        found[kind] = (receiver, receiver.enable())
    return found


def post(receiver, body: bytes, headers: dict, content_type: str):
    client = Client(raise_request_exception=True)
    return client.post(receiver.path(), body, content_type=content_type, headers=headers)


@FUZZ
@given(
    kind=st.sampled_from(KINDS),
    body=bodies,
    authorization=st.none() | header_values,
    jfrog=st.none() | header_values,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/x-www-form-urlencoded"]
    ),
)
@example(kind="jfrog", body=b"{}", authorization=None, jfrog="sha256=" + "0" * 64, content_type="")
def test_a_request_without_the_secret_is_refused_and_writes_nothing(
    receivers, kind, body, authorization, jfrog, content_type
):
    receiver, _secret = receivers[kind]
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    if jfrog is not None:
        headers["X-JFrog-Event-Auth"] = jfrog
    response = post(receiver, body, headers, content_type)
    assert response.status_code == 401
    assert not RegistryEvent.objects.exists()
    assert not RefreshPending.objects.exists()
    assert not SyncTask.objects.exists()


@FUZZ
@given(kind=st.sampled_from(KINDS), body=bodies, signed=st.booleans())
def test_any_body_with_the_secret_is_accepted_or_refused_never_an_error(
    receivers, kind, body, signed
):
    import hashlib
    import hmac

    receiver, secret = receivers[kind]
    if kind == "jfrog":
        value = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() if signed else secret
        headers = {"X-JFrog-Event-Auth": value}
    else:
        headers = {"Authorization": f"Bearer {secret}" if signed else secret}
    before = RegistryEvent.objects.count()
    response = post(receiver, body, headers, "application/json")
    assert response.status_code in (202, 400)
    if response.status_code == 400:
        assert RegistryEvent.objects.count() == before
    for row in RefreshPending.objects.all():
        assert row.path and len(row.path) <= 255 and ".." not in row.path.split("/")
