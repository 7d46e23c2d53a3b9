"""Admin site: every model, with secrets write-only and grants recording who and when."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

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

admin.site.site_header = "Image inventory console — administration"
admin.site.site_title = "Image inventory admin"


class MembershipInline(admin.TabularInline):
    model = ProjectMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
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


class RegistryAdminForm(forms.ModelForm):
    """The secret is write-only: it is never rendered, and a blank field keeps the stored one."""

    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Password, token or secret key. Leave blank to keep the stored secret.",
    )
    clear_secret = forms.BooleanField(required=False, help_text="Remove the stored secret.")
    endpoint = forms.URLField(
        max_length=512,
        assume_scheme="https",
        help_text=Registry._meta.get_field("endpoint").help_text,
    )

    class Meta:
        model = Registry
        fields = [
            "project",
            "kind",
            "name",
            "endpoint",
            "username",
            "verify_tls",
            "ca_bundle",
            "allow_insecure_http",
            "options",
        ]

    def clean_options(self):
        options = self.cleaned_data.get("options")
        if options in (None, ""):
            return {}
        if not isinstance(options, dict):
            raise forms.ValidationError(
                'Options must be a JSON object, e.g. {"max_concurrency": 4}.'
            )
        return options

    def save(self, commit=True):
        registry = super().save(commit=False)
        if self.cleaned_data.get("clear_secret"):
            registry.secret_encrypted = ""
        elif self.cleaned_data.get("secret"):
            registry.set_secret(self.cleaned_data["secret"])
        if commit:
            registry.save()
        return registry


@admin.register(Registry)
class RegistryAdmin(admin.ModelAdmin):
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
    readonly_fields = [
        "secret_state",
        "connection_status",
        "connection_reason_code",
        "connection_message",
        "connection_checked_at",
        "last_synced_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["project", "kind", "name", "endpoint"]}),
        ("Credentials", {"fields": ["username", "secret", "clear_secret", "secret_state"]}),
        (
            "Connection options",
            {"fields": ["verify_tls", "ca_bundle", "allow_insecure_http", "options"]},
        ),
        (
            "Status",
            {
                "fields": [
                    "connection_status",
                    "connection_reason_code",
                    "connection_message",
                    "connection_checked_at",
                    "last_synced_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]

    @admin.display(description="Stored secret")
    def secret_state(self, obj):
        return "set (hidden)" if obj and obj.has_secret else "not set"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        AuditEvent.record(
            "registry.update" if change else "registry.create",
            actor=request.user,
            project=obj.project,
            target=obj.name,
            detail="via admin",
        )

    def delete_model(self, request, obj):
        AuditEvent.record(
            "registry.delete",
            actor=request.user,
            project=obj.project,
            target=obj.name,
            detail="via admin",
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for registry in queryset.select_related("project"):
            AuditEvent.record(
                "registry.delete",
                actor=request.user,
                project=registry.project,
                target=registry.name,
                detail="via admin (bulk)",
            )
        super().delete_queryset(request, queryset)


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
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
    readonly_fields = ["first_seen_at"]
    raw_id_fields = ["registry"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
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
    raw_id_fields = ["repository", "project"]
    show_full_result_count = False


class SyncTaskRepositoryInline(admin.TabularInline):
    model = SyncTaskRepository
    extra = 0
    can_delete = False
    fields = [
        "repository_path",
        "repository_type",
        "status",
        "reason_code",
        "reason_message",
        "images_total",
    ]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SyncTask)
class SyncTaskAdmin(admin.ModelAdmin):
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
    raw_id_fields = ["scope_repositories", "retry_of"]
    readonly_fields = ["heartbeat_at", "started_at", "finished_at", "worker"]
    inlines = [SyncTaskRepositoryInline]


@admin.register(SyncTaskRepository)
class SyncTaskRepositoryAdmin(admin.ModelAdmin):
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
    raw_id_fields = ["task", "repository"]


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

    @admin.action(description="Revoke selected grants")
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
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_name", "action", "target", "project", "detail"]
    list_filter = ["action", "project"]
    search_fields = ["actor_name", "action", "target", "detail"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
