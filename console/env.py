"""Reading settings from environment variables, with a clear error naming a bad variable."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (got {raw!r}).")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number (got {raw!r}).") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum} (got {value}).")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def local_secret(path: Path, make=lambda: secrets.token_urlsafe(50)) -> str:
    """Return a secret kept in an ignored local file, generating it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        value = make()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        return value
    return path.read_text().strip()


def parse_database_url(url: str, base_dir: Path) -> dict:
    """Turn DATABASE_URL into a Django DATABASES entry (sqlite:/// and postgres:// forms)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ImproperlyConfigured("DATABASE_URL is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        name = unquote(parts.path)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            name = name.lstrip("/")
            name = str(base_dir / name) if name else ""
        if not name:
            raise ImproperlyConfigured(
                "DATABASE_URL for SQLite needs a file path (sqlite:///var/db.sqlite3)."
            )
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                # A checkpoint every 10,000 pages (~40 MB of WAL) instead of SQLite's 1,000:
                # a sync commits once per repository, and each checkpoint writes back the same
                # hot pages (the task row, index roots) again; a first sync of 1,000 x 10 took
                # 8% less time (bench/README.md, the sync's per-repository work).
                "init_command": (
                    "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;"
                    "PRAGMA wal_autocheckpoint=10000;"
                ),
            },
        }
    if scheme in {"postgres", "postgresql", "pgsql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(
                "DATABASE_URL for PostgreSQL needs a database name (postgres://user@host:5432/name)."
            )
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured("DATABASE_URL has an invalid port.") from None
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {scheme!r} is not supported; use sqlite:/// or postgres://."
    )


def check_redis_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ImproperlyConfigured("REDIS_URL is not a valid URL.") from None
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://.")
    return url


def redis_url_of_test_worker(url: str, worker: str) -> str:
    """The Redis database a parallel test worker uses (pytest-xdist `gwN`): N x 2 below the
    URL's own, so that workers' queues and caches never meet; the database just below a
    worker's is for the processes its tests start (tests/support/cluster.py)."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"} or not worker.startswith("gw"):
        return url
    index = int(worker[2:] or 0)
    base = int(parts.path.strip("/") or 0)
    if base - 2 * index - 1 < 0:
        raise ImproperlyConfigured(f"REDIS_URL's database {base} leaves none for test {worker}.")
    return urlunsplit(parts._replace(path=f"/{base - 2 * index}"))


def check_time_zone(name: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(f"TIME_ZONE {name!r} is not a known time zone.") from None
    return name


def check_fernet_keys(keys: list[str]) -> list[str]:
    import base64
    import binascii

    for key in keys:
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ImproperlyConfigured(
                "ENCRYPTION_KEY must be one or more comma-separated Fernet keys (32 url-safe "
                "base64-encoded bytes each); `manage.py rotate_encryption_key --generate` makes one."
            )
    return keys
