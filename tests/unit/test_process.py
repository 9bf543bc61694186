"""The malloc arena cap that service processes apply at start."""

from __future__ import annotations

import subprocess
import sys

import pytest
from dvcpulse_common.process import cap_malloc_arenas, tune_gc


def test_zero_keeps_the_default():
    assert cap_malloc_arenas(0) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_cap_is_taken_by_glibc_in_a_fresh_process():
    # In a process of its own: the cap is process-wide and must not leak into the test run.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dvcpulse_common.process import cap_malloc_arenas, tune_gc; print(cap_malloc_arenas(2))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"


def test_gc_tuning_in_a_fresh_process():
    code = (
        "import gc; from dvcpulse_common.process import tune_gc; "
        "before = gc.get_threshold(); print(tune_gc(0), gc.get_threshold() == before); "
        "print(tune_gc(20000), gc.get_threshold()[0], gc.get_freeze_count() > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "20000", "True"]


def test_zero_keeps_the_collector_as_it_is():
    assert tune_gc(0) is False
