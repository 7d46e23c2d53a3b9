from __future__ import annotations

from imagesync.models import Project, has_role


def project_scope(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    project = getattr(request, "project", None)
    role = getattr(request, "project_role", None) if project else None
    return {
        "current_project": project,
        "current_role": role,
        "user_projects": Project.objects.for_user(user).order_by("name"),
        "can_operate": has_role(role, "operator"),
        "can_admin": has_role(role, "admin"),
    }
