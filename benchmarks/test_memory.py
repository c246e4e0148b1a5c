"""Memory management: page-fault heavy 256 MiB rounds and small-mapping mmap/mprotect/munmap churn."""
from __future__ import annotations

import pytest

from bench_util import MODES, per_iteration_ns, require

# 256 MiB rounds: ~0.1 s natively, ~1.1 s on KVM here.
PAGEFAULT = {"native": 4, "kvm": 2, "ptrace": 2}
# One iteration is 4 syscalls and a few touches: ~25 µs natively, ~0.5 ms on KVM here.
CHURN = {"native": 20_000, "kvm": 1_000, "ptrace": 1_000}


@pytest.mark.benchmark(group="pagefault 256 MiB")
@pytest.mark.parametrize("mode", MODES)
def test_pagefault(benchmark, targets, results, bench_programs, mode):
    target = require(targets, results, "pagefault", mode)
    ns = per_iteration_ns(benchmark, target, str(bench_programs / "pagefault"), 0, PAGEFAULT[mode], rounds=3)
    results.record("pagefault", mode, ns)


@pytest.mark.benchmark(group="mmap churn")
@pytest.mark.parametrize("mode", MODES)
def test_mmap_churn(benchmark, targets, results, bench_programs, mode):
    target = require(targets, results, "mmap_churn", mode)
    ns = per_iteration_ns(benchmark, target, str(bench_programs / "mmap_churn"), 0, CHURN[mode])
    results.record("mmap_churn", mode, ns)
