"""Keep a worker process's memory from spreading over its threads.

glibc gives threads that allocate at the same time their own malloc arenas (up to eight per
core), and memory freed in one arena is reused by that arena only. A sync runs SYNC_WORKERS
threads, plus each registry client's request threads, that allocate and free whole repository
listings: the freed memory stays spread over a dozen arenas, each as large as its busiest
moment. With two arenas (bench/bench_memory.py, 1,000,000 images in 10 repositories of
100,000 tags through the real OCI client) the peak of a first sync fell from 396 to 262 MB and
of an unchanged re-sync from 493 to 405 MB, at the same speed.

`limit_malloc_arenas` sets glibc's arena limit (M_ARENA_MAX) to ARENAS when the process starts
(imagesync.apps), in every process that loads the console: the worker, the web processes,
`manage.py sync_images`. The environment's MALLOC_ARENA_MAX, when set, wins (glibc read it at
start). Where the C library is not glibc, nothing changes.
"""

from __future__ import annotations

import ctypes
import os

ARENAS = 2
M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Limit glibc's malloc arenas to `arenas`; whether the limit was set here."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the symbols the process has loaded, the C library's too
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: M_ARENA_MAX means nothing elsewhere
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1
