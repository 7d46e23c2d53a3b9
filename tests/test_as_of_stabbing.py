"""The inventory as of a moment through the relational interval tree (imagesync.history's
fork, stabbing_parts): for intervals of any lengths, closed at any instants (to the
microsecond, across second and power-of-two boundaries, some without a fork), Image View's
as-of rows and type counts are exactly `ImageInterval.objects.at(moment)`, the plain
`valid_from <= moment < valid_to` definition, at every moment probed, the edges included."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.filters import ImageAsOfFilter
from imagesync.history import (
    ImageInterval,
    _at_second,
    _second,
    fork_of,
    fork_when_closed,
    stabbing_nodes,
)
from imagesync.models import Project, Registry
from tests.support.factories import make_repository

pytestmark = pytest.mark.django_db

TYPES = ("other", "harbor")
MICROSECONDS = st.integers(0, 3 * 86400 * 10**6)
LENGTHS = st.one_of(
    st.just(0),
    st.integers(1, 10**6),  # within a second or across one
    st.integers(1, 5 * 10**6),
    st.integers(1, 3 * 86400 * 10**6),
)
# (start, length, None: still open / True: closed with its fork / False: closed without one)
INTERVALS = st.lists(
    st.tuples(MICROSECONDS, LENGTHS, st.sampled_from([None, True, True, False])),
    min_size=1,
    max_size=12,
)


def _open_interval(repository, **fields) -> ImageInterval:
    """An open interval of `repository`, with the copies of its names an interval keeps."""
    registry = repository.registry
    return ImageInterval.objects.create(
        project=registry.project,
        registry=registry,
        repository=repository,
        registry_name=registry.name,
        repository_type=repository.type,
        repository_path=repository.path,
        namespace=repository.namespace,
        name=repository.name,
        **fields,
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(intervals=INTERVALS, probes=st.lists(MICROSECONDS, max_size=6))
def test_the_parts_of_a_moment_are_exactly_the_intervals_that_hold_it(intervals, probes):
    with transaction.atomic():
        project = Project.objects.create(name="stabbing")
        registry = Registry.objects.create(
            project=project, kind="other", name="reg", endpoint="https://r.invalid"
        )
        repositories = [make_repository(registry, f"team/app-{n}", TYPES[n]) for n in range(2)]
        base = timezone.now().replace(microsecond=0) - timedelta(days=7)
        edges = []
        for number, (start, length, closed) in enumerate(intervals):
            valid_from = base + timedelta(microseconds=start)
            valid_to = valid_from + timedelta(microseconds=length)
            repository = repositories[number % 2]
            interval = _open_interval(
                repository, tag=f"t{number}", digest=f"sha256:{number:064x}", valid_from=valid_from
            )
            edges += [valid_from, valid_from - timedelta(microseconds=1)]
            if closed is None:
                continue
            # As HistoryRecorder closes an interval: the fork is computed by the database.
            fork = fork_when_closed(valid_to) if closed else None
            ImageInterval.objects.filter(pk=interval.pk).update(valid_to=valid_to, fork=fork)
            if closed:
                interval.refresh_from_db()
                assert interval.fork == fork_of(valid_from, valid_to)
            edges += [valid_to, valid_to - timedelta(microseconds=1)]
        moments = edges + [base + timedelta(microseconds=probe) for probe in probes]
        queryset = ImageInterval.objects.filter(project_id__in=[project.pk])
        first = base + timedelta(microseconds=min(start for start, _, _ in intervals))
        for moment in moments:
            if moment < first:  # before the history starts: refused (tests/test_as_of.py)
                continue
            expected = set(queryset.at(moment).values_list("pk", flat=True))
            filterset = ImageAsOfFilter(
                {"as_of": moment.isoformat()}, queryset=queryset, project=project
            )
            assert not filterset.invalid, filterset.errors
            assert set(filterset.rows.values_list("pk", flat=True)) == expected, moment
            # SQLite's other plan (walking the sort's index): the same rows.
            walk = ImageAsOfFilter.WALK_OPENED_SINCE
            ImageAsOfFilter.WALK_OPENED_SINCE = 0 if walk else 10**9
            try:
                other = ImageAsOfFilter(
                    {"as_of": moment.isoformat()}, queryset=queryset, project=project
                )
                assert set(other.rows.values_list("pk", flat=True)) == expected, moment
            finally:
                ImageAsOfFilter.WALK_OPENED_SINCE = walk
            counts = filterset.type_counts()
            assert sum(counts.values()) == len(expected)
            harbor = queryset.at(moment).filter(repository_type="harbor").count()
            assert counts.get("harbor", 0) == harbor
        transaction.set_rollback(True)


@given(
    low=st.integers(1, 2**34),
    length=st.integers(0, 2**34),
    probe=st.integers(0, 2**35),
)
def test_the_fork_lies_inside_the_interval_and_on_the_path_of_each_of_its_seconds(
    low, length, probe
):
    high = low + length
    fork = fork_of(_at_second(low), _at_second(high))
    assert low <= fork <= high
    # Every second the interval holds (its ends and the probe, when inside) has the fork on
    # its path: the nodes the as-of query reads.
    for second in (low, high, probe):
        if low <= second <= high:
            after, before = stabbing_nodes(_at_second(second))
            assert fork in after or fork in before
            assert (fork in after) == (fork > second)


def test_seconds_are_whole_utc_seconds():
    moment = timezone.now()
    assert _at_second(_second(moment)) <= moment < _at_second(_second(moment) + 1)


def _history(project_name: str, seed: int) -> tuple[Project, list]:
    """Three repositories, 60 tags with up to 4 states each, closed at random instants."""
    import random

    rng = random.Random(seed)
    project = Project.objects.create(name=project_name)
    registry = Registry.objects.create(
        project=project, kind="other", name="reg", endpoint="https://r.invalid"
    )
    repositories = [make_repository(registry, f"team/app-{n}", TYPES[n % 2]) for n in range(3)]
    base = timezone.now().replace(microsecond=0) - timedelta(days=7)
    for number in range(60):
        repository = repositories[number % 3]
        moment = base + timedelta(seconds=rng.randrange(86400))
        for state in range(rng.randint(1, 4)):
            interval = _open_interval(
                repository,
                tag=f"t{rng.randrange(8)}-{number}",
                digest=f"sha256:{rng.randrange(16**6):06x}{number:058x}",
                size=rng.choice([10, 20, 30, rng.randrange(1000)]),
                valid_from=moment,
            )
            moment += timedelta(seconds=rng.randrange(1, 86400))
            if state < 3 and rng.random() < 0.7:
                ImageInterval.objects.filter(pk=interval.pk).update(
                    valid_to=moment, fork=fork_when_closed(moment)
                )
            else:
                break
    return project, [base + timedelta(hours=h) for h in range(0, 96, 13)]


@pytest.mark.parametrize(
    "sort", ["tag", "-tag", "size", "-size", "digest", "-digest", "-updated", "updated"]
)
def test_a_page_found_by_a_window_of_the_sorts_index_is_that_page_of_the_rows(sort, monkeypatch):
    """ImageAsOfFilter.page_ids (a bounded walk of the sort's index, or the moment's parts
    read with the sort's columns) gives exactly the slice of the full plan's rows, with
    windows small enough to need the larger one or to give up."""
    project, moments = _history("window", seed=len(sort) + sort.startswith("-"))
    queryset = ImageInterval.objects.filter(project_id__in=[project.pk])
    for windows in ((5, 40), (1000,), (3,)):
        monkeypatch.setattr(ImageAsOfFilter, "WINDOWS", windows)
        for moment in moments[1:]:
            for extra in ({}, {"size_max": 25}, {"type": ["harbor"]}, {"tag": "t3"}):
                params = {"as_of": moment.isoformat(), "ordering": sort, **extra}
                filterset = ImageAsOfFilter(params, queryset=queryset, project=project)
                assert not filterset.invalid, filterset.errors
                expected = list(filterset.rows.values_list("pk", flat=True))
                assert set(expected) == set(
                    queryset.at(moment).filter(**_plain(extra)).values_list("pk", flat=True)
                )
                for start, stop in ((0, 5), (3, 9), (0, 200), (20, 40)):
                    ids = filterset.page_ids(start, stop)
                    if ids is not None:
                        assert ids == expected[start:stop], (windows, moment, extra, start)
                    else:
                        assert windows != (1000,)  # the whole history fits: always answered
                        assert sort.lstrip("-") == "digest"  # the others' columns: covered


def _plain(extra: dict) -> dict:
    plain = {"size_max": "size__lte", "type": "repository_type__in", "tag": "tag__icontains"}
    return {plain[name]: value for name, value in extra.items()}


def test_a_digest_prefix_or_a_repository_reads_its_own_rows_and_counts_them_exactly():
    project, moments = _history("narrow", seed=5)
    queryset = ImageInterval.objects.filter(project_id__in=[project.pk])
    some = queryset.order_by("pk")[7]
    for moment in moments[1:]:
        for params, plain in (
            ({"digest": some.digest[7:11]}, {"digest__startswith": some.digest[:11]}),
            ({"digest": some.digest}, {"digest": some.digest}),
            ({"repository": some.repository_id}, {"repository_id": some.repository_id}),
            (
                {"repository": some.repository_id, "type": ["harbor"], "size_min": 15},
                {"repository_id": some.repository_id, "repository_type": "harbor", "size__gte": 15},
            ),
        ):
            filterset = ImageAsOfFilter(
                {"as_of": moment.isoformat(), **params}, queryset=queryset, project=project
            )
            assert filterset._narrow_lead()
            expected = set(queryset.at(moment).filter(**plain).values_list("pk", flat=True))
            assert set(filterset.rows.values_list("pk", flat=True)) == expected
            counts = filterset.type_counts()
            without_type = {k: v for k, v in plain.items() if k != "repository_type"}
            for type_ in TYPES:
                assert counts.get(type_, 0) == (
                    queryset.at(moment).filter(repository_type=type_, **without_type).count()
                )
