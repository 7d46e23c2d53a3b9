from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from imagesync.middleware import user_projects
from imagesync.models import ProjectMembership, UserPreference, has_role


def project_scope(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    project = getattr(request, "project", None)
    role = getattr(request, "project_role", None) if project else None
    preference = UserPreference.of(user)
    return {
        "current_project": project,
        "current_role": role,
        "current_role_label": ProjectMembership.Role(role).label if role else _("none"),
        "user_time_zone": preference.time_zone if preference else "",
        "console_time_zone": settings.TIME_ZONE,
        "user_projects": user_projects(request),
        "can_operate": has_role(role, "operator"),
        "can_admin": has_role(role, "admin"),
    }
