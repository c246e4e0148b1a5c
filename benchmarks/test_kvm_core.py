"""KVM core figures that have no native or ptrace counterpart: the cost of one page-fault exit.

(The syscall exit floor, clock_gettime and start-up moved into the comparison
modules: test_syscalls.py and test_startup.py.)
"""
from __future__ import annotations

import statistics
import time

from bench_util import keystone_guest
from kvmbox.platform.base import Fault


def test_fault_exit_cost(benchmark, sandbox, figures):
    """A #PF taken in ring 3, reported to the host and resumed (the host maps nothing: same fault again)."""
    aspace, ctx, cleanup = keystone_guest(sandbox._platform, "mov rax, 0xa00000\n mov rbx, [rax]\n")
    n = 2000
    samples: list[float] = []

    def faults() -> None:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            ev = ctx.switch(aspace)
            assert isinstance(ev, Fault)
        samples.append((time.perf_counter_ns() - t0) / n)

    try:
        benchmark.pedantic(faults, rounds=3, iterations=1)
    finally:
        cleanup()
    figures.add("page-fault exit, ring 3 -> IDT -> host -> iretq",
                f"{statistics.median(samples) / 1000:.1f} µs", "KVM platform, no Sentry work")
