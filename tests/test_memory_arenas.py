"""A process that loads the console keeps glibc's malloc arenas to two (imagesync.memory), so
that the memory a sync's threads free is not left spread over a dozen arenas; an explicit
MALLOC_ARENA_MAX wins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Eight threads allocate at the same time (each waits for the others before it ends), then
# glibc's malloc_info says how many arenas ("<heap nr=...>") the process has.
SCRIPT = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    if sys.argv[1] == "console":
        import django
        django.setup()
    barrier = threading.Barrier(8)
    def work():
        kept = [bytearray(3000) for _ in range(300)]
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = tempfile.mktemp()
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    text = open(path).read()
    os.unlink(path)
    print(text.count("<heap nr="))
    """
)


def arenas(mode: str, **env: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    environment.update(env, DJANGO_SETTINGS_MODULE="console.settings")
    answer = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(answer.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def glibc():
    import ctypes

    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except AttributeError:
        pytest.skip("the C library is not glibc")


def test_a_process_of_the_console_keeps_two_malloc_arenas(glibc):
    assert arenas("plain") > 2  # without it, each thread allocating at once gets its own
    assert arenas("console") <= 2


def test_the_environment_s_malloc_arena_max_wins(glibc):
    assert 2 < arenas("console", MALLOC_ARENA_MAX="4") <= 4
