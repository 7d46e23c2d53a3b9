"""A real Distribution registry (Debian `docker-registry`) for end-to-end tests and benchmarks.

Fixtures (registered for every test through `pytest_plugins` in tests/conftest.py):

* `distribution_registry` (session scope): ONE registry process for the whole test session,
  with htpasswd Basic auth, filesystem storage in a temporary directory and deletion enabled.
  Tests share it, so a test must only look at its own repositories: use `registry_namespace`.
* `registry_namespace` (function scope): a unique path prefix such as `"t3f9a1c2"` inside the
  shared registry; push to `f"{registry_namespace}/app"` and list with the client's
  `repositories` option, or filter the catalog by the prefix.
* `fresh_registry` (function scope): a brand-new, empty registry process for one test (about
  0.3 s to start). Use it when the test needs to see the whole catalog, e.g. a sync of
  "all repositories" that must not meet other tests' repositories.

Every fixture yields a `RunningRegistry`:

    reg.url, reg.host, reg.username, reg.password   # http://127.0.0.1:PORT, "127.0.0.1:PORT"
    reg.client_config(**options) -> ClientConfig    # credentials + allow_insecure_http=True
    reg.session() -> requests.Session               # authenticated, for direct v2 calls
    mark = reg.log_mark(); ...; reg.served(since=mark) -> list[ServedRequest]
    reg.blob_requests(digests, since=mark)          # requests for those blobs (want: [])

`served()` parses the registry's access log (Apache combined format on its stdout), so a test
can prove that no layer blob was ever requested. To push content use tests/support/registry_seed.

Outside pytest (bench/bench_connectors.py) use the plain functions `start_registry(workdir)` and
`stop_registry(reg)`.

When /usr/bin/docker-registry or htpasswd is missing the fixtures call
`tests.support.tools.missing_tool(...)`: skipped on a laptop, a failure in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REGISTRY_BIN = os.environ.get("IMAGESYNC_REGISTRY_BIN", "/usr/bin/docker-registry")
HTPASSWD_BIN = shutil.which("htpasswd") or "/usr/bin/htpasswd"
USERNAME = "seeder"
PASSWORD = "registry-test-pass-7c1e"

# 127.0.0.1 - user [27/Nov/2026:08:07:07 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
_ACCESS_RE = re.compile(
    r'^\S+ \S+ (?P<user>\S+) \[[^\]]*\] "(?P<method>[A-Z]+) (?P<uri>\S+) [^"]*" (?P<status>\d{3}) '
)


class RegistryUnavailable(RuntimeError):
    """The registry binary or htpasswd is missing, or the process did not start."""


@dataclass(frozen=True)
class ServedRequest:
    """One line of the registry's access log."""

    method: str
    uri: str  # path and query, as requested
    status: int
    user: str

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]


@dataclass
class RunningRegistry:
    """A running Distribution registry process and how to talk to it."""

    url: str
    host: str
    username: str
    password: str
    storage: Path  # filesystem storage root (rootdirectory)
    access_log: Path
    error_log: Path
    process: subprocess.Popen = field(repr=False)

    def client_config(self, **options):
        """A ClientConfig for OciClient pointing at this registry (plain http is allowed)."""
        from imagesync.registries.base import ClientConfig

        return ClientConfig(
            url=self.url,
            username=self.username,
            secret=self.password,
            allow_insecure_http=True,
            options=dict(options),
        )

    def session(self) -> requests.Session:
        session = requests.Session()
        session.auth = (self.username, self.password)
        return session

    def served(self, since: int = 0) -> list[ServedRequest]:
        """Requests the registry has served (after `log_mark()` value `since`)."""
        entries = []
        try:
            lines = self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        for line in lines[since:]:
            match = _ACCESS_RE.match(line)
            if match:
                entries.append(
                    ServedRequest(
                        match["method"], match["uri"], int(match["status"]), match["user"]
                    )
                )
        return entries

    def log_mark(self) -> int:
        """A position in the access log; pass it to `served(since=...)`."""
        try:
            return len(self.access_log.read_text(errors="replace").splitlines())
        except FileNotFoundError:
            return 0

    def blob_requests(self, digests: Iterable[str], since: int = 0) -> list[ServedRequest]:
        """Requests served for any of these blob digests (e.g. layer digests: expect [])."""
        wanted = set(digests)
        return [
            r
            for r in self.served(since)
            if "/blobs/" in r.path and r.path.rsplit("/", 1)[-1] in wanted
        ]


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM the registry when the test process dies, so a
    killed pytest run never leaves a registry behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tools_missing() -> str:
    """Why a registry cannot be started here ("" when it can)."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        return f"{REGISTRY_BIN} is not installed (Debian package docker-registry)"
    if not os.access(HTPASSWD_BIN, os.X_OK):
        return "htpasswd is not installed (Debian package apache2-utils)"
    return ""


CONFIG = """\
version: 0.1
log:
  level: warn
  formatter: text
storage:
{cache}  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secret}
catalog:
  maxentries: {catalog_max_entries}
{auth}{notifications}"""

HTPASSWD_AUTH = """auth:
  htpasswd:
    realm: imagesync-test
    path: {htpasswd}
"""


def start_registry(
    workdir: str | os.PathLike | None = None,
    *,
    username: str = USERNAME,
    password: str = PASSWORD,
    catalog_max_entries: int = 1000,
    timeout: float = 20.0,
    auth: str = "basic",
    blob_cache: bool = False,
    notifications: str = "",
) -> RunningRegistry:
    """Start `docker-registry serve` on a free loopback port and wait until /v2/ answers.

    `auth="basic"` (the default) protects it with htpasswd Basic auth; `auth="none"` leaves it
    open (benchmarks: Distribution checks the bcrypt hash on every request, which costs
    milliseconds of CPU that a production registry with bearer tokens does not spend). The
    credentials are set either way; an open registry ignores them.

    The registry is terminated when the *thread* that started it ends (PR_SET_PDEATHSIG), so
    start it from the main thread (pytest fixtures and scripts do).

    `notifications`: a `notifications:` block (YAML, at the top level) appended to config.yml,
    e.g. `notifications_block(url, secret)`, so the registry POSTs its events there.

    Raises RegistryUnavailable when a tool is missing or the process does not come up."""
    if auth not in ("basic", "none"):
        raise ValueError(f"auth must be 'basic' or 'none', not {auth!r}")
    missing = tools_missing()
    if missing:
        raise RegistryUnavailable(missing)
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="imagesync-registry-"))
    base.mkdir(parents=True, exist_ok=True)
    storage = base / "storage"
    storage.mkdir(exist_ok=True)
    htpasswd = base / "htpasswd"
    # bcrypt cost 4 (the minimum): the registry checks it on every request.
    line = subprocess.run(
        [HTPASSWD_BIN, "-Bbn", "-C", "4", username, password],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    htpasswd.write_text(line + "\n")
    last_error = ""
    for _attempt in range(3):  # the free port can be taken between probe and bind
        port = free_port()
        config = base / "config.yml"
        config.write_text(
            CONFIG.format(
                storage=storage,
                port=port,
                secret=uuid.uuid4().hex,
                catalog_max_entries=catalog_max_entries,
                auth=HTPASSWD_AUTH.format(htpasswd=htpasswd) if auth == "basic" else "",
                cache="  cache:\n    blobdescriptor: inmemory\n" if blob_cache else "",
                notifications=notifications,
            )
        )
        access_log = base / f"access-{port}.log"
        error_log = base / f"error-{port}.log"
        with open(access_log, "wb") as out, open(error_log, "wb") as err:
            process = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        reg = RunningRegistry(
            url=f"http://127.0.0.1:{port}",
            host=f"127.0.0.1:{port}",
            username=username,
            password=password,
            storage=storage,
            access_log=access_log,
            error_log=error_log,
            process=process,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = requests.get(f"{reg.url}/v2/", auth=(username, password), timeout=1)
                if answer.status_code == 200:
                    return reg
            except requests.RequestException:
                pass
            time.sleep(0.05)
        stop_registry(reg)
        last_error = error_log.read_text(errors="replace")[-2000:]
    raise RegistryUnavailable(f"docker-registry did not start: {last_error}")


def notifications_block(url: str, authorization: str) -> str:
    """A Distribution `notifications:` block sending manifest events to `url` with this
    Authorization header (layer blobs ignored), retried every 0.5 s while refused."""
    return (
        "notifications:\n"
        "  events:\n"
        "    includereferences: true\n"
        "  endpoints:\n"
        "    - name: console\n"
        f"      url: {url}\n"
        "      headers:\n"
        f"        Authorization: [{json.dumps(authorization)}]\n"
        "      timeout: 2s\n"
        "      threshold: 3\n"
        "      backoff: 500ms\n"
        "      ignoredmediatypes: [application/octet-stream]\n"
        "      ignore:\n"
        "        mediatypes:\n"
        "          - application/vnd.docker.image.rootfs.diff.tar.gzip\n"
        "          - application/vnd.oci.image.layer.v1.tar+gzip\n"
        "          - application/vnd.docker.container.image.v1+json\n"
        "          - application/vnd.oci.image.config.v1+json\n"
    )


def restart_registry(reg: RunningRegistry, timeout: float = 20.0) -> RunningRegistry:
    """Stop the registry process and start it again on the same port, configuration and
    storage (what was in its in-memory event queue is lost, as in production)."""
    stop_registry(reg)
    config = reg.storage.parent / "config.yml"
    with open(reg.access_log, "ab") as out, open(reg.error_log, "ab") as err:
        reg.process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and reg.process.poll() is None:
        try:
            answer = requests.get(f"{reg.url}/v2/", auth=(reg.username, reg.password), timeout=1)
            if answer.status_code == 200:
                return reg
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RegistryUnavailable("docker-registry did not start again")


def stop_registry(reg: RunningRegistry, *, remove: bool = False) -> None:
    """Terminate the process (kill after 5 s); optionally delete its storage."""
    if reg.process.poll() is None:
        reg.process.terminate()
        try:
            reg.process.wait(5)
        except subprocess.TimeoutExpired:
            reg.process.kill()
            reg.process.wait(5)
    if remove:
        shutil.rmtree(reg.storage.parent, ignore_errors=True)


def _start_or_skip(workdir: Path) -> RunningRegistry:
    from tests.support.tools import missing_tool

    missing = tools_missing()
    if missing:
        missing_tool(missing)
    return start_registry(workdir)


@pytest.fixture(scope="session")
def distribution_registry(tmp_path_factory) -> Iterator[RunningRegistry]:
    """One Distribution registry shared by the session (isolate tests by registry_namespace)."""
    reg = _start_or_skip(tmp_path_factory.mktemp("distribution"))
    try:
        yield reg
    finally:
        stop_registry(reg)


@pytest.fixture
def registry_namespace(distribution_registry) -> str:
    """A path prefix no other test uses, e.g. "t3f9a1c2" (lowercase, valid in a repo name)."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def fresh_registry(tmp_path) -> Iterator[RunningRegistry]:
    """A new, empty registry process for this test only."""
    reg = _start_or_skip(tmp_path / "distribution")
    try:
        yield reg
    finally:
        stop_registry(reg)
