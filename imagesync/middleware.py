"""Project scoping and the Content Security Policy header."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from imagesync.models import Project

SESSION_KEY = "imagesync_project_id"


def user_projects(request) -> list[Project]:
    """The projects the user may see, by name: read once per request, for the project picker
    and the current project alike."""
    projects = getattr(request, "_console_projects", None)
    if projects is None:
        projects = list(Project.objects.for_user(request.user).order_by("name"))
        request._console_projects = projects
    return projects


def current_project(request) -> Project | None:
    """The project chosen in the session, if the user still belongs to it; else their first."""
    user = request.user
    if not user.is_authenticated:
        return None
    projects = user_projects(request)
    chosen = request.session.get(SESSION_KEY)
    if chosen is not None:
        project = next((project for project in projects if str(project.pk) == str(chosen)), None)
        if project is not None:
            return project
    project = projects[0] if projects else None
    if project is not None:
        request.session[SESSION_KEY] = project.pk
    else:
        request.session.pop(SESSION_KEY, None)
    return project


class ProjectScopeMiddleware:
    """Sets request.project (lazily) and request.project_role for console views."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.project = SimpleLazyObject(lambda: current_project(request))
        request.project_role = SimpleLazyObject(
            lambda: request.project.role_of(request.user) if request.project else None
        )
        return self.get_response(request)


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """No inline script or style anywhere: pages pass this policy. The admin site keeps Django's
    own inline code, so it gets a policy that allows it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            if request.path.startswith("/admin/"):
                response["Content-Security-Policy"] = (
                    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
                )
            else:
                response["Content-Security-Policy"] = CSP
        return response
