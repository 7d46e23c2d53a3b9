"""Whatever a user types into the URL or a form, the console answers with a page or a clear
refusal -- never a server error, never a traceback.

Hypothesis feeds arbitrary query strings (known filter names with arbitrary values, plus
arbitrary names) to every list page, filter, fragment and export, and arbitrary form posts to
every form: the Synchronize Images slide-out, the registry form, the project selector, task
cancel/retry and the login form. The Django test client re-raises any exception a view lets
escape, so an unhandled error fails the test with its traceback; a handled one must still not
be a 500.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imagesync.filters import (
    ChangeFilter,
    ImageFilter,
    RepositoryFilter,
    TaskFilter,
    TaskResultFilter,
)
from tests.support.factories import seed_project
from tests.support.web import body_of

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OK_STATUSES = {200, 302, 400, 403, 404, 405, 429}


def _filter_names() -> list[str]:
    names = {"sort", "page", "per_page", "repo_page", "repositories", "next", "format"}
    for filterset in (ImageFilter, TaskFilter, TaskResultFilter, RepositoryFilter, ChangeFilter):
        for name in filterset.base_filters:
            names |= {name, f"{name}_min", f"{name}_max", f"{name}_after", f"{name}_before"}
    return sorted(names)


FILTER_NAMES = _filter_names()
REAL_NAMES = sorted(
    {"sort", "page", "per_page", "repo_page", "repositories"}
    | {
        name
        for filterset in (ImageFilter, TaskFilter, TaskResultFilter, RepositoryFilter, ChangeFilter)
        for name in filterset.base_filters
    }
)
nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(
        [
            "",
            "\x00",
            "a\x00b",
            "-1",
            "0",
            "1e309",
            "NaN",
            "inf",
            "9" * 40,
            "-9" * 20,
            "2024-13-45",
            "0000-00-00",
            "9999-12-31",
            "1/0",
            "' OR 1=1 --",
            "%",
            "_",
            "\\",
            "<script>alert(1)</script>",
            "{{ 7*7 }}",
            "sha256:" + "f" * 64,
            "..",
            "other",
            "swr_private",
            "-size",
            "size",
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
query_pairs = st.lists(
    st.tuples(st.sampled_from(FILTER_NAMES) | st.text(max_size=10), nasty_text),
    max_size=8,
)


def encode(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def assert_clear_answer(response, where: str) -> None:
    assert response.status_code in OK_STATUSES, f"{where}: HTTP {response.status_code}"
    body = body_of(response)
    assert "Traceback" not in body, where
    assert "Server Error" not in body, where


@pytest.fixture
def world(db, project, other_project, admin_user):
    seeded = seed_project(project, "fuzz5w")
    seed_project(other_project, "fuzzother")
    client = Client()
    client.force_login(admin_user)
    return seeded, client


def list_urls(seeded) -> list[str]:
    return [
        reverse("imagesync:image-list"),
        reverse("imagesync:image-export"),
        reverse("imagesync:task-list"),
        reverse("imagesync:task-detail", args=[seeded.task.pk]),
        reverse("imagesync:registry-list"),
        reverse("imagesync:sync-panel"),
        reverse("imagesync:sync-repositories"),
        f"/api/v1/projects/{seeded.project.pk}/images/",
        f"/api/v1/projects/{seeded.project.pk}/sync-tasks/",
        f"/api/v1/projects/{seeded.project.pk}/repositories/",
        reverse("imagesync:change-list"),
        reverse("imagesync:change-export"),
        f"/api/v1/projects/{seeded.project.pk}/changes/",
    ]


@FUZZ
@given(pairs=query_pairs, fragment=st.booleans(), which=st.integers(min_value=0, max_value=12))
def test_any_query_string_on_any_list_gets_a_clear_answer(world, pairs, fragment, which):
    seeded, client = world
    url = list_urls(seeded)[which]
    headers = {"HX-Request": "true"} if fragment else {}
    response = client.get(f"{url}?{encode(pairs)}", headers=headers)
    assert_clear_answer(response, f"GET {url}?{encode(pairs)}")


@FUZZ
@given(raw=st.text(max_size=80))
def test_any_raw_query_string_on_image_view_gets_a_clear_answer(world, raw):
    seeded, client = world
    query = quote(raw, safe="=&;+%")
    for url in (reverse("imagesync:image-list"), reverse("imagesync:image-export")):
        response = client.get(f"{url}?{query}")
        assert_clear_answer(response, f"GET {url}?{query}")


form_fields = st.dictionaries(
    st.sampled_from(
        [
            "sync_type",
            "types",
            "repositories",
            "name",
            "kind",
            "endpoint",
            "username",
            "secret",
            "clear_secret",
            "verify_tls",
            "ca_bundle",
            "allow_insecure_http",
            "options",
            "project",
            "next",
        ]
    )
    | st.text(max_size=8),
    st.one_of(nasty_text, st.lists(nasty_text, max_size=3)),
    max_size=8,
)


def form_urls(seeded) -> list[str]:
    return [
        reverse("imagesync:sync-panel"),
        reverse("imagesync:registry-create"),
        reverse("imagesync:registry-edit", args=[seeded.registry.pk]),
        reverse("imagesync:project-select"),
        reverse("imagesync:task-cancel", args=[seeded.task.pk]),
        reverse("imagesync:task-retry", args=[seeded.task.pk]),
    ]


@FUZZ
@given(data=form_fields, fragment=st.booleans(), which=st.integers(min_value=0, max_value=5))
def test_any_form_post_gets_a_clear_answer(world, data, fragment, which):
    seeded, client = world
    url = form_urls(seeded)[which]
    headers = {"HX-Request": "true"} if fragment else {}
    response = client.post(url, data, headers=headers)
    assert_clear_answer(response, f"POST {url} {data!r}")
    if response.status_code == 302:
        location = response["Location"]
        assert location.startswith("/") and not location.startswith("//"), location


@FUZZ
@given(
    sync_type=st.sampled_from(["all", "types", "repositories"]) | nasty_text,
    types=st.lists(st.sampled_from(["other", "harbor", "jfrog", "swr_private"]) | nasty_text),
    repositories=st.lists(st.integers(min_value=-5, max_value=10**40).map(str) | nasty_text),
)
def test_the_sync_panel_refuses_nonsense_inline(world, sync_type, types, repositories):
    seeded, client = world
    response = client.post(
        reverse("imagesync:sync-panel"),
        {"sync_type": sync_type, "types": types, "repositories": repositories},
        headers={"HX-Request": "true"},
    )
    assert_clear_answer(response, "sync panel")


@FUZZ
@given(
    options=nasty_text | st.sampled_from(["{}", "[]", "null", '{"a": 1}', "{", '"x"', "1"]),
    endpoint=nasty_text | st.sampled_from(["https://ok.example.com", "ftp://x", "http://[::1"]),
    kind=st.sampled_from(["other", "harbor", "jfrog", "swr"]) | nasty_text,
)
def test_the_registry_form_refuses_nonsense_with_a_message(world, options, endpoint, kind):
    seeded, client = world
    response = client.post(
        reverse("imagesync:registry-create"),
        {"name": "fuzzed", "kind": kind, "endpoint": endpoint, "options": options},
    )
    assert_clear_answer(response, "registry form")
    if response.status_code == 200:
        assert "error" in body_of(response).lower()


@settings(FUZZ, max_examples=20)  # each attempt runs the password hasher: slow on purpose
@given(
    username=nasty_text,
    password=nasty_text,
    next_url=nasty_text,
)
@example(username="u" * 300, password="x", next_url="//evil.example.com/")
@pytest.mark.filterwarnings("ignore::django.core.cache.CacheKeyWarning")
def test_the_login_form_never_fails_on_odd_input(db, username, password, next_url):
    cache.clear()
    client = Client()
    response = client.post(
        reverse("login") + "?next=" + quote(next_url, safe=""),
        {"username": username, "password": password},
    )
    assert_clear_answer(response, "login")
    assert response.status_code in (200, 403, 429)


def test_a_username_with_a_nul_byte_is_refused_not_a_server_error(db):
    cache.clear()
    client = Client()
    response = client.post(reverse("login"), {"username": "a\x00b", "password": "x"})
    assert response.status_code in (200, 429)
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("value", ["a\x00b", "9" * 40, "1e309"])
def test_every_filter_takes_the_nastiest_values_without_a_server_error(world, value):
    """Deterministic companion of the fuzzing: every known filter name with the values most
    likely to break a database (NUL bytes, out-of-range numbers) on every list."""
    seeded, client = world
    for url in list_urls(seeded):
        for name in REAL_NAMES:
            response = client.get(url, {name: value})
            assert_clear_answer(response, f"GET {url}?{name}={value!r}")


@pytest.mark.parametrize("value", ["²", "9" * 40, "-1", "0x10"])
def test_repository_ids_that_are_not_row_ids_are_ignored_by_the_picker(world, value):
    seeded, client = world
    for url in (reverse("imagesync:sync-panel"), reverse("imagesync:sync-repositories")):
        assert_clear_answer(client.get(url, {"repositories": value}), f"GET {url}")
    response = client.post(
        reverse("imagesync:sync-panel"), {"sync_type": "repositories", "repositories": value}
    )
    assert_clear_answer(response, "POST sync-panel")
