"""Process-wide settings a service applies once, before it starts its threads."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
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


def tune_gc(gen0_threshold: int) -> bool:
    """Collect young objects every `gen0_threshold` allocations instead of every 700, after
    moving everything alive at start-up (modules, registry, the app) out of the collector's
    sight (`gc.freeze`). A batch of 10,000 stream entries allocates ~50,000 objects: at 700 the
    collector ran ~70 times a batch and rescanned the batch each time (scoring ~1.3x faster
    with this; docs/performance.md). 0 keeps Python's defaults. True when changed."""
    if gen0_threshold <= 0:
        return False
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, max(gen1, 20), max(gen2, 100))
    return True
