"""Compute-bound: SHA-256 over 64 MiB of generated memory (no syscalls in the loop)."""
from __future__ import annotations

import pytest

from bench_util import MODES, per_iteration_ns, require


@pytest.mark.benchmark(group="sha256 64 MiB")
@pytest.mark.parametrize("mode", MODES)
def test_sha256(benchmark, targets, results, bench_programs, mode):
    target = require(targets, results, "sha256", mode)
    # argv[1] is MiB: 0 vs 64 cancels start-up; the buffer generation is part of the work.
    ns = per_iteration_ns(benchmark, target, str(bench_programs / "sha256"), 0, 64)
    results.record("sha256", mode, ns * 64)   # per MiB -> per 64 MiB
