"""Property: whatever happens in the registries -- pushes, re-pushes, deleted tags, emptied
repositories, syncs of some repositories, failed listings -- the inventory as of a moment
(`export_images --as-of`) is exactly the inventory export that was taken at that moment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.filters import complete_history_start
from imagesync.models import Project, Registry
from tests.support.factories import make_repository
from tests.support.fakes import image
from tests.support.history_steps import export, fail_at, sync_at

pytestmark = pytest.mark.django_db

REPOSITORIES = ("team/api", "team/web", "lib/base")
TAGS = ("1.0", "1.1", "latest", "dev")

push = st.tuples(st.just("push"), st.integers(0, 2), st.sampled_from(TAGS))
delete = st.tuples(st.just("delete"), st.integers(0, 2), st.sampled_from(TAGS))
empty = st.tuples(st.just("empty"), st.integers(0, 2), st.none())
sync = st.tuples(st.just("sync"), st.sets(st.integers(0, 2), min_size=1), st.none())
failed = st.tuples(st.just("fail"), st.integers(0, 2), st.none())
steps = st.lists(st.one_of(push, delete, empty, sync, sync, failed), min_size=1, max_size=14)


def _apply(step, registry_state: dict[int, dict[str, str]], counter: list[int]) -> None:
    kind, where, tag = step
    if kind == "push":  # a new push, or a re-push to a new digest
        counter[0] += 1
        registry_state[where][tag] = f"{REPOSITORIES[where]}:{tag}:{counter[0]}"
    elif kind == "delete":
        registry_state[where].pop(tag, None)
    elif kind == "empty":
        registry_state[where].clear()


def _listing(tags: dict[str, str]) -> list:
    # Later pushes are newer in the registry, so "latest version" moves with them.
    return [
        image(tag, content, minutes=int(content.rsplit(":", 1)[1]))
        for tag, content in sorted(tags.items())
    ]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_as_of_any_moment_is_the_export_taken_then(steps):
    with transaction.atomic():
        project = Project.objects.create(name="property")
        registry = Registry.objects.create(
            project=project, kind="other", name="reg", endpoint="https://r.invalid"
        )
        repositories = [
            make_repository(registry, path, type_)
            for path, type_ in zip(REPOSITORIES, ("other", "harbor", "jfrog"), strict=True)
        ]
        state: dict[int, dict[str, str]] = {0: {}, 1: {}, 2: {}}
        counter = [0]
        moment = timezone.now().replace(microsecond=0) - timedelta(days=1)
        taken: list[tuple] = []  # (moment, export then)
        for step in steps:
            moment += timedelta(minutes=1)
            if step[0] == "sync":
                for where in sorted(step[1]):
                    sync_at(repositories[where], _listing(state[where]), moment)
            elif step[0] == "fail":
                fail_at(repositories[step[1]], moment)
            else:
                _apply(step, state, counter)
            taken.append((moment, export(project)))
        start = complete_history_start(project)
        for when, expected in taken:
            for probe in (when, when + timedelta(seconds=30)):  # nothing changes in between
                if start is None or probe < start:
                    # Before the first sync that stored a tag the console knew nothing, and
                    # says so rather than showing an empty inventory.
                    assert expected.count("\n") == 1  # the header only
                    with pytest.raises(CommandError, match="history"):
                        export(project, "--as-of", probe.isoformat())
                    continue
                assert export(project, "--as-of", probe.isoformat()) == expected
        transaction.set_rollback(True)
