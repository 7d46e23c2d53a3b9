"""Page-number paging with a total count and a maximum page size."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import PageNumberPagination, _positive_int

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
