"""Admin site: projects, memberships, registries and grants are edited here (secrets
write-only, grants recording who and when); the inventory (repositories, images, sync tasks and
their results) and the audit log are read-only: they are written by synchronization alone."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from imagesync.forms import KIND_FIELDS, OPTION_FIELDS, RegistryForm
from imagesync.models import (
    AuditEvent,
    AuthorizationGrant,
    Image,
    Project,
    ProjectMembership,
    Registry,
    Repository,
    SyncTask,
    SyncTaskRepository,
)

admin.site.site_header = _("Image inventory console — administration")
admin.site.site_title = _("Image inventory admin")

# What deleting a project or a registry takes with it, though nobody may delete it alone.
INVENTORY = (Repository, Image, SyncTask, SyncTaskRepository)


class ReadOnlyMixin:
    """View, filter and search only: a row typed in by hand would be a lie in an inventory."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class DeletesInventoryMixin:
    """Deleting the owner deletes its inventory (cascade) although the inventory models are
    read-only here: their delete permission is not asked for."""

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        inventory = {str(model._meta.verbose_name) for model in INVENTORY}
        return deleted, counts, set(perms_needed) - inventory, protected


class MembershipInline(admin.TabularInline):
    model = ProjectMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(DeletesInventoryMixin, admin.ModelAdmin):
    list_display = ["name", "region", "description", "created_at"]
    list_filter = ["region"]
    search_fields = ["name", "region", "description"]
    inlines = [MembershipInline]


@admin.register(ProjectMembership)
class ProjectMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]


class RegistryAdminForm(RegistryForm):
    """The console's registry form with the project to choose: the same checks and messages,
    the same write-only secret, the same audit."""

    class Meta(RegistryForm.Meta):
        fields = ["project", *RegistryForm.Meta.fields]


@admin.register(Registry)
class RegistryAdmin(DeletesInventoryMixin, admin.ModelAdmin):
    form = RegistryAdminForm
    list_display = [
        "name",
        "project",
        "kind",
        "endpoint",
        "connection_status",
        "connection_reason_code",
        "last_synced_at",
    ]
    list_filter = ["kind", "connection_status", "project"]
    search_fields = ["name", "endpoint", "username", "project__name"]
    readonly_fields = ["secret_state", *Registry.STATUS_FIELDS, "created_at", "updated_at"]

    def get_fieldsets(self, request, obj=None):
        credentials = ["username", "secret", "secret_state"]
        if obj is not None and obj.has_secret:  # the form offers removal only then
            credentials.insert(2, "clear_secret")
        return [
            (None, {"fields": ["project", "kind", "name", "endpoint"]}),
            ("Credentials", {"fields": credentials}),
            (
                "Kind-specific settings",
                {
                    "fields": list(OPTION_FIELDS),
                    "description": "Only the fields of the chosen kind are used: "
                    + "; ".join(
                        f"{Registry.Kind(kind).label}: {', '.join(names)}"
                        for kind, names in KIND_FIELDS.items()
                    )
                    + ".",
                },
            ),
            (
                "Connection options",
                {"fields": ["verify_tls", "ca_bundle", "allow_insecure_http", "options"]},
            ),
            ("Status", {"fields": self.readonly_fields[1:]}),
        ]

    @admin.display(description=_("Stored secret"))
    def secret_state(self, obj):
        return "set (hidden)" if obj and obj.has_secret else "not set"

    def save_model(self, request, obj, form, change):
        form.save(actor=request.user, via="admin")

    def delete_model(self, request, obj):
        obj.remove(request.user, via="admin")

    def delete_queryset(self, request, queryset):
        for registry in queryset.select_related("project"):
            registry.remove(request.user, via="admin (bulk)")


@admin.register(Repository)
class RepositoryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "path",
        "type",
        "registry",
        "namespace",
        "image_count",
        "last_synced_at",
        "removed_at",
    ]
    list_filter = ["type", "registry__project", "registry"]
    search_fields = ["path", "namespace", "name"]
    list_select_related = ["registry"]


@admin.register(Image)
class ImageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "digest",
        "size",
        "multi_arch",
        "is_latest",
        "registry_updated_at",
        "last_synced_at",
    ]
    list_filter = ["repository__type", "multi_arch", "is_latest", "project"]
    search_fields = ["tag", "digest", "repository__path"]
    list_select_related = ["repository"]
    show_full_result_count = False


class SyncTaskRepositoryInline(ReadOnlyMixin, admin.TabularInline):
    model = SyncTaskRepository
    extra = 0
    fields = [
        "repository_path",
        "repository_type",
        "status",
        "reason_code",
        "reason_message",
        "images_total",
    ]
    show_change_link = True


@admin.register(SyncTask)
class SyncTaskAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "project",
        "trigger",
        "scope",
        "status",
        "repositories_done",
        "repositories_total",
        "repositories_failed",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger", "scope", "project"]
    search_fields = ["id", "failure_reason", "created_by__username"]
    date_hierarchy = "created_at"
    inlines = [SyncTaskRepositoryInline]


@admin.register(SyncTaskRepository)
class SyncTaskRepositoryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "repository_path",
        "repository_type",
        "registry_name",
        "task",
        "status",
        "reason_code",
        "images_total",
    ]
    list_filter = ["status", "repository_type", "reason_code"]
    search_fields = ["repository_path", "registry_name", "reason_message"]
    list_select_related = ["task"]


@admin.register(AuthorizationGrant)
class AuthorizationGrantAdmin(admin.ModelAdmin):
    """Grants are created and revoked here; who and when are recorded, never typed in."""

    list_display = [
        "policy",
        "project",
        "state",
        "granted_by",
        "granted_at",
        "revoked_by",
        "revoked_at",
    ]
    list_filter = ["policy", "project", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["project__name", "policy", "note"]
    fields = ["project", "policy", "note", "granted_by", "granted_at", "revoked_by", "revoked_at"]
    readonly_fields = ["granted_by", "granted_at", "revoked_by", "revoked_at"]
    actions = ["revoke_grants"]

    @admin.display(description="State", boolean=False)
    def state(self, obj):
        return "Revoked" if obj.revoked_at else "Active"

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # a grant is immutable once made; revoke it instead
            return ["project", "policy", *self.readonly_fields]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.granted_by = request.user
            obj.granted_at = timezone.now()
        super().save_model(request, obj, form, change)
        if not change:
            AuditEvent.record(
                "grant.create", actor=request.user, project=obj.project, target=obj.policy
            )

    @admin.action(description=_("Revoke selected grants"))
    def revoke_grants(self, request, queryset):
        revoked = 0
        for grant in queryset.filter(revoked_at__isnull=True):
            if grant.revoke(request.user):
                revoked += 1
                AuditEvent.record(
                    "grant.revoke", actor=request.user, project=grant.project, target=grant.policy
                )
        self.message_user(request, f"Revoked {revoked} grant(s).", messages.SUCCESS)

    def delete_model(self, request, obj):
        AuditEvent.record(
            "grant.delete", actor=request.user, project=obj.project, target=obj.policy
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for grant in queryset.select_related("project"):
            AuditEvent.record(
                "grant.delete", actor=request.user, project=grant.project, target=grant.policy
            )
        super().delete_queryset(request, queryset)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["created_at", "actor_name", "action", "target", "project", "detail"]
    list_filter = ["action", "project"]
    search_fields = ["actor_name", "action", "target", "detail"]
    date_hierarchy = "created_at"
