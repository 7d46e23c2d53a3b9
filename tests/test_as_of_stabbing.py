"""The inventory as of a moment through the relational interval tree (imagesync.history's
fork, stabbing_parts): for intervals of any lengths, closed at any instants (to the
microsecond, across second and power-of-two boundaries, some without a fork), Image View's
as-of rows and type counts are exactly `ImageInterval.objects.at(moment)`, the plain
`valid_from <= moment < valid_to` definition, at every moment probed, the edges included."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.filters import ImageAsOfFilter, last_synced_as_of
from imagesync.history import (
    ImageInterval,
    RepositoryName,
    _at_second,
    _second,
    digests_containing,
    fork_of,
    fork_when_closed,
    has_odd_digests,
    record_names,
    stabbing_nodes,
)
from imagesync.models import Project, Registry, Repository, SyncTask, SyncTaskRepository
from tests.support.factories import make_repository, make_result

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


def _open_interval(repository, names: bool = True, **fields) -> ImageInterval:
    """An open interval of `repository`, with the copies of its names an interval keeps,
    noted as HistoryRecorder notes them (unless `names` is false: as intervals recorded
    before the names were)."""
    registry = repository.registry
    if names:
        record_names(repository)
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
    max_examples=20,  # ~2 s each: 40 took CI over a minute per run
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
                names=number % 3 != 2,  # the third repository's names are not listed
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
    extras = ({}, {"size_max": 25}, {"type": ["harbor"]}, {"tag": "t3"})
    for number, windows in enumerate(((5, 40), (1000,), (3,))):
        monkeypatch.setattr(ImageAsOfFilter, "WINDOWS", windows)
        for step, moment in enumerate(moments[1:]):
            turn = number + step  # two filters per moment, in turn: each window meets all four
            for extra in (extras[turn % 4], extras[(turn + 2) % 4]):
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


def _synced_history(seed: int, complete: bool = False) -> tuple[Project, list]:
    """`_history`, with sync results: each repository finished (or failed) at random times,
    one never synced, and a fourth repository whose connection went (its intervals and
    results keep only its names). `complete`: no removed connection, and every repository's
    names listed (no interval needs reading for them)."""
    import random

    rng = random.Random(seed)
    project, moments = _history(f"synced-{seed}", seed)
    registry = Registry.objects.get(project=project)
    base = moments[0]
    if complete:
        for repository in Repository.objects.filter(registry=registry):
            record_names(repository)
    else:
        gone = make_repository(registry, "gone/app", "harbor")
        for number in range(6):
            _open_interval(gone, tag=f"g{number}", digest=f"sha256:{number:064x}", valid_from=base)
    repositories = list(Repository.objects.filter(registry=registry).order_by("pk"))
    for repository in repositories[1:]:  # the first is never synced
        for _ in range(rng.randint(1, 6)):
            task = SyncTask.objects.create(project=project, status="succeeded")
            finished = base + timedelta(seconds=rng.randrange(4 * 86400))
            make_result(
                task,
                repository,
                rng.choice(["finished", "finished", "failed"]),
                finished_at=finished,
            )
    if not complete:
        gone.delete()  # as when its connection is removed: the links are cleared
        assert ImageInterval.objects.filter(project=project, repository__isnull=True).count() == 6
    return project, moments


@pytest.mark.parametrize(
    "seed,complete,together,group_rows",
    [(1, False, False, 1000), (2, False, False, 1000), (5, True, False, 1000), (5, True, False, 3)]
    + [(6, True, True, 1000), (6, True, True, 3)],
)
def test_last_synced_sorts_and_filters_read_from_the_repository_are_the_plain_definition(
    seed, complete, together, group_rows, monkeypatch
):
    """Sort and filter by "Last synced" as of a moment (each repository's value read once,
    `last_synced_by_repository`) give exactly the rows and order of at() with the per-row
    `last_synced_as_of`, the database's own NULL order included, on every page: the pages of
    a sort by it read from the repositories that hold them, a large group of repositories
    (`group_rows`) from the moment's parts, and when every synced repository finished at the
    same time (`together`: one sync stored them all) in the rest of the sort's order."""
    monkeypatch.setattr(ImageAsOfFilter, "GROUP_WINDOW_ROWS", group_rows)
    project, moments = _synced_history(seed, complete)
    if together:
        never = Repository.objects.filter(registry__project=project).order_by("pk").first()
        make_result(SyncTask.objects.filter(project=project).first(), never, "finished")
        results = SyncTaskRepository.objects.filter(task__project=project)
        results.update(finished_at=moments[0] + timedelta(hours=1))
    queryset = ImageInterval.objects.filter(project_id__in=[project.pk])
    for moment in moments[1:]:
        plain = queryset.at(moment).annotate(synced=last_synced_as_of(moment))
        filterset = ImageAsOfFilter({"as_of": moment.isoformat()}, queryset=queryset)
        filterset.project = project
        assert not filterset.invalid
        # Without a removed connection, a bound is a list of repositories.
        assert (filterset.repositories_synced("gte", moment) is not None) == complete
        bounds = sorted(
            {value for value in plain.values_list("synced", flat=True) if value is not None}
        )
        bound = bounds[len(bounds) // 2] if bounds else moment
        cases = [
            ({"ordering": "-last_synced"}, plain.order_by("-synced", "-id")),
            ({"ordering": "last_synced,tag"}, plain.order_by("synced", "tag", "id")),
            (
                {"ordering": "tag", "synced_after": bound.isoformat()},
                plain.filter(synced__gte=bound).order_by("tag", "id"),
            ),
            # Most repositories pass (those that do not are listed), or all of them.
            *(
                (
                    {"synced_after": low.isoformat()},
                    plain.filter(synced__gte=low).order_by("-registry_updated_at", "-id"),
                )
                for low in bounds[:2]
            ),
            (
                {"synced_before": bound.isoformat(), "type": ["harbor"]},
                plain.filter(synced__lt=bound, repository_type="harbor").order_by(
                    "-registry_updated_at", "-id"
                ),
            ),
        ]
        for params, expected_rows in cases:
            filterset = ImageAsOfFilter(
                {"as_of": moment.isoformat(), **params}, queryset=queryset, project=project
            )
            assert not filterset.invalid, filterset.errors
            expected = list(expected_rows.values_list("pk", flat=True))
            assert list(filterset.rows.values_list("pk", flat=True)) == expected, params
            assert sum(filterset.type_counts().values()) == (
                len(expected) if "type" not in params else plain.filter(synced__lt=bound).count()
            )
            # Sorted by it, without a removed connection, the pages are read from the
            # repositories that hold them, in the order of their values.
            by_repository = complete and "last_synced" in params.get("ordering", "")
            assert (filterset._synced_order() is not None) == by_repository
            if by_repository and together:  # one group: every repository synced at once
                assert len(filterset._repository_groups()) == 1
            for start, stop in ((0, 5), (3, 9), (0, 200), (20, 40), (50, 60), (95, 120)):
                ids = filterset.page_ids(start, stop)
                assert ids is not None or not by_repository
                if ids is not None:
                    assert ids == expected[start:stop], (params, start)


def _search(value: str):
    return (
        Q(repository_path__icontains=value) | Q(tag__icontains=value) | Q(digest__icontains=value)
    )


@pytest.mark.parametrize(
    "budget,complete,odd",
    [(5000, False, False), (3, False, False), (5000, True, False), (3, True, False)]
    + [(5000, False, True), (3, True, True)],
)
def test_filters_that_read_rows_give_the_plain_rows_counts_and_pages(
    budget, complete, odd, monkeypatch
):
    """Search, namespace and image name (read from the rows, once for both the counts and the
    page while the matches are few, `_matches`; past the budget, the parts as before): the
    rows, type counts and every page are those of at() with the plain lookups, whatever the
    sort, for names an interval kept after its repository was renamed too. A search is
    tested in the as-of indexes (no row is read but a removed connection's); one that no
    `sha256:` digest can contain tests no digest unless the history holds one of another
    form (`odd`), which it then finds."""
    monkeypatch.setattr(ImageAsOfFilter, "MATCHES_BUDGET", budget)
    project, moments = _synced_history(3, complete)
    if odd:
        some = Repository.objects.filter(registry__project=project).order_by("pk").last()
        _open_interval(some, tag="odd", digest="blake3:" + "0a" * 32, valid_from=moments[1])
    renamed = Repository.objects.filter(registry__project=project).order_by("pk").first()
    renamed.namespace, renamed.name = "renamed", "other-name"
    renamed.save()
    later = moments[-1] - timedelta(hours=1)
    for number in range(4):
        _open_interval(renamed, tag=f"r{number}", digest=f"sha256:{number:064x}", valid_from=later)
    if complete:  # the names noted now: the renamed repository's old names are not read
        assert RepositoryName.objects.filter(repository=renamed).count() == 2
    queryset = ImageInterval.objects.filter(project_id__in=[project.pk])
    cases = [
        ({"q": "app-1"}, _search("app-1")),
        ({"q": "T3"}, _search("T3")),
        ({"q": "0000000000000000000000001"}, _search("0000000000000000000000001")),
        ({"namespace": "team"}, Q(namespace__icontains="team")),
        ({"namespace": "renamed"}, Q(namespace__icontains="renamed")),
        ({"name": "other"}, Q(name__icontains="other")),
        ({"name": "APP-1"}, Q(name__icontains="APP-1")),
        ({"namespace": "nowhere"}, Q(namespace__icontains="nowhere")),
        ({"name": "app", "type": ["harbor"]}, Q(name__icontains="app", repository_type="harbor")),
        ({"q": "gone", "size_max": 25}, _search("gone") & Q(size__lte=25)),
        ({"q": "BLAKE3"}, _search("BLAKE3")),
        ({"q": "a256:0", "type": ["harbor"]}, _search("a256:0") & Q(repository_type="harbor")),
        ({"q": "sha", "size_max": 25}, _search("sha") & Q(size__lte=25)),
        ({"q": "SHA256:000"}, _search("SHA256:000")),
    ]
    sorts = ("-updated", "name", "tag", "-last_synced", "namespace,-size", "-digest")
    for step, moment in enumerate(moments[2:]):
        plain = queryset.at(moment).annotate(synced_as_of=last_synced_as_of(moment))
        for number, (params, condition) in enumerate(cases):
            matching = plain.filter(condition)
            without_type = "type" not in params
            # Two sorts per case and moment, in turn: over the six moments each case meets
            # every sort (every sort at every moment took CI over a minute per parameter set).
            turn = number + step
            for sort in (sorts[turn % 6], sorts[(turn + 3) % 6]):
                filterset = ImageAsOfFilter(
                    {"as_of": moment.isoformat(), "ordering": sort, **params},
                    queryset=queryset,
                    project=project,
                )
                assert not filterset.invalid, filterset.errors
                fields = filterset.table.order_by(filterset.sort)
                expected = list(matching.order_by(*fields).values_list("pk", flat=True))
                assert list(filterset.rows.values_list("pk", flat=True)) == expected
                if params.get("q") in ("app-1", "T3", "BLAKE3") and "digest" not in sort:
                    where = str(filterset.rows.query).split(" WHERE ", 1)[1]
                    reads_digest = "digest" in where
                    assert reads_digest == odd, params
                if "q" in params:  # only a removed connection's rows are read, for their path
                    reads = filterset.shared.get("reads rows", False)
                    assert not reads or filterset.shared["removed"], params
                counts = filterset.type_counts()
                if without_type:
                    assert sum(counts.values()) == len(expected), params
                    assert (
                        counts.get("harbor", 0) == matching.filter(repository_type="harbor").count()
                    )
                for start, stop in ((0, 5), (3, 9), (0, 200), (20, 40)):
                    ids = filterset.page_ids(start, stop)
                    if ids is not None:
                        assert ids == expected[start:stop], (params, sort, start)


def test_a_sort_by_the_repositorys_names_pages_through_its_repositories_exactly():
    """Sorted by namespace, image name or path while every repository has one listed name:
    each page, read from the repositories that hold it (`_repository_order_ids`), is that page of
    at() in the plain order, filters and types included; two repositories with the same path
    and name (two registries) interleave by tag as the plain order has them."""
    project, moments = _synced_history(4, complete=True)
    twin_registry = Registry.objects.create(
        project=project, kind="other", name="twin", endpoint="https://t.invalid"
    )
    twin = make_repository(twin_registry, "team/app-1", "harbor")
    for number in range(30):
        _open_interval(
            twin,
            tag=f"t{number % 8}-{number}",
            digest=f"sha256:{number:064x}",
            valid_from=moments[1],
            size=number,
        )
    queryset = ImageInterval.objects.filter(project_id__in=[project.pk])
    extras = ({}, {"type": ["harbor"]}, {"size_max": 25}, {"tag": "t3"})
    sorts = ("name", "-name", "namespace", "repository", "name,-size", "-repository")
    for step, moment in enumerate(moments[1:]):
        plain = queryset.at(moment)
        for number, sort in enumerate(sorts):
            turn = number + step  # two filters per sort and moment, in turn: each sort meets all
            for extra in (extras[turn % 4], extras[(turn + 2) % 4]):
                params = {"as_of": moment.isoformat(), "ordering": sort, **extra}
                filterset = ImageAsOfFilter(params, queryset=queryset, project=project)
                assert not filterset.invalid, filterset.errors
                assert filterset._names_order() is not None
                fields = filterset.table.order_by(filterset.sort)
                matching = plain.filter(**_plain(extra))
                expected = list(matching.order_by(*fields).values_list("pk", flat=True))
                assert list(filterset.rows.values_list("pk", flat=True)) == expected
                counts = filterset.type_counts()
                without_type = plain.filter(
                    **_plain({k: v for k, v in extra.items() if k != "type"})
                )
                for type_ in TYPES:
                    assert (
                        counts.get(type_, 0) == without_type.filter(repository_type=type_).count()
                    )
                for start, stop in ((0, 5), (3, 9), (0, 200), (20, 40), (50, 60), (95, 120)):
                    assert filterset.page_ids(start, stop) == expected[start:stop], (
                        sort,
                        extra,
                        start,
                    )


@pytest.mark.parametrize(
    "text,which",
    [
        ("sha", "all"),
        ("A256:", "all"),
        (":", "all"),
        ("0a1B", "some"),
        ("256:ab", "some"),
        (":0", "some"),
        ("sha256:" + "f" * 64, "some"),
        ("f" * 65, "none"),
        ("app-1", "none"),
        ("v1.2", "none"),
        ("team/api", "none"),
        ("sha512:ab", "none"),
        ("ab:cd", "none"),
        ("ſha", "some"),  # PostgreSQL's UPPER() makes it "SHA"
    ],
)
def test_which_standard_digests_a_search_text_can_match(text, which):
    """A search that no `sha256:<hex>` digest can contain is told apart from one that every
    digest or some contain, as `icontains` compares (case aside)."""
    assert digests_containing(text) == which
    standard = "sha256:" + "0a1b" * 15 + "f256"
    if which == "all":
        assert text.lower() in standard
    if which == "none":
        assert text.lower() not in standard


def test_a_digest_of_another_form_is_found_by_the_partial_index():
    """`has_odd_digests` answers from the partial index of migration 0025: false while every
    digest of the project's history is `sha256:` and 64 lowercase hex digits."""
    project, _moments = _history("odd-digests", 4)
    assert not has_odd_digests(project.pk)
    repository = Repository.objects.filter(registry__project=project).first()
    for odd in ("sha256:" + "AB" * 32, "sha256:" + "ab" * 31, "blake3:" + "ab" * 32):
        interval = _open_interval(repository, tag="odd", digest=odd, valid_from=timezone.now())
        assert has_odd_digests(project.pk), odd
        interval.delete()
    assert not has_odd_digests(project.pk)
