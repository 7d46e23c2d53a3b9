"""The schema and the browsable documentation page, served without CDN and without inline
script (the console's Content-Security-Policy is `script-src 'self'`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny

from imagesync.api.errors import error_body


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema; public, like any published API description."""

    authentication_classes: list = []
    permission_classes = [AllowAny]


class DocsView(SpectacularSwaggerSplitView):
    """Swagger UI from the drf-spectacular-sidecar static files; its start-up script is a
    separate request (`?script=`), not inline, so the page works under the CSP."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    template_name = "api_docs/swagger_ui.html"
    url_name = "api:schema"


@extend_schema(exclude=True)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def index(request):
    """/api/v1/: where to start."""
    from django.urls import reverse
    from rest_framework.response import Response

    return Response(
        {
            "projects": request.build_absolute_uri(reverse("api:project-list")),
            "tokens": request.build_absolute_uri(reverse("api:token-list")),
            "schema": request.build_absolute_uri(reverse("api:schema")),
            "docs": request.build_absolute_uri(reverse("api:docs")),
        }
    )


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([AllowAny])
def not_found(request, *args, **kwargs):
    """Any other URL under /api/: a JSON 404 rather than the console's HTML page."""
    from rest_framework.response import Response

    return Response(error_body("not_found", "No such API endpoint."), status=404)
