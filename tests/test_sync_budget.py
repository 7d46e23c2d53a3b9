"""The listing budget: how many images the repository listings of one worker process hold at
once (imagesync.sync.budget), so that a sync of a few huge repositories stays within a bounded
memory, and never waits forever."""

from __future__ import annotations

import random
import threading
import time

import pytest

from imagesync.registries import base
from imagesync.sync.budget import ListingBudget, listing_budget

WAIT = 0.2  # how long a hold that must wait is watched not to begin


def begin(budget: ListingBudget, images: int) -> tuple[threading.Event, list]:
    """Hold `images` in a thread: (set once the hold began, [the hold])."""
    began, holds = threading.Event(), []

    def run() -> None:
        holds.append(budget.hold(images))
        began.set()

    threading.Thread(target=run, daemon=True).start()
    return began, holds


def grow(hold, images: int) -> threading.Event:
    grown = threading.Event()

    def run() -> None:
        hold.grow(images)
        grown.set()

    threading.Thread(target=run, daemon=True).start()
    return grown


def test_holds_within_the_budget_begin_at_once_and_one_beyond_waits_for_a_release():
    budget = ListingBudget(100)
    first, second = budget.hold(60), budget.hold(40)
    assert budget.held == 100 and budget.waited == 0
    began, holds = begin(budget, 1)
    assert not began.wait(WAIT)  # 101 would be over the budget
    first.release()
    assert began.wait(5)
    assert budget.held == 41 and budget.waited == 1
    second.release()
    holds[0].release()
    assert budget.held == 0 and budget.most_held == 100


def test_holds_begin_first_come_first_served():
    """A small hold that would fit does not overtake a large one waiting before it: a huge
    repository is not starved by small ones."""
    budget = ListingBudget(100)
    first = budget.hold(60)
    large, _ = begin(budget, 50)
    assert not large.wait(WAIT)
    small, _ = begin(budget, 10)
    assert not small.wait(WAIT)  # 70 would fit, but the large hold came first
    first.release()
    assert large.wait(5) and small.wait(5)
    assert budget.held == 60


def test_a_repository_larger_than_the_whole_budget_is_listed_alone():
    budget = ListingBudget(100)
    other = budget.hold(10)
    huge, holds = begin(budget, 500)
    assert not huge.wait(WAIT)
    other.release()
    assert huge.wait(5)
    assert budget.held == 500
    after, _ = begin(budget, 1)
    assert not after.wait(WAIT)  # nothing else while it is held
    holds[0].release()
    assert after.wait(5)


def test_a_listing_that_grows_waits_for_room_and_the_oldest_goes_on_when_all_wait():
    budget = ListingBudget(100)
    oldest, younger = budget.hold(0), budget.hold(0)  # new repositories: size unknown
    younger.grow(70)  # fits
    grown = grow(oldest, 80)
    assert not grown.wait(WAIT)  # 150 > 100, and the younger listing goes on to its release
    more = grow(younger, 150)
    assert grown.wait(5)  # both wait to grow: the oldest goes on, over the budget
    assert not more.wait(WAIT)
    assert budget.held == 150
    oldest.release()
    assert more.wait(5)  # the oldest now, and alone
    assert budget.held == 150
    younger.grow(10)  # never lowers a hold
    assert budget.held == 150


def test_a_grown_listing_waits_for_the_younger_ones_that_go_on():
    budget = ListingBudget(25)
    oldest, second, third = budget.hold(0), budget.hold(0), budget.hold(0)
    second.grow(10)
    third.grow(10)
    grown = grow(oldest, 10)
    assert not grown.wait(WAIT)  # 30 > 25 while the others are listing: wait for one
    third.release()
    assert grown.wait(5)
    assert budget.held == 20 and budget.most_held == 20


def test_releasing_twice_or_growing_a_released_hold_changes_nothing():
    budget = ListingBudget(100)
    kept, gone = budget.hold(30), budget.hold(20)
    with gone:
        pass
    gone.release()
    gone.grow(99)
    assert budget.held == 30
    kept.release()
    assert budget.held == 0


def test_many_listings_growing_at_random_all_finish_and_stay_within_the_budget():
    """No wait lasts forever, whatever the sizes: 8 threads x 40 repositories, each held from
    an estimate, grown to its real size, then released. Whenever more than the budget was
    held, one listing held anything, or all the others were waiting to grow -- checked at
    every change."""
    budget = ListingBudget(100)
    seen: list[bool] = []
    original_add = budget._add

    def watched_add(more: int, waited: bool) -> None:  # called with the budget's lock held
        original_add(more, waited)
        holding = sum(1 for images in budget._held.values() if images)
        others_wait = len(budget._growing) == len(budget._held) - 1
        seen.append(budget._total <= 100 or holding == 1 or others_wait)

    budget._add = watched_add

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            with budget.hold(rng.choice([0, 5, 30, 60])) as held:
                time.sleep(rng.random() / 1000)  # reading the stored tags
                held.grow(rng.choice([1, 20, 50, 90, 150]))
                time.sleep(rng.random() / 1000)  # listing and storing

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a listing waited forever"
    assert budget.held == 0
    assert seen and all(seen)
    assert budget.waited > 0


def test_listing_size_reaches_the_hold_of_its_own_thread_only():
    budget = ListingBudget(1000)
    hold = budget.hold(0)
    base.listing_size(500)  # outside a sync: nothing to tell
    assert budget.held == 0
    with base.sizing_listings(hold.grow):
        other = threading.Thread(target=base.listing_size, args=(900,))
        other.start()
        other.join()
        assert budget.held == 0  # another thread's listing is not this one's
        base.listing_size(300)
    assert budget.held == 300
    base.listing_size(400)  # the block ended
    assert budget.held == 300


def test_the_process_budget_follows_the_setting(settings):
    settings.SYNC_LISTING_BUDGET = 1234
    budget = listing_budget()
    assert budget.limit == 1234 and listing_budget() is budget
    settings.SYNC_LISTING_BUDGET = 99
    assert listing_budget().limit == 99


@pytest.mark.parametrize("images", [-5, None])
def test_a_nonsense_estimate_holds_nothing(images):
    budget = ListingBudget(10)
    with budget.hold(images):
        assert budget.held == 0
