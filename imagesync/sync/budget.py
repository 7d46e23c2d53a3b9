"""How many images the repository listings of one worker process hold at once.

A repository's listing is held whole from its first tag to the end of its reconcile (a
reconcile needs the complete listing to know what was removed), together with the tags the
inventory stored for it and the rows it reads back: 1-1.5 KB an image. Each of
the SYNC_WORKERS threads syncs one repository, so eight repositories of 100,000 tags would be
held at once, 800,000 images, whatever the registry's total. The budget bounds that to
SYNC_LISTING_BUDGET images per process:

* a repository's sync **holds** as many images as its listing is expected to have (the image
  count the inventory stored for it; 0 for a new repository) before it reads anything, and
  waits, first come first served, while the others hold too many to add it;
* a client that learns the real number before it builds the listing says so
  (`registries.base.listing_size`: the OCI client after the tag list, Harbor and SWR after
  the first page, which carries the total) and the hold
  **grows** to it, waiting while that would go over the budget. Holds that wait to grow hold
  nothing that would let another go on, so when every other hold waits to grow, the oldest
  goes on over the budget: some repository always makes progress, nothing waits forever, and
  the budget is exceeded only by one listing while the others wait with their estimates
  (nothing, in a first sync);
* the hold is **released** when the repository's result is recorded.

A repository larger than the whole budget is synced alone. Repositories of ordinary size never
wait: 8 threads x 10,000 tags is under the default (100,000). A sync of a few huge repositories
lists fewer of them at once, each with all of its connections (the OCI client spreads a
repository's requests over them), so it takes a little longer (one repository at a time
instead of eight: 1.2x at 20 ms each way, bench/README.md) and its memory stays bounded
(1,000,000 images in 10 repositories: 268 MB instead of 825).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque

from django.conf import settings


class ListingBudget:
    """Images held by the listings of this process (see the module docstring)."""

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._changed = threading.Condition()
        self._held: dict[int, int] = {}  # hold -> images, oldest hold first
        self._total = 0
        self._growing: set[int] = set()  # holds waiting in `_grow`
        self._starting: deque[int] = deque()  # holds waiting to begin, in arrival order
        self._numbers = itertools.count()
        self.most_held = 0  # the most images held at once (benchmarks and tests read it)
        self.waited = 0  # how many times a hold had to wait

    @property
    def held(self) -> int:
        with self._changed:
            return self._total

    def hold(self, images: int) -> Hold:
        """Begin holding `images` (an estimate: `Hold.grow` raises it); waits for room."""
        images = max(0, int(images or 0))
        with self._changed:
            number = next(self._numbers)
            self._starting.append(number)
            waited = False
            while self._starting[0] != number or not self._fits(images):
                waited = True
                self._changed.wait()
            self._starting.popleft()
            self._held[number] = images
            self._add(images, waited)
            self._changed.notify_all()  # the next hold to begin may fit as well
        return Hold(self, number)

    def _grow(self, number: int, images: int) -> None:
        with self._changed:
            more = images - self._held[number]
            if more <= 0:
                return
            waited = False
            self._growing.add(number)
            self._changed.notify_all()  # the oldest hold may be waiting for this
            try:
                while not (self._fits(more) or self._only_one_can_go_on(number)):
                    waited = True
                    self._changed.wait()
            finally:
                self._growing.discard(number)
            self._held[number] = images
            self._add(more, waited)

    def _release(self, number: int) -> None:
        with self._changed:
            self._total -= self._held.pop(number)
            self._changed.notify_all()

    def _only_one_can_go_on(self, number: int) -> bool:
        """Whether `number` is the oldest hold and every other one waits to grow."""
        return next(iter(self._held)) == number and len(self._growing) == len(self._held)

    def _fits(self, more: int) -> bool:
        return self._total == 0 or self._total + more <= self.limit

    def _add(self, more: int, waited: bool) -> None:
        self._total += more
        self.most_held = max(self.most_held, self._total)
        self.waited += waited


class Hold:
    """One repository's share of the budget: a context manager that releases it."""

    def __init__(self, budget: ListingBudget, number: int):
        self._budget, self._number = budget, number
        self._released = False

    def grow(self, images: int) -> None:
        """The listing will hold `images`: raise the hold to that (never lowers it)."""
        if not self._released:
            self._budget._grow(self._number, max(0, int(images)))

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._release(self._number)

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_lock = threading.Lock()
_budget: ListingBudget | None = None


def listing_budget() -> ListingBudget:
    """This process's budget, of SYNC_LISTING_BUDGET images (a new one if that changed)."""
    global _budget
    limit = max(1, int(settings.SYNC_LISTING_BUDGET))
    with _lock:
        if _budget is None or _budget.limit != limit:
            _budget = ListingBudget(limit)
        return _budget
