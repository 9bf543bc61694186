"""Process-wide settings a service applies once, before it starts its threads."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def cap_malloc_arenas(arenas: int) -> bool:
    """Limit glibc's malloc arenas (as MALLOC_ARENA_MAX does). Each thread that allocates may
    otherwise get an arena of its own that keeps what it freed: with DuckDB's and Arrow's
    threads that is resident memory nobody uses. True when the limit was set; False where there
    is no glibc (the setting is then a no-op) or when `arenas` is 0 (glibc's default)."""
    if arenas <= 0 or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
