"""The API filters its lists with the console's FilterSets (imagesync/filters.py); this backend
hands them the project of the URL, whose registries the `registry` filter accepts."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend


class ProjectFilterBackend(DjangoFilterBackend):
    def get_filterset_kwargs(self, request, queryset, view) -> dict:
        kwargs = super().get_filterset_kwargs(request, queryset, view)
        kwargs["project"] = getattr(view, "project", None)
        return kwargs
