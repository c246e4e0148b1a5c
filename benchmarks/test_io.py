"""I/O: many small write(2)s to captured stdout (a pipe natively, the Result's buffer in a Sandbox)."""
from __future__ import annotations

import pytest

from bench_util import MODES, per_iteration_ns, require

WRITES = {"native": 200_000, "kvm": 5_000, "ptrace": 5_000}


@pytest.mark.benchmark(group="small writes")
@pytest.mark.parametrize("mode", MODES)
def test_small_writes(benchmark, targets, results, bench_programs, mode):
    target = require(targets, results, "writes", mode)
    ns = per_iteration_ns(benchmark, target, str(bench_programs / "writes"), 0, WRITES[mode])
    results.record("writes", mode, ns)
