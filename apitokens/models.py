"""API tokens: a random secret shown once, of which only a SHA-256 hash and a short visible
prefix are stored, so a database dump does not hand out working credentials."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "isk_"  # "imagesync key": makes a leaked token recognisable to secret scanners
VISIBLE_CHARS = 8  # random characters after TOKEN_PREFIX kept in clear to tell tokens apart
LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often


def hash_token(raw: str) -> str:
    """The stored form of a token. A plain SHA-256 is enough: the token has 256 random bits,
    so there is nothing for a slow hash to protect against guessing."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """One API token of a user: the hash of its secret, a visible prefix, and its use."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(
        max_length=100, help_text="What the token is for, e.g. 'CI pipeline' or 'dashboard'."
    )
    prefix = models.CharField(
        max_length=16,
        editable=False,
        db_index=True,
        help_text="The first characters of the token, to recognise it; not a secret.",
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        help_text="Who created it: the user or an administrator.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def issue(cls, user, name: str, *, created_by=None) -> tuple[ApiToken, str]:
        """Create a token for `user`; returns the row and the raw token, which exists nowhere
        else afterwards — show it once."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            name=name,
            prefix=raw[: len(TOKEN_PREFIX) + VISIBLE_CHARS],
            key_hash=hash_token(raw),
            created_by=created_by,
        )
        return token, raw

    @classmethod
    def find_active(cls, raw: str) -> ApiToken | None:
        """The active token whose secret is `raw` (of an active user), or None."""
        if not raw or len(raw) > 200:
            return None
        return (
            cls.objects.active()
            .select_related("user")
            .filter(key_hash=hash_token(raw), user__is_active=True)
            .first()
        )

    def revoke(self) -> bool:
        """Revoke the token; True when this call revoked it."""
        now = timezone.now()
        changed = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if changed:
            self.revoked_at = now
        return bool(changed)

    revoke.alters_data = True

    def touch(self) -> None:
        """Record use, at most once per LAST_USED_RESOLUTION, so a busy pipeline does not turn
        every API read into a database write."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < LAST_USED_RESOLUTION:
            return
        ApiToken.objects.filter(pk=self.pk).filter(
            models.Q(last_used_at__isnull=True)
            | models.Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        self.last_used_at = now

    touch.alters_data = True
