"""Encryption of registry secrets at rest (Fernet, from the `cryptography` package).

Keys come from the ENCRYPTION_KEY environment variable (comma-separated: the first encrypts,
all decrypt, so a key can be rotated), or from a key generated once into var/encryption_key.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from console.env import local_secret


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


def configured_keys() -> list[str]:
    if settings.ENCRYPTION_KEYS:
        return list(settings.ENCRYPTION_KEYS)
    return [local_secret(settings.ENCRYPTION_KEY_FILE, make=lambda: Fernet.generate_key().decode())]


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
            "(32 url-safe base64-encoded bytes each)."
        ) from None


def fernet() -> MultiFernet:
    return _fernet(tuple(configured_keys()))


def encrypt(plain: str) -> str:
    if not plain:
        return ""
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "The stored secret cannot be decrypted with the configured ENCRYPTION_KEY."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a token with the first (newest) key."""
    if not token:
        return ""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "The stored secret cannot be decrypted with the configured ENCRYPTION_KEY."
        ) from None
