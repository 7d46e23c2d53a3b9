"""Page-number paging with a total count and a maximum page size."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import PageNumberPagination, _positive_int

from imagesync.paging import BoundedPaginator
from imagesync.tables import DEFAULT_PAGE_SIZE, PAGE_SIZE_PARAMS


class ApiPagination(PageNumberPagination):
    """`?page=N&page_size=M` (or `per_page=M`, the console's name); M above API_MAX_PAGE_SIZE
    (200) is cut to it. The response is `{"count", "next", "previous", "results"}`; a page past
    the end is a 404."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    page_size_query_description = "Results per page (at most 200); per_page is the same."

    @property
    def max_page_size(self) -> int:
        return getattr(settings, "API_MAX_PAGE_SIZE", 200)

    def get_page_size(self, request) -> int:
        for name in PAGE_SIZE_PARAMS:
            try:
                return _positive_int(
                    request.query_params[name], strict=True, cutoff=self.max_page_size
                )
            except (KeyError, ValueError):
                continue
        return self.page_size


class BoundedPagination(ApiPagination):
    """Paging of a list of up to a million rows: as ApiPagination, with the total counted only
    up to IMAGE_COUNT_LIMIT (imagesync.paging): past it `count` is the number of rows known to
    match (a lower bound) and `count_is_lower_bound` is true; `next` is always right, and the
    last page's `count` is exact. `page=last` counts every match. The view pages an
    `IdsThenRows` (the page's ids, then those rows)."""

    django_paginator_class = BoundedPaginator
    # What `count` counts, for the schema ("Images", "Changes").
    counted = "Rows"

    def get_page_number(self, request, paginator):
        number = request.query_params.get(self.page_query_param) or 1
        if number in self.last_page_strings and getattr(paginator, "count_is_lower_bound", False):
            paginator.count_exactly()
        return super().get_page_number(request, paginator)

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["count_is_lower_bound"] = self.page.paginator.count_is_lower_bound
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count"]["description"] = (
            f"{self.counted} that match: exact, unless count_is_lower_bound is true (more than"
            " IMAGE_COUNT_LIMIT, default 10,000, matched: then at least this many)."
        )
        schema["properties"]["count_is_lower_bound"] = {
            "type": "boolean",
            "description": "true: `count` is a lower bound; follow `next` to page on.",
        }
        schema["required"].append("count_is_lower_bound")
        return schema


class ImagePagination(BoundedPagination):
    """The image list's paging (BoundedPagination)."""

    counted = "Images"


class ChangePagination(BoundedPagination):
    """The changes list's paging (BoundedPagination)."""

    counted = "Changes"
