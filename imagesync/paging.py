"""Paging a list of a million rows: a page's ids first, then those rows; and a total counted
only up to a bound.

Counting every row a filter matches reads all of them (a million index entries or table
rows on PostgreSQL: 100-700 ms), though a page shows twenty. So Image View and the API's
image list count at most `IMAGE_COUNT_LIMIT` (10,000) + 1 matches: up to the bound the total
is exact; past it the page says "more than 10,000" and the API's `count` is a lower bound
(`count_is_lower_bound`). The rows of a page are exact either way: a page reads one row
more than it shows, so it knows whether a next page exists; the last page (no next) knows
its total exactly (the rows before it plus its own), and a page past the end is found by an
exact count then, which only a user going past the end pays.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import Col
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
    Lookup,
    Range,
)
from django.db.models.sql.where import AND, OR, WhereNode

DEFAULT_COUNT_LIMIT = 10_000


def count_limit() -> int:
    """How many matches Image View counts at most (`IMAGE_COUNT_LIMIT`)."""
    return max(1, int(getattr(settings, "IMAGE_COUNT_LIMIT", DEFAULT_COUNT_LIMIT)))


@dataclass(frozen=True)
class MatchCount:
    """How many rows match: `value` exactly, or (`exact` False) at least `value`."""

    value: int
    exact: bool = True


def count_up_to(queryset: QuerySet, limit: int) -> MatchCount:
    """The rows of `queryset`, counted exactly up to `limit`; past it, `limit` + 1 as a lower
    bound. A LIMIT in a subquery stops the database after that many matches."""
    with first_matches():
        n = queryset.order_by()[: limit + 1].count()
    return MatchCount(n) if n <= limit else MatchCount(n, exact=False)


@contextmanager
def first_matches():
    """Around a query that reads the first matches a scan finds (a LIMIT without an order):
    on PostgreSQL, sequential scans of a large table start at its first block. PostgreSQL
    otherwise starts one where the last scan of the table stopped (`synchronize_seqscans`),
    which for the same count of 10,001 of a million images, started past the matches, took
    300 ms instead of 7 on every other run."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronize_seqscans = off")
        yield
        cursor.execute("SET LOCAL synchronize_seqscans TO DEFAULT")


# Lookups that are never true of a NULL (SQL's `NULL < x` is NULL): each is disjoint from the
# same column's `IS NULL`.
_NOT_OF_NULL = (Exact, GreaterThan, GreaterThanOrEqual, In, LessThan, LessThanOrEqual, Range)


def _null_or_compared(node) -> bool:
    """Whether `node` is `col IS NULL OR col <op> value` on one column: two disjoint sets."""
    if not isinstance(node, WhereNode) or node.connector != OR or node.negated:
        return False
    if len(node.children) != 2 or not all(isinstance(c, Lookup) for c in node.children):
        return False
    isnull = [c for c in node.children if isinstance(c, IsNull)]
    other = [c for c in node.children if isinstance(c, _NOT_OF_NULL)]
    if len(isnull) != 1 or len(other) != 1 or isnull[0].rhs is not True:
        return False
    a, b = isnull[0].lhs, other[0].lhs
    return isinstance(a, Col) and isinstance(b, Col) and (a.alias, a.target) == (b.alias, b.target)


def _split(node: WhereNode) -> tuple[WhereNode, WhereNode] | None:
    """Two copies of the condition `node`, each with the first `col IS NULL OR col < x` found
    through its AND nodes replaced by one of its two terms: the rows `node` matches are the
    rows of the two copies, and no row matches both. None when there is no such term."""
    if node.connector != AND or node.negated:
        return None
    for i, child in enumerate(node.children):
        if _null_or_compared(child):
            halves = child.children
        elif isinstance(child, WhereNode) and (parts := _split(child)) is not None:
            halves = parts
        else:
            continue
        return tuple(
            WhereNode(
                [*node.children[:i], half, *node.children[i + 1 :]], connector=AND, negated=False
            )
            for half in halves
        )
    return None


def under_condition(queryset: QuerySet, where: WhereNode) -> QuerySet:
    """`queryset` (its order, joins and the rest) with `where` as its whole condition."""
    query = queryset.query.chain()
    query.where = where
    result = queryset.model.objects.all()
    result.query = query
    return result


def count_rows(queryset: QuerySet) -> int:
    """The rows of `queryset`, counted exactly. A condition `col IS NULL OR col < x` (Image
    View's "not pulled in N days": never pulled, or last before the cutoff) is counted as its
    two disjoint halves, each one range of the column's index: SQLite otherwise counts the OR
    by collecting every matching row id to drop duplicates (`MULTI-INDEX OR`), 12 ms for 67,600
    of 100,000 images against 3 ms for the two ranges."""
    query = queryset.query
    # A slice, DISTINCT, a union or a GROUP BY counts something the halves do not add up to.
    if query.is_sliced or query.distinct or query.combinator or query.group_by:
        return queryset.count()
    queryset = queryset.order_by()
    parts = _split(queryset.query.where)
    if parts is None:
        return queryset.count()
    return sum(under_condition(queryset, where).count() for where in parts)


class IdsThenRows:
    """A queryset that a Paginator slices in two steps: first the page's ids (an index walk,
    no joins), then those rows with their repository and registry. A plain OFFSET would build
    every skipped row with its joins. A page in the second half is read from the other end
    with the order reversed, so the last page of 100,000 rows is as cheap as the first (when
    the total is known exactly).

    `count_deep_pages`: a page past the count's bound counts every row and is read from the
    nearer end on every database, not only on SQLite (BoundedPaginator) -- for a sort that no
    index walks in order, where reaching a deep page forwards sorts every row before it."""

    def __init__(
        self,
        queryset,
        count: int | None = None,
        details=None,
        page_ids=None,
        count_deep_pages: bool = False,
    ):
        self.queryset = queryset
        self.ordered = True
        self._count = count
        self.count_deep_pages = count_deep_pages
        self.details = details or (lambda rows: rows.select_related("repository__registry"))
        # page_ids(start, stop): the ids of those rows by a cheaper plan, or None (as of a
        # moment: a bounded walk of the sort's index, ImageAsOfFilter.page_ids).
        self.page_ids = page_ids

    def count(self) -> int:
        if self._count is None:
            self._count = count_rows(self.queryset)
        return self._count

    def count_up_to(self, limit: int) -> MatchCount:
        if self._count is not None:
            return MatchCount(self._count)
        return count_up_to(self.queryset, limit)

    def __len__(self) -> int:
        return self.count()

    def ids(self, start: int, stop: int) -> list[int]:
        """The ids of rows start..stop in the queryset's order, read forwards."""
        ids = self.page_ids(start, stop) if self.page_ids is not None and start < stop else None
        if ids is None:
            ids = list(self.queryset.values_list("pk", flat=True)[start:stop])
        return ids

    def rows(self, ids: list[int]) -> list:
        """The rows of `ids`, in that order, with their details."""
        rows = self.details(self.queryset.model.objects.all()).in_bulk(ids)
        return [rows[pk] for pk in ids if pk in rows]

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self[index : index + 1][0]
        start, stop = index.start or 0, index.stop
        total = self.count()
        stop = total if stop is None else min(stop, total)
        ids = self.page_ids(start, stop) if self.page_ids is not None and start < stop else None
        if ids is None and start > total // 2:
            ids = list(
                self.queryset.reverse().values_list("pk", flat=True)[total - stop : total - start]
            )
            ids.reverse()
        elif ids is None:
            ids = self.ids(start, stop)
        return self.rows(ids)


class BoundedPaginator(Paginator):
    """A Paginator whose total may be known only up to a bound (`MatchCount`), over
    `IdsThenRows`: given no total, it counts up to `count_limit()`.

    With an exact total it is Django's Paginator. Past the bound, a page reads its ids and
    one more: `num_pages` is then the page's number, plus one when that extra row exists, and
    `count` the rows known to exist (at least the bound + 1, at least the rows up to the
    page's end plus the one after it; on the last page, its exact total)."""

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, total=None):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        # SQLite counts a project's rows (COUNT(*) over a covering index) faster than it walks
        # them in a sort's order (through a join, for a repository column): for a page past
        # the bound it counts them all, as before the bound, and reads the page from the
        # nearer end. PostgreSQL walks the sort's index as fast as it counts.
        self.count_deep_pages = connection.vendor == "sqlite" or getattr(
            object_list, "count_deep_pages", False
        )
        if total is None and isinstance(object_list, IdsThenRows):
            total = object_list.count_up_to(count_limit())
        self.total = None
        if total is not None:
            self._know(total)

    def _know(self, total: MatchCount) -> None:
        """Take `total` as the rows' count (an exact one also for IdsThenRows' slicing)."""
        self.total = total
        self.__dict__["count"] = total.value
        if total.exact and isinstance(self.object_list, IdsThenRows):
            self.object_list._count = total.value

    @property
    def count_is_lower_bound(self) -> bool:
        return self.total is not None and not self.total.exact

    @property
    def more_than(self) -> int:
        """The number the page says there are more than, when the total is a lower bound."""
        return self.count - 1

    def count_exactly(self) -> None:
        """Count every row (a page past the end, or `page=last` in the API)."""
        self._know(MatchCount(self.object_list.count()))
        self.__dict__.pop("num_pages", None)

    def validate_number(self, number) -> int:
        if not self.count_is_lower_bound:
            return super().validate_number(number)
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def page(self, number):
        if not self.count_is_lower_bound:
            return super().page(number)
        number = self.validate_number(number)
        start = (number - 1) * self.per_page
        if self.count_deep_pages and start >= self.total.value:
            self.count_exactly()
            return super().page(number)
        ids = self.object_list.ids(start, start + self.per_page + 1)
        if not ids and number > 1:
            raise EmptyPage(self.error_messages["no_results"])
        has_next = len(ids) > self.per_page
        ids = ids[: self.per_page]
        if has_next:
            self.__dict__["count"] = max(self.total.value, start + len(ids) + 1)
            self.__dict__["num_pages"] = number + 1
        else:  # the last page: every row is now known
            self._know(MatchCount(start + len(ids)))
            self.__dict__["num_pages"] = number
        return self._get_page(self.object_list.rows(ids), number, self)

    def get_page(self, number):
        """As Paginator.get_page: a number that is no page number is the first page, one
        below 1 or past the end the last page (then the rows are counted exactly, when they
        were counted only up to the bound)."""
        try:
            return self.page(self.validate_number(number))
        except PageNotAnInteger:
            return self.page(1)
        except EmptyPage:
            if self.count_is_lower_bound:
                self.count_exactly()
            return self.page(self.num_pages)
