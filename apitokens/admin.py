"""Admin for API tokens: an administrator creates a token for any user and sees it once;
revoking keeps the row (and its last use) for the record."""

from __future__ import annotations

import secrets

from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from apitokens.models import TOKEN_PREFIX, VISIBLE_CHARS, ApiToken, hash_token
from imagesync.models import AuditEvent


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username"]
    autocomplete_fields = ["user"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_tokens"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name"]
        return ["user", "name", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        # The owner of an existing token cannot change: that would hand its secret to someone else.
        return [*self.readonly_fields, "user"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        if not change:
            raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
            obj.prefix = raw[: len(TOKEN_PREFIX) + VISIBLE_CHARS]
            obj.key_hash = hash_token(raw)
            obj.created_by = request.user
            request._api_token_shown_once = raw
        super().save_model(request, obj, form, change)
        if not change:
            AuditEvent.record(
                "api_token.create", actor=request.user, target=str(obj), detail=f"for {obj.user}"
            )

    def response_add(self, request, obj, post_url_continue=None):
        """Show the new token on its own page instead of redirecting: it is never shown again,
        and it does not travel through the message storage (a cookie)."""
        raw = getattr(request, "_api_token_shown_once", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "token": obj,
            "raw_token": raw,
            "title": "API token created",
        }
        response = TemplateResponse(request, "apitokens/token_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description=_("Revoke the selected tokens"))
    def revoke_tokens(self, request, queryset):
        revoked = 0
        for token in queryset.active():
            if token.revoke():
                revoked += 1
                AuditEvent.record(
                    "api_token.revoke",
                    actor=request.user,
                    target=str(token),
                    detail=f"of {token.user}",
                )
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
