"""Page-number paging with a total count and a maximum page size."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import PageNumberPagination

DEFAULT_PAGE_SIZE = 20


class ApiPagination(PageNumberPagination):
    """`?page=N&page_size=M`; M above API_MAX_PAGE_SIZE (200) is cut to it. The response is
    `{"count", "next", "previous", "results"}`; a page past the end is a 404."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    page_size_query_description = "Results per page (at most 200)."

    @property
    def max_page_size(self) -> int:
        return getattr(settings, "API_MAX_PAGE_SIZE", 200)
