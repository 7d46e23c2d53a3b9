"""The audit log page: project admins see their project's events; nobody else does."""

from __future__ import annotations

from django.urls import reverse

from imagesync.models import AuditEvent


def test_a_project_admin_sees_who_did_what_in_their_project(
    login, admin_user, operator, project, other_project
):
    AuditEvent.record("sync.start", actor=operator, project=project, target="Sync task #7")
    AuditEvent.record(
        "registry.delete", actor=admin_user, project=other_project, target="elsewhere-reg"
    )
    response = login(admin_user).get(reverse("imagesync:audit-list"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "sync.start" in body and "oscar-operator" in body and "Sync task #7" in body
    assert "elsewhere-reg" not in body


def test_the_audit_log_filters_by_action(login, admin_user, operator, project):
    AuditEvent.record("sync.start", actor=operator, project=project, target="Sync task #7")
    AuditEvent.record("sync.cancel", actor=operator, project=project, target="Sync task #8")
    body = (
        login(admin_user)
        .get(reverse("imagesync:audit-list"), {"action": "sync.cancel"})
        .content.decode()
    )
    assert "Sync task #8" in body and "Sync task #7" not in body


def test_operators_viewers_and_outsiders_are_refused_the_audit_log(
    login, operator, viewer, outsider, project
):
    AuditEvent.record("sync.start", actor=operator, project=project, target="Sync task #7")
    for user in (operator, viewer):
        assert login(user).get(reverse("imagesync:audit-list")).status_code == 403
    response = login(outsider).get(reverse("imagesync:audit-list"))
    assert response.status_code == 200 and "Sync task #7" not in response.content.decode()


def test_only_admins_see_the_audit_log_in_the_navigation(login, admin_user, viewer):
    assert (
        reverse("imagesync:audit-list")
        in login(admin_user).get(reverse("imagesync:image-list")).content.decode()
    )
    assert (
        reverse("imagesync:audit-list")
        not in login(viewer).get(reverse("imagesync:image-list")).content.decode()
    )
