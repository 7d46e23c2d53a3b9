"""gunicorn settings of the console's web processes (bin/run and the systemd unit use them).

Everything a deployment tunes comes from the environment, like the Django settings:
BIND, WEB_CONCURRENCY, WEB_THREADS, WEB_TIMEOUT. A bad value stops start-up with an error
naming the variable.
"""

from __future__ import annotations

import os


def _whole_number(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number (got {raw!r}).") from None
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum} (got {value}).")
    return value


wsgi_app = "console.wsgi:application"
bind = [address.strip() for address in os.environ.get("BIND", "127.0.0.1:8000").split(",")]
# One process per core (at least 2), each with 4 threads: the threads of a process overlap
# one request's Python with the others' database waits, the processes use every core. More
# processes only add work on the same cores: on 2 cores at 100,000 images (PostgreSQL on the
# same cores), 2 x 4 served 1.12-1.34x the requests/s of 5 x 2 (gunicorn's 2 x cores + 1,
# meant for sync workers) in three runs, at 25-29 instead of 28-30 ms of CPU per request
# (bench/README.md, bench_load.py).
workers = _whole_number("WEB_CONCURRENCY", max(2, os.cpu_count() or 1))
# Threads also keep a slow client's connection (keep-alive, a large CSV export) from holding a
# whole process; 8 in all on 2 cores keeps the SQLite writers few.
worker_class = "gthread"
threads = _whole_number("WEB_THREADS", 4)
# A request that takes longer than this is cut off and its process replaced (the largest
# export of 100,000 images streams in about 10 s here).
timeout = _whole_number("WEB_TIMEOUT", 60)
graceful_timeout = 20  # a stop lets requests in progress finish, then ends them
keepalive = 5
# A process is replaced after this many requests (with jitter, so not all at once): a slow
# leak in a dependency can never grow without limit.
max_requests = 5000
max_requests_jitter = 500
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s"'
# The console sits behind a reverse proxy on the same host in production (docs/deployment.md);
# only that proxy's X-Forwarded-* headers are believed.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = "imagesync-web"
# gunicorn's control socket would sit at one fixed path in the home directory, shared by every
# instance of the user; the console does not use it.
control_socket_disable = True
