"""Registry events: a registry tells the console that a repository changed, and the console
re-lists that repository within seconds instead of waiting for the next full sync.

Three tables:

- `EventReceiver`: the events setting of one registry connection -- on/off, the random token
  in its receiver URL (the URL names no project or registry), its secret (Fernet-encrypted like
  the connection's own secret: JFrog's HMAC signature needs the plain secret to check), and the
  counters of the health panel (refused, ignored, duplicates).
- `RegistryEvent`: one accepted notification, unique per receiver by its event id(s), else by
  the SHA-256 of its body, so a registry's retry of the same delivery is stored once.
- `RefreshPending`: one row per repository that an event named and that still waits for its
  refresh (upserted: 500 pushes to one repository are one row).

Receiving (`receive`, called by imagesync/receiver.py) never calls a registry: it checks the
rate limit, the size, the secret, parses the payload only to learn WHICH repositories were
touched, stores the event, marks those repositories pending and enqueues at most one refresh
per connection per coalescing window (REGISTRY_EVENTS_COALESCE_MS).

The refresh (`refresh_registry`, run by the worker through imagesync.tasks) waits until the
burst is over (QUIET_SECONDS without a new mark, at most the window after its first mark),
claims every pending repository of the connection, and runs them as a SyncTask with the trigger "event" through the sync engine's
`RegistryRun` -- the connection's normal client and the same reconcile as a full sync. Nothing
from a payload is written into the inventory. A repository whose listing says "not found" and
that a successful listing of the registry's repositories no longer shows is emptied, as a full
sync empties a vanished repository.

Concurrency with a full sync of the project (they run side by side: neither refuses the
other, since the "one active sync per project" rule leaves event refreshes out):

1. One writer per repository at a time. Every reconcile -- full sync or refresh -- runs in a
   transaction that first calls `Repository.take_listing(started)`, which locks the
   repository row (SELECT ... FOR UPDATE; SQLite's IMMEDIATE transactions and db_guard
   serialize writers anyway). A second reconcile of the same repository waits for the first
   to commit.
2. No older result overwrites a newer one. `take_listing` compares the start time of the
   listing about to be stored with `Repository.listing_started_at`, the start of the listing
   the stored images came from. A listing that started earlier than the stored one is
   dropped (its result is "finished, no change"): the registry state it saw is older than what
   is stored. So whichever order the two commits come in, the inventory ends as the newest
   listing saw the registry. A full sync's repository listing likewise does not remove a
   repository whose images come from a listing that started after the catalog was read.
3. Nothing is lost. An event that arrives while a refresh of its repository runs marks the
   row again (`marked_at` after the claim); when the refresh ends those rows are released and
   a new refresh is enqueued. A pending row claimed by a refresh whose worker died (its task
   no longer active) is claimed again by the next refresh. Only one refresh holds a given
   repository's pending row at a time, so a refresh never runs twice at once for it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, models, transaction
from django.db.models import F, Max, Min, Q
from django.utils import timezone

from imagesync import crypto, reasons, usage
from imagesync.models import (
    SWR_TYPES,
    AuthorizationGrant,
    Image,
    Registry,
    Repository,
    RepositoryType,
    SyncTask,
    SyncTaskRepository,
)
from imagesync.sync.jobs import (
    Job,
    Outcome,
    RegistryRun,
    _commit_without_waiting_for_disk,
    _still_unfinished,
)
from imagesync.sync.pool import db_guard

logger = logging.getLogger(__name__)

EVENT_RETENTION = timedelta(days=30)  # accepted events kept (dedup window, 24 h figures)
MAX_REPOSITORIES_PER_EVENT = 100  # repositories one notification may name; more is malformed

# Manifest media types: a Distribution "push" of anything else (without a tag) is a blob.
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.artifact.manifest.v1+json",
    }
)
# A repository path as registries name them: lowercase for Distribution, a little wider for
# JFrog keys and Harbor projects; no empty or dot-dot segments, no control characters.
_PATH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


# --- models ---------------------------------------------------------------------------------


class EventReceiver(models.Model):
    """The registry events setting of one registry connection: on/off, receiver token, secret
    and the counters of its health panel."""

    registry = models.OneToOneField(
        Registry,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="event_receiver",
        help_text="Empty once the connection was removed (its events are then counted, not used).",
    )
    kind = models.CharField(max_length=16, choices=Registry.Kind.choices)
    enabled = models.BooleanField(default=False)
    token = models.CharField(
        max_length=64, unique=True, help_text="Random part of the receiver URL."
    )
    secret_encrypted = models.TextField(blank=True, editable=False)
    secret_set_at = models.DateTimeField(null=True, blank=True)
    enabled_at = models.DateTimeField(
        null=True, blank=True, help_text="When events were last turned on (drift counts from it)."
    )
    refused_secret = models.PositiveBigIntegerField(default=0)
    refused_malformed = models.PositiveBigIntegerField(default=0)
    refused_too_large = models.PositiveBigIntegerField(default=0)
    refused_rate_limited = models.PositiveBigIntegerField(default=0)
    ignored_pull = models.PositiveBigIntegerField(default=0)
    ignored_blob = models.PositiveBigIntegerField(default=0)
    ignored_unknown = models.PositiveBigIntegerField(default=0)
    ignored_type = models.PositiveBigIntegerField(
        default=0, help_text="Repositories of a type the project has not enabled."
    )
    ignored_removed = models.PositiveBigIntegerField(
        default=0, help_text="Events for the connection after it was removed."
    )
    duplicates = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    COUNTERS = (
        "refused_secret",
        "refused_malformed",
        "refused_too_large",
        "refused_rate_limited",
        "ignored_pull",
        "ignored_blob",
        "ignored_unknown",
        "ignored_type",
        "ignored_removed",
        "duplicates",
    )

    class Meta:
        verbose_name = "registry event receiver"
        verbose_name_plural = "registry event receivers"

    def __str__(self) -> str:
        return f"Events of {self.registry or 'a removed connection'}"

    @classmethod
    def of(cls, registry: Registry) -> EventReceiver:
        """The receiver of a connection (created off, with its token, on first use)."""
        receiver, _ = cls.objects.get_or_create(
            registry=registry,
            defaults={"kind": registry.kind, "token": secrets.token_urlsafe(24)},
        )
        return receiver

    # --- state changes (audited) ----------------------------------------------------------

    def enable(self, user=None, *, via: str = "") -> str | None:
        """Turn events on; the new secret when one had to be created (shown once), else None
        (the stored one keeps working)."""
        plain = None
        if not self.secret_encrypted:
            plain = self._new_secret()
        self.enabled = True
        self.enabled_at = timezone.now()
        self.save()
        self.registry.audit("registry.events_on", user, via=via)
        return plain

    enable.alters_data = True

    def disable(self, user=None, *, via: str = "") -> None:
        self.enabled = False
        self.save(update_fields=["enabled"])
        self.registry.audit("registry.events_off", user, via=via)

    disable.alters_data = True

    def rotate(self, user=None, *, via: str = "") -> str:
        """A new secret, returned once; the old one stops working now."""
        plain = self._new_secret()
        self.save()
        self.registry.audit("registry.events_rotate", user, via=via)
        return plain

    rotate.alters_data = True

    def _new_secret(self) -> str:
        plain = secrets.token_urlsafe(32)
        self.secret_encrypted = crypto.encrypt(plain)
        self.secret_set_at = timezone.now()
        return plain

    def count(self, counter: str, n: int = 1) -> None:
        """Add to a counter. Pull events are counted this way on every request (the console's
        own listings cause one per tag), so the COMMIT does not wait for the disk."""
        if n:
            with transaction.atomic():
                _commit_without_waiting_for_disk()
                EventReceiver.objects.filter(pk=self.pk).update(**{counter: F(counter) + n})

    count.alters_data = True

    # --- what a registry is told ------------------------------------------------------------

    def path(self) -> str:
        from django.urls import reverse

        return reverse("imagesync:registry-events-receiver", args=[self.token])

    def url(self, base: str | None = None) -> str:
        return (base or settings.CONSOLE_URL).rstrip("/") + self.path()

    @property
    def header_name(self) -> str:
        return "X-JFrog-Event-Auth" if self.kind == Registry.Kind.JFROG else "Authorization"

    def header_value(self, secret: str) -> str:
        return secret if self.kind == Registry.Kind.JFROG else f"Bearer {secret}"

    def setup(self, url: str, secret: str | None) -> str:
        """A ready-to-paste setup of the registry side (the secret as a placeholder when not
        given: it is shown only when created or rotated)."""
        return setup_text(self.kind, url, secret or "<secret>")

    # --- authentication -------------------------------------------------------------------

    def plain_secret(self) -> bytes | None:
        """The secret, decrypted; None when there is none or it cannot be read."""
        if not self.secret_encrypted:
            return None
        try:
            return crypto.decrypt(self.secret_encrypted).encode()
        except crypto.SecretUnreadable:
            return None

    def authenticates(self, headers, body: bytes, secret: bytes | None = None) -> bool:
        """Whether the request carries this receiver's secret (constant-time comparisons).
        `secret`: the plain secret when the caller already decrypted it."""
        secret = secret or self.plain_secret()
        if not secret:
            return False
        if self.kind == Registry.Kind.JFROG:
            given = _header_bytes(headers.get("X-JFrog-Event-Auth")).strip()
            if given[:7].lower() == b"sha256=":
                given = given[7:]
            signature = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
            plain_ok = hmac.compare_digest(given, secret)
            signed_ok = hmac.compare_digest(given.lower(), signature)
            return bool(given) and (plain_ok or signed_ok)
        given = _header_bytes(headers.get("Authorization")).strip()
        if given[:7].lower() == b"bearer ":
            given = given[7:].strip()
        return bool(given) and hmac.compare_digest(given, secret)

    # --- health -----------------------------------------------------------------------------

    def health(self) -> dict:
        """What the connection page shows: last event, events in 24 h, refusals and drift."""
        from imagesync.history import Change

        self.refresh_from_db(fields=self.COUNTERS)
        now = timezone.now()
        events = RegistryEvent.objects.filter(receiver=self)
        last = events.order_by("-received_at").values_list("received_at", flat=True).first()
        drift = Change.objects.none()
        if self.registry_id and self.enabled_at:
            drift = Change.objects.filter(
                registry_id=self.registry_id,
                source=Change.Source.SYNC,
                time__gte=self.enabled_at,
            )
        return {
            "last_event_at": last,
            "events_24h": events.filter(received_at__gte=now - timedelta(hours=24)).count(),
            "refused": {
                "bad_secret": self.refused_secret,
                "malformed": self.refused_malformed,
                "too_large": self.refused_too_large,
                "rate_limited": self.refused_rate_limited,
            },
            "ignored": {
                "pull": self.ignored_pull,
                "blob": self.ignored_blob,
                "unknown": self.ignored_unknown,
                "type_not_enabled": self.ignored_type,
                "connection_removed": self.ignored_removed,
                "duplicate": self.duplicates,
            },
            "drift": drift.count(),
            "drift_recent": list(drift.order_by("-time")[:5]),
        }


class RegistryEvent(models.Model):
    """One accepted registry notification (deduplicated by event id, else body hash)."""

    receiver = models.ForeignKey(EventReceiver, on_delete=models.CASCADE, related_name="events")
    key = models.CharField(
        max_length=64, help_text="SHA-256 of the event id(s), or of the body when it has none."
    )
    received_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=16, help_text="push, delete or mixed.")
    repositories = models.JSONField(default=list, help_text="The repository paths it named.")

    class Meta:
        verbose_name = "registry event"
        verbose_name_plural = "registry events"
        constraints = [
            models.UniqueConstraint(fields=["receiver", "key"], name="registryevent_unique_key")
        ]
        indexes = [
            models.Index(fields=["receiver", "received_at"], name="registryevent_recv_time_idx")
        ]

    def __str__(self) -> str:
        return f"{self.action} event at {self.received_at:%Y-%m-%d %H:%M:%S}"


class RefreshPending(models.Model):
    """A repository that registry events named and that waits for (or is in) its refresh."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=16, choices=RepositoryType.choices)
    path = models.CharField(max_length=255)
    marked_at = models.DateTimeField(help_text="The latest event that named it.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    task = models.ForeignKey(
        SyncTask,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The refresh that holds it.",
    )

    class Meta:
        verbose_name = "pending refresh"
        verbose_name_plural = "pending refreshes"
        constraints = [
            models.UniqueConstraint(
                fields=["registry", "type", "path"], name="refreshpending_unique_repo"
            )
        ]

    def __str__(self) -> str:
        return self.path


def _header_bytes(value) -> bytes:
    if not isinstance(value, str):
        return b""
    return value.encode("utf-8", "replace")


# --- parsing --------------------------------------------------------------------------------


class Malformed(Exception):
    """A body that is not a notification of the connection's kind."""


@dataclass
class Parsed:
    """What a notification says: the repositories it touched, the ids of its events and how
    many of its events are ignored here (pull, blob, unknown)."""

    touched: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, path) -> action
    ids: list[str] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    # Manifest pulls by anyone but the console: (path, digest, tag, time), for usage only.
    pulls: list = field(default_factory=list)

    def touch(self, type_: str, path, action: str) -> None:
        if not isinstance(path, str) or len(path) > 255 or not _PATH_RE.match(path):
            raise Malformed("repository path")
        if len(self.touched) >= MAX_REPOSITORIES_PER_EVENT:
            raise Malformed("too many repositories")
        self.touched[(type_, path)] = action

    @property
    def action(self) -> str:
        actions = set(self.touched.values())
        return actions.pop() if len(actions) == 1 else "mixed"


def parse(kind: str, body: bytes) -> Parsed:
    """The repositories a notification of a connection of `kind` touched; Malformed when the
    body is not such a notification."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Malformed("not JSON") from None
    if not isinstance(document, dict):
        raise Malformed("not an object")
    parsed = Parsed()
    if kind == Registry.Kind.OTHER:
        _parse_distribution(document, parsed)
    elif kind == Registry.Kind.JFROG:
        _parse_jfrog(document, parsed)
    elif kind == Registry.Kind.HARBOR:
        _parse_harbor(document, parsed, RepositoryType.HARBOR)
    else:
        _parse_harbor(document, parsed, RepositoryType.SWR_ENTERPRISE)
    return parsed


def _parse_distribution(document: dict, parsed: Parsed) -> None:
    """{"events": [{id, action, target: {mediaType, repository, tag, digest}}]}."""
    events = document.get("events")
    if not isinstance(events, list):
        raise Malformed("no events list")
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("target", {}), dict):
            raise Malformed("event")
        if isinstance(event.get("id"), str | int):
            parsed.ids.append(str(event["id"]))
        action = event.get("action")
        target = event.get("target") or {}
        media = target.get("mediaType")
        if action == "pull":
            parsed.ignored["pull"] += 1  # no refresh: a pull changes usage, not the inventory
            _note_pull(event, target, parsed)
        elif action == "mount":
            parsed.ignored["blob"] += 1
        elif action not in ("push", "delete"):
            parsed.ignored["unknown"] += 1
        elif media and media not in MANIFEST_TYPES and not target.get("tag"):
            parsed.ignored["blob"] += 1  # a layer or config blob pushed or deleted
        else:
            parsed.touch(RepositoryType.OTHER, target.get("repository"), action)
    if len(parsed.ids) != len(events):
        parsed.ids = []  # dedup by the whole body instead


def _note_pull(event: dict, target: dict, parsed: Parsed) -> None:
    """Keep a manifest pull for last pulled (imagesync.usage.record_pulls), unless it was the
    console's own request (Distribution reports its manifest HEADs as pulls too) or a blob."""
    media = target.get("mediaType")
    if media and media not in MANIFEST_TYPES:
        return
    request = event.get("request") if isinstance(event.get("request"), dict) else {}
    if usage.is_console_agent(request.get("useragent")):
        return
    path, digest, tag = target.get("repository"), target.get("digest"), target.get("tag")
    if not isinstance(path, str) or not _PATH_RE.match(path) or len(path) > 255:
        return
    digest = digest if isinstance(digest, str) and len(digest) <= 100 else ""
    tag = tag if isinstance(tag, str) and len(tag) <= 128 else ""
    if (digest or tag) and len(parsed.pulls) < MAX_REPOSITORIES_PER_EVENT:
        parsed.pulls.append((path, digest, tag, event.get("timestamp")))


HARBOR_ACTIONS = {
    "PUSH_ARTIFACT": "push",
    "DELETE_ARTIFACT": "delete",
    "harbor.artifact.pushed": "push",
    "harbor.artifact.deleted": "delete",
}
HARBOR_PULLS = {"PULL_ARTIFACT", "harbor.artifact.pulled"}


def _parse_harbor(document: dict, parsed: Parsed, type_: str) -> None:
    """Harbor's default payload ({type, occur_at, event_data: {resources, repository}}) and its
    CloudEvents payload ({specversion, id, type: harbor.artifact.*, data}); SWR Enterprise
    Edition sends a Harbor-like payload that is not documented, so read it defensively."""
    kind = document.get("type") or document.get("event_type")
    if not isinstance(kind, str):
        parsed.ignored["unknown"] += 1
        return
    if "specversion" in document and isinstance(document.get("id"), str | int):
        parsed.ids.append(str(document["id"]))
    if kind in HARBOR_PULLS or kind.lower().endswith(("pull", "pulled", "pull_artifact")):
        parsed.ignored["pull"] += 1
        return
    action = HARBOR_ACTIONS.get(kind) or HARBOR_ACTIONS.get(kind.upper())
    if action is None and type_ == RepositoryType.SWR_ENTERPRISE and "PUSH" in kind.upper():
        action = "push"
    if action is None:
        parsed.ignored["unknown"] += 1
        return
    data = document.get("event_data") or document.get("data") or {}
    if not isinstance(data, dict):
        raise Malformed("event data")
    repository = data.get("repository") or {}
    path = None
    if isinstance(repository, dict):
        path = repository.get("repo_full_name")
        namespace, name = repository.get("namespace"), repository.get("name")
        if not path and isinstance(namespace, str) and isinstance(name, str):
            path = name if name.startswith(namespace + "/") else f"{namespace}/{name}"
    elif isinstance(repository, str):
        path = repository
    if not path:
        path = _path_of_resource(data.get("resources"))
    parsed.touch(type_, path, action)


def _path_of_resource(resources) -> str | None:
    """host/namespace/repo:tag (or @digest) of the first resource, without host and tag."""
    if not isinstance(resources, list) or not resources or not isinstance(resources[0], dict):
        return None
    url = resources[0].get("resource_url")
    if not isinstance(url, str) or "/" not in url:
        return None
    path = url.split("/", 1)[1].split("@", 1)[0]
    last = path.rsplit("/", 1)
    if ":" in last[-1]:
        path = path.rsplit(":", 1)[0]
    return path


JFROG_ACTIONS = {"pushed": "push", "deleted": "delete", "promoted": "push"}


def _parse_jfrog(document: dict, parsed: Parsed) -> None:
    """{domain: docker, event_type: pushed|deleted|promoted, data: {repo_key, image_name, ...}}"""
    if document.get("domain") != "docker":
        parsed.ignored["unknown"] += 1
        return
    action = JFROG_ACTIONS.get(document.get("event_type"))
    if action is None:
        parsed.ignored["unknown"] += 1
        return
    data = document.get("data")
    if not isinstance(data, dict):
        raise Malformed("data")
    image = data.get("image_name")
    for key_field in ("repo_key", "target_repo_key"):
        key = data.get(key_field)
        if key_field == "repo_key" or key:
            if not isinstance(key, str) or not isinstance(image, str):
                raise Malformed("repo_key or image_name")
            parsed.touch(RepositoryType.JFROG, f"{key}/{image}", action)


# --- receiving ------------------------------------------------------------------------------


def _rate_limited(token: str) -> bool:
    """Fixed one-minute window per connection, in the cache (Redis when REDIS_URL is set,
    else the database cache table)."""
    window = int(time.time() // 60)
    key = f"imagesync:events:rate:{token}:{window}"
    try:
        return _count(key, 120) > settings.REGISTRY_EVENTS_PER_MINUTE
    except Exception:  # a cache that is down must not stop events
        logger.warning("The registry events rate limit could not be checked.")
        return False


_redis = threading.local()


def _redis_command(backend, *args):
    """One command on this thread's own connection to the cache's Redis; its answer. Not
    through a client: redis-py's client layer (pool, retries, observability) cost as much CPU
    as the round trip itself, and the receiver makes two per notification. A connection that
    failed is dropped (the next command connects again) and the error raised."""
    conn = getattr(_redis, "conn", None)
    if conn is None or getattr(_redis, "backend", None) is not backend:
        pool = backend.get_client(None, write=True).connection_pool
        conn = pool.make_connection()
        _redis.conn, _redis.backend = conn, backend
    try:
        conn.send_command(*args)
        return conn.read_response()
    except BaseException:
        _redis.conn = None
        conn.disconnect()
        raise


def _redis_backend():
    backend = getattr(cache, "_cache", None)
    return backend if backend is not None and hasattr(backend, "get_client") else None


def _count(key: str, timeout: int) -> int:
    """Add one to a counter in the cache; its new value. On Redis one INCR (Django's cache API
    costs an ADD, an EXISTS and an INCR, and builds a client for each: most of the receiver's
    time under a flood); elsewhere add/incr."""
    backend = _redis_backend()
    if backend is not None:
        full_key = cache.make_and_validate_key(key)
        value = int(_redis_command(backend, "INCR", full_key))
        if value == 1:
            _redis_command(backend, "EXPIRE", full_key, timeout)
        return value
    if cache.add(key, 1, timeout=timeout):
        return 1
    return cache.incr(key)


def _add(key: str, timeout: int) -> bool:
    """Set a key unless it exists; whether it was set (Redis: one SET NX, as in _count)."""
    backend = _redis_backend()
    if backend is not None:
        full_key = cache.make_and_validate_key(key)
        return _redis_command(backend, "SET", full_key, 1, "NX", "EX", timeout) is not None
    return cache.add(key, 1, timeout=timeout)


def enabled_types(registry: Registry) -> tuple[str, ...]:
    """Repository types whose events this connection follows (SWR: the Enterprise Edition
    only, and only when its listing includes it)."""
    if registry.kind == Registry.Kind.SWR:
        enterprise = (registry.options or {}).get("enterprise", True)
        return (RepositoryType.SWR_ENTERPRISE.value,) if enterprise not in (False, "false") else ()
    return registry.repository_types


def _receiver_of(token: str) -> EventReceiver | None:
    """The receiver of a token with its connection's kind and options, in one plain query
    (the ORM's query building was a third of the receiver's CPU time under a flood)."""
    sql = (
        "SELECT r.id, r.registry_id, r.kind, r.enabled, r.secret_encrypted, g.kind, g.options "
        f"FROM {EventReceiver._meta.db_table} r "
        f"LEFT JOIN {Registry._meta.db_table} g ON g.id = r.registry_id WHERE r.token = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [token])
        row = cursor.fetchone()
    if row is None:
        return None
    pk, registry_id, kind, enabled, secret, registry_kind, options = row
    receiver = EventReceiver(
        pk=pk, registry_id=registry_id, kind=kind, enabled=bool(enabled), token=token
    )
    receiver.secret_encrypted = secret
    if registry_id is None:
        receiver.registry = None
    else:
        if isinstance(options, str | bytes):
            options = json.loads(options)
        receiver.registry = Registry(pk=registry_id, kind=registry_kind, options=options or {})
    return receiver


class _Body:
    """A request's body, read once, at most the size cap (None when over it)."""

    def __init__(self, stream, content_length) -> None:
        self.stream = stream
        self.content_length = content_length
        self._read = False
        self._value: bytes | None = None

    def read(self) -> bytes | None:
        if not self._read:
            self._read = True
            cap = settings.REGISTRY_EVENTS_MAX_BYTES
            try:
                declared = int(self.content_length or 0)
            except (TypeError, ValueError):
                declared = 0
            if declared <= cap:
                body = self.stream.read(cap + 1)
                self._value = body if len(body) <= cap else None
        return self._value


@dataclass(frozen=True, slots=True)
class _Known:
    """What the receiver read of a token, kept by the process between requests (PostgreSQL):
    the receiver, its plain secret and the connection's kind and options. Used only for a
    notification that is stored; the statement that stores it checks that the receiver and
    its connection are still exactly these (`_record_in_one_statement`), else the request
    starts again from the database."""

    receiver: EventReceiver
    secret: bytes
    options: str  # the connection's options as JSON, compared as jsonb


_KNOWN_MAX = 256
_known: dict[str, _Known] = {}
_known_lock = threading.Lock()


def _remembered(token: str) -> _Known | None:
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    return _known.get(token)


def _remember(receiver: EventReceiver) -> None:
    if connection.vendor != "postgresql" or receiver.registry is None:
        return
    secret = receiver.plain_secret()
    if not secret:
        return
    known = _Known(receiver, secret, json.dumps(receiver.registry.options or {}))
    with _known_lock:
        _known.pop(receiver.token, None)
        while len(_known) >= _KNOWN_MAX:
            _known.pop(next(iter(_known)))
        _known[receiver.token] = known


def _forget(token: str) -> None:
    with _known_lock:
        _known.pop(token, None)


def receive(token: str, headers, stream, content_length) -> int:
    """Handle one POST to a receiver URL; the HTTP status to answer. Never calls a registry.

    A notification for a token this process has seen is stored without reading the receiver
    again (one statement: `_receive_known`); anything else -- a refusal, an ignored event, a
    receiver or connection that changed -- reads it from the database and decides as the
    first time."""
    known = _remembered(token)
    receiver = known.receiver if known is not None else _receiver_of(token)
    if receiver is None or not receiver.enabled:
        return 404
    limited = _rate_limited(token)
    body = _Body(stream, content_length)
    if known is not None:
        if not limited:
            status = _receive_known(known, headers, body)
            if status is not None:
                return status
        _forget(token)
        receiver = _receiver_of(token)
        if receiver is None or not receiver.enabled:
            return 404
    if limited:
        receiver.count("refused_rate_limited")
        return 429
    raw = body.read()
    if raw is None:
        receiver.count("refused_too_large")
        return 413
    if not receiver.authenticates(headers, raw):
        receiver.count("refused_secret")
        return 401
    if receiver.registry is None:
        receiver.count("ignored_removed")
        return 202
    try:
        parsed = parse(receiver.kind, raw)
    except Malformed:
        receiver.count("refused_malformed")
        return 400
    for what, n in parsed.ignored.items():
        receiver.count(f"ignored_{what}", n)
    if parsed.pulls and receiver.kind == Registry.Kind.OTHER:
        now = timezone.now()
        pulls = [(p, d, t, usage.pull_time(when, now)) for p, d, t, when in parsed.pulls]
        with transaction.atomic():
            usage.record_pulls(receiver.registry_id, pulls)
    types = enabled_types(receiver.registry)
    wanted = {key: action for key, action in parsed.touched.items() if key[0] in types}
    receiver.count("ignored_type", len(parsed.touched) - len(wanted))
    if not wanted:
        return 202
    record(receiver, parsed, wanted, raw)
    _remember(receiver)
    return 202


def _receive_known(known: _Known, headers, body: _Body) -> int | None:
    """The status of a notification that only needs storing, decided with what the process
    remembers of its receiver; None when the request needs the receiver read again (anything
    to refuse, count or ignore, or a receiver or connection that changed since)."""
    receiver = known.receiver
    raw = body.read()
    if raw is None or not receiver.authenticates(headers, raw, known.secret):
        return None
    try:
        parsed = parse(receiver.kind, raw)
    except Malformed:
        return None
    if parsed.ignored or parsed.pulls:
        return None
    types = enabled_types(receiver.registry)
    wanted = {key: action for key, action in parsed.touched.items() if key[0] in types}
    if not wanted or len(wanted) < len(parsed.touched):
        return None
    key, now, paths, action = _event_row(raw, parsed, wanted)
    stored = _record_in_one_statement(receiver, key, now, action, paths, wanted, known=known)
    if stored is None:
        return None
    _after_record(receiver, duplicate=not stored)
    return 202


def _event_row(body: bytes, parsed: Parsed, wanted: dict):
    ids = "\n".join(parsed.ids)
    key = hashlib.sha256(("ids:" + ids).encode() if ids else body).hexdigest()
    paths = [path for _type, path in wanted][:MAX_REPOSITORIES_PER_EVENT]
    return key, timezone.now(), paths, Parsed(touched=wanted).action


def _after_record(receiver: EventReceiver, *, duplicate: bool) -> None:
    # After the COMMIT: a burst's events all upsert the same pending rows, so the cache
    # round trip is not spent holding their row locks.
    if duplicate:
        receiver.count("duplicates")
    else:
        schedule_refresh(receiver.registry_id)


def record(receiver: EventReceiver, parsed: Parsed, wanted: dict, body: bytes) -> bool:
    """Store the event (once) and mark its repositories pending; False for a duplicate."""
    key, now, paths, action = _event_row(body, parsed, wanted)
    # One transaction per notification, whose COMMIT does not wait for the disk on
    # PostgreSQL (the receiver's answer time is mostly fsyncs otherwise): a database crash
    # can lose the last fraction of a second of events, which the daily sync makes good.
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        duplicate = not _record_in_one_statement(receiver, key, now, action, paths, wanted)
    else:
        with transaction.atomic():
            _commit_without_waiting_for_disk()
            duplicate = not _insert_event(receiver.pk, key, now, action, paths)
            if not duplicate:
                mark_pending(receiver.registry_id, wanted.keys(), now, schedule=False)
    _after_record(receiver, duplicate=duplicate)
    return not duplicate


def _record_in_one_statement(
    receiver: EventReceiver,
    key: str,
    now,
    action: str,
    paths: list[str],
    wanted: dict,
    known: _Known | None = None,
) -> bool | None:
    """PostgreSQL: what the transaction of `record` does, as one statement in autocommit (its
    own transaction, one round trip instead of five): the event unless its key is known, then
    the pending rows if it was new, the COMMIT not waiting for the disk. Whether it was new.

    `known`: write only if the receiver is still enabled with the same secret and token and
    its connection still has the same kind and options; None (nothing written) if not."""
    event = RegistryEvent._meta
    pending = RefreshPending._meta.db_table
    marked = connection.ops.adapt_datetimefield_value(now)
    values = ", ".join(["(%s, %s, %s, %s::timestamptz)"] * len(wanted))
    check, check_params = "SELECT 1", []
    if known is not None:
        check = (
            f"SELECT 1 FROM {EventReceiver._meta.db_table} r "
            f"JOIN {Registry._meta.db_table} g ON g.id = r.registry_id "
            "WHERE r.id = %s AND r.token = %s AND r.enabled AND r.secret_encrypted = %s "
            "AND g.id = %s AND g.kind = %s AND g.options = %s::jsonb"
        )
        check_params = [
            receiver.pk,
            receiver.token,
            receiver.secret_encrypted,
            receiver.registry_id,
            receiver.registry.kind,
            known.options,
        ]
    sql = (
        f"WITH ok AS ({check}), "
        "s AS (SELECT set_config('synchronous_commit', 'off', true) FROM ok), "
        f"e AS (INSERT INTO {event.db_table} (receiver_id, key, received_at, action, repositories) "
        "SELECT %s, %s, %s, %s, %s FROM s "
        "ON CONFLICT (receiver_id, key) DO NOTHING RETURNING id), "
        f"p AS (INSERT INTO {pending} (registry_id, type, path, marked_at) "
        f"SELECT * FROM (VALUES {values}) v WHERE EXISTS (SELECT 1 FROM e) "
        "ON CONFLICT (registry_id, type, path) DO UPDATE SET marked_at = excluded.marked_at) "
        "SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM e)"
    )
    repositories = event.get_field("repositories").get_db_prep_save(paths, connection)
    params = [*check_params, receiver.pk, key, marked, action, repositories]
    params += [x for type_, path in wanted for x in (receiver.registry_id, type_, path, marked)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        valid, stored = cursor.fetchone()
    if not valid:
        return None
    return stored == 1


def _insert_event(receiver_id: int, key: str, now, action: str, paths: list[str]) -> bool:
    """Store an event unless its key is known; whether it was new (one statement, no
    savepoint: PostgreSQL and SQLite 3.35+ both take ON CONFLICT ... RETURNING)."""
    table = RegistryEvent._meta.db_table
    repositories = RegistryEvent._meta.get_field("repositories")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (receiver_id, key, received_at, action, repositories) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (receiver_id, key) DO NOTHING RETURNING id",
            [
                receiver_id,
                key,
                connection.ops.adapt_datetimefield_value(now),
                action,
                repositories.get_db_prep_save(paths, connection),
            ],
        )
        return cursor.fetchone() is not None


def mark_pending(
    registry_id: int, repositories, now=None, *, force: bool = False, schedule: bool = True
) -> None:
    """Upsert one pending row per repository and enqueue a refresh of the connection, at most
    one per coalescing window (`force`: enqueue whatever the window; `schedule` False: the
    caller enqueues)."""
    now = now or timezone.now()
    keys = list(repositories)
    if keys:
        marked = connection.ops.adapt_datetimefield_value(now)
        values = ", ".join(["(%s, %s, %s, %s)"] * len(keys))
        params = [x for type_, path in keys for x in (registry_id, type_, path, marked)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {RefreshPending._meta.db_table} "
                f"(registry_id, type, path, marked_at) VALUES {values} "
                "ON CONFLICT (registry_id, type, path) DO UPDATE SET marked_at = excluded.marked_at",
                params,
            )
    if schedule:
        schedule_refresh(registry_id, force=force)


def coalesce_seconds() -> float:
    return settings.REGISTRY_EVENTS_COALESCE_MS / 1000


def _queued_key(registry_id: int) -> str:
    return f"imagesync:events:queued:{registry_id}"


def schedule_refresh(registry_id: int, *, force: bool = False) -> None:
    """Enqueue a refresh of the connection unless one was enqueued within the coalescing
    window (a key in the cache, set if absent: one Redis SET NX per event)."""
    from imagesync.tasks import enqueue_event_refresh

    window = max(1, int(coalesce_seconds() + 0.999))
    try:
        fresh = _add(_queued_key(registry_id), window)
    except Exception:
        fresh = True
    if fresh or force:
        transaction.on_commit(lambda: enqueue_event_refresh(registry_id))


# --- the refresh ----------------------------------------------------------------------------


def refresh_registry(registry_id: int, *, wait: bool = True) -> int | None:
    """Refresh every pending repository of a connection as one SyncTask (trigger "event");
    its id, or None when there was nothing to do. `wait`: first let the burst's coalescing
    window pass (the worker does; tests call it with wait=False)."""
    with db_guard():
        registry = Registry.objects.select_related("project").filter(pk=registry_id).first()
        if registry is None:
            return None
        _free_abandoned(registry)
        marks = _free(registry).aggregate(first=Min("marked_at"), last=Max("marked_at"))
    if marks["first"] is None:
        return None
    if wait:
        _wait_for_the_burst(registry, marks["first"], marks["last"])
    with db_guard():
        task = claim(registry)
    if task is None:
        return None
    try:
        Refresh(task, registry).run()
    finally:
        with db_guard():
            again = release(task)
            task.conclude()
            # A mark made after the claim, while this refresh ran, found the window's key
            # and enqueued nothing: drop the key, then look, so that no mark is left behind
            # (a mark made after the look finds no key and enqueues itself).
            try:
                cache.delete(_queued_key(registry.pk))
            except Exception:
                logger.warning("The registry events queue key could not be dropped.")
            again = again or _free(registry).exists()
            if again:
                schedule_refresh(registry.pk, force=True)
            RegistryEvent.objects.filter(
                receiver__registry=registry, received_at__lt=timezone.now() - EVENT_RETENTION
            ).delete()
    return task.pk


def requeue_forgotten(older_than: timedelta = timedelta(seconds=30)) -> int:
    """Enqueue a refresh of every connection with a pending mark that no refresh took in time
    (the enqueue failed, or a worker died holding it); the number of connections. The
    watchdog calls it every minute."""
    cutoff = timezone.now() - older_than
    waiting = RefreshPending.objects.filter(marked_at__lt=cutoff).filter(
        Q(task__isnull=True) | ~Q(task__status__in=SyncTask.ACTIVE_STATUSES)
    )
    registry_ids = set(waiting.values_list("registry_id", flat=True))
    for registry_id in registry_ids:
        schedule_refresh(registry_id, force=True)
    return len(registry_ids)


QUIET_SECONDS = 0.25  # a burst is over when no event came for this long


def _wait_for_the_burst(registry: Registry, first, last) -> None:
    """Sleep until the burst is over: no new mark for QUIET_SECONDS (one push of a multi-arch
    image is several manifest events milliseconds apart), or the coalescing window after its
    first mark has passed, whichever comes first. A lone push waits only the quiet time; a
    long burst is taken once a window."""
    window = coalesce_seconds()
    deadline = first + timedelta(seconds=window)
    while True:
        wake = min(deadline, last + timedelta(seconds=min(QUIET_SECONDS, window)))
        delay = (wake - timezone.now()).total_seconds()
        if delay <= 0:
            return
        time.sleep(min(delay, window))
        with db_guard():
            last = _free(registry).aggregate(last=Max("marked_at"))["last"] or last


def _free(registry: Registry):
    return RefreshPending.objects.filter(registry=registry, task__isnull=True)


def _free_abandoned(registry: Registry) -> None:
    """Free rows held by a refresh that ended without releasing them (its worker died)."""
    held = RefreshPending.objects.filter(registry=registry, task__isnull=False)
    stale = held.exclude(task__status__in=SyncTask.ACTIVE_STATUSES).values_list("pk", flat=True)
    RefreshPending.objects.filter(pk__in=list(stale)).update(task=None)


def claim(registry: Registry) -> SyncTask | None:
    """A running event task holding every free pending repository of the connection, or None
    when there is none."""
    from imagesync.sync.run import worker_name

    with transaction.atomic():
        task = SyncTask.objects.create(
            project=registry.project,
            trigger=SyncTask.Trigger.EVENT,
            scope=SyncTask.Scope.REPOSITORIES,
        )
        now = timezone.now()
        # task_id IS NULL is re-checked on each row by the UPDATE itself: two claims at once
        # never take the same row.
        if not _free(registry).update(task=task, claimed_at=now):
            transaction.set_rollback(True)
            return None
    task.claim(worker_name())
    return task


def release(task: SyncTask) -> bool:
    """Drop the pending rows the refresh covered; free those marked again after its claim
    (their refresh comes next). True when some were."""
    held = RefreshPending.objects.filter(task=task)
    held.filter(marked_at__lte=F("claimed_at")).delete()
    return bool(held.update(task=None, claimed_at=None))


class Refresh:
    """One event refresh: the claimed repositories of one connection, re-listed through its
    client and reconciled by the sync engine's RegistryRun, each with its result row."""

    def __init__(self, task: SyncTask, registry: Registry) -> None:
        self.task = task
        self.registry = registry

    def run(self) -> None:
        with db_guard():
            rows = list(RefreshPending.objects.filter(task=self.task).order_by("path"))
            wanted = self._enabled(rows)
            repositories = [self._repository(row) for row in wanted]
            self.task.scope_repositories.set(repositories)
            results = self._results(repositories)
        run = EventRegistryRun(registry=self.registry)
        try:
            run.open()
        except Exception as exc:  # RegistryError, or a secret that cannot be decrypted
            logger.warning(
                "The client of registry %s could not be built: %r", self.registry.pk, exc
            )
            code = getattr(exc, "code", reasons.INTERNAL_ERROR)
            message = getattr(exc, "message", "The registry client could not be built.")
            for result_id in results.values():
                with db_guard(), transaction.atomic():
                    self.task.record_repository(result_id, failed=True, code=code, message=message)
            return
        jobs = [Job(self.task, results[repo.pk], repo, self.registry.pk) for repo in repositories]
        threads = max(1, min(run.cap, settings.SYNC_WORKERS, len(jobs)))
        try:
            if threads == 1:
                for job in jobs:
                    run.sync(job)
                    with db_guard():
                        self.task.beat()
            else:
                prefix = f"refresh-{self.task.pk}"
                with ThreadPoolExecutor(threads, thread_name_prefix=prefix) as pool:
                    for _outcome in pool.map(self._sync, [(run, job) for job in jobs]):
                        with db_guard():
                            self.task.beat()
        finally:
            run.close()
        if jobs:
            with db_guard():
                Registry.objects.filter(pk=self.registry.pk).update(last_synced_at=timezone.now())

    @staticmethod
    def _sync(item):
        from django.db import connection

        run, job = item
        try:
            return run.sync(job)
        finally:
            connection.close()

    def _enabled(self, rows: list[RefreshPending]) -> list[RefreshPending]:
        """The rows of types this connection follows; SWR ones need the SWR authorization."""
        types = set(enabled_types(self.registry))
        if types & set(SWR_TYPES) and not AuthorizationGrant.objects.swr_authorized(
            self.registry.project
        ):
            types -= set(SWR_TYPES)
        wanted = [row for row in rows if row.type in types]
        if len(wanted) < len(rows):
            receiver = EventReceiver.objects.filter(registry=self.registry).first()
            if receiver is not None:
                receiver.count("ignored_type", len(rows) - len(wanted))
        return wanted

    def _repository(self, row: RefreshPending) -> Repository:
        from imagesync.registries.base import RepositoryInfo

        info = RepositoryInfo.from_path(row.type, row.path)
        extra = {}
        if row.type == RepositoryType.HARBOR:
            extra = {"project": info.namespace}
        elif row.type == RepositoryType.JFROG:
            extra = {"repo_key": info.namespace, "image": info.name}
        repository, _ = Repository.objects.get_or_create(
            registry=self.registry,
            type=row.type,
            path=row.path,
            defaults={
                "namespace": info.namespace,
                "name": info.name,
                "extra": extra,
                "removed_at": None,
            },
        )
        repository.registry = self.registry
        return repository

    def _results(self, repositories: list[Repository]) -> dict[int, int]:
        """A pending result row per repository; repository id -> result id."""
        SyncTaskRepository.objects.bulk_create(
            [
                SyncTaskRepository(
                    task=self.task,
                    repository=repo,
                    registry_name=self.registry.name,
                    repository_type=repo.type,
                    repository_path=repo.path,
                )
                for repo in repositories
            ]
        )
        SyncTask.objects.filter(pk=self.task.pk).update(repositories_total=len(repositories))
        return dict(self.task.results.values_list("repository_id", "id"))


class EventRegistryRun(RegistryRun):
    """RegistryRun for a refresh: a repository the registry says it does not have, and that a
    successful listing of the registry's repositories no longer shows, is emptied (as a full
    sync empties a vanished repository) instead of failing."""

    listing: set[tuple[str, str]] | None = None

    def _fail(self, job: Job, code: str, message: str) -> Outcome:
        if code == reasons.NOT_FOUND and self._absent(job.repository):
            return self._empty(job)
        return RegistryRun._fail(job, code, message)

    def _absent(self, repository: Repository) -> bool:
        if self.listing is None:
            try:
                found = self.client.list_repositories([repository.type])
                self.listing = {(info.type, info.path) for info in found}
            except Exception:
                logger.warning("Listing the repositories of registry %s failed.", self.registry.pk)
                return False
        return (repository.type, repository.path) not in self.listing

    def _empty(self, job: Job) -> Outcome:
        from imagesync.history import Change, forget_images

        with db_guard(), transaction.atomic():
            if not _still_unfinished(job.result_id):
                return Outcome(job, SyncTaskRepository.Status.SKIPPED)
            now = timezone.now()
            repository = job.repository
            if not repository.take_listing(now):
                job.task.record_repository(job.result_id, at=now)
                return Outcome(job, SyncTaskRepository.Status.FINISHED)
            Image.objects.filter(repository=repository, tagged=False).delete()  # no history
            removed = forget_images(repository, now, job.task, source=Change.Source.EVENT)
            Repository.objects.filter(pk=repository.pk).update(
                removed_at=now, image_count=0, last_synced_at=now
            )
            job.task.record_repository(job.result_id, removed=removed, at=now)
        return Outcome(job, SyncTaskRepository.Status.FINISHED)


# --- what the page, the command and the API show --------------------------------------------


def summary(registry: Registry, base_url: str | None = None, secret: str | None = None) -> dict:
    """The connection's events setting as the page, `manage.py registry webhook` and the API
    show it: url, header, setup (with the secret only when it was just created or rotated,
    else a placeholder) and whether events are on."""
    receiver = EventReceiver.objects.filter(registry=registry).first()
    if receiver is None:
        return {"enabled": False, "url": None, "secret": None, "header": None, "setup": None}
    url = receiver.url(base_url)
    return {
        "enabled": receiver.enabled,
        "url": url,
        "secret": secret,
        "header": receiver.header_name,
        "header_value": receiver.header_value(secret) if secret else None,
        "setup": receiver.setup(url, secret),
    }


# --- setup texts ----------------------------------------------------------------------------


def setup_text(kind: str, url: str, secret: str) -> str:
    """The registry side of the setup, ready to paste."""
    if kind == Registry.Kind.OTHER:
        return (
            "notifications:\n"
            "  events:\n"
            "    includereferences: true\n"
            "  endpoints:\n"
            "    - name: image-inventory\n"
            f"      url: {url}\n"
            "      headers:\n"
            f"        Authorization: [Bearer {secret}]\n"
            "      timeout: 2s\n"
            "      threshold: 5\n"
            "      backoff: 1s\n"
            "      ignoredmediatypes: [application/octet-stream]\n"
            "      ignore:\n"
            "        mediatypes:\n"
            "          - application/vnd.docker.image.rootfs.diff.tar.gzip\n"
            "          - application/vnd.oci.image.layer.v1.tar+gzip\n"
        )
    if kind == Registry.Kind.HARBOR:
        policy = {
            "name": "image-inventory",
            "enabled": True,
            "event_types": ["PUSH_ARTIFACT", "DELETE_ARTIFACT"],
            "targets": [
                {
                    "type": "http",
                    "address": url,
                    "auth_header": f"Bearer {secret}",
                    "skip_cert_verify": False,
                    "payload_format": "Default",
                }
            ],
        }
        return (
            "# POST /api/v2.0/projects/{project_name_or_id}/webhook/policies (each project)\n"
            + json.dumps(policy, indent=2)
            + "\n"
        )
    if kind == Registry.Kind.JFROG:
        subscription = {
            "key": "image-inventory",
            "description": "Image inventory console",
            "enabled": True,
            "event_filter": {
                "domain": "docker",
                "event_types": ["pushed", "deleted", "promoted"],
                "criteria": {"anyLocal": True, "anyRemote": False, "repoKeys": []},
            },
            "handlers": [
                {
                    "handler_type": "webhook",
                    "url": url,
                    "secret": secret,
                    "use_secret_for_signing": True,
                }
            ],
        }
        return "# POST /event/api/v1/subscriptions\n" + json.dumps(subscription, indent=2) + "\n"
    policy = {
        "name": "image-inventory",
        "enabled": True,
        "event_types": ["PUSH_ARTIFACT"],
        "targets": [
            {
                "type": "http",
                "address": url,
                "auth_header": f"Authorization:Bearer {secret}",
                "skip_cert_verify": False,
            }
        ],
    }
    return (
        "# SWR Enterprise Edition (push events only; deletions reach the console with the "
        "daily sync)\n"
        "# POST /v2/{project_id}/instances/{instance_id}/namespaces/{namespace_name}"
        "/webhook/policies\n" + json.dumps(policy, indent=2) + "\n"
    )
