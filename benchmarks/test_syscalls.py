"""Syscall round trips: getpid (fast path and full Sentry path), clock_gettime, and each platform's bare trap floor."""
from __future__ import annotations

import statistics
import time

import pytest

from bench_util import MODES, Unavailable, keystone_guest, per_iteration_ns, require
from kvmbox.platform.base import SYSCALL

# Loop lengths per mode, sized so each run takes well under a second here
# (native getpid ~0.2 µs, KVM fast path ~3 µs, a KVM exit ~50 µs, ptrace ~10-60 µs).
GETPID = {"native": 1_000_000, "kvm": 200_000, "ptrace": 20_000}
# clock_gettime is a vDSO read (tens of ns) in all three modes: the loop must be long enough
# (~0.1 s) that its difference stands well above run-to-run noise (the short loops it had
# when the call still trapped gave negative per-call figures).
CLOCK = {"native": 3_000_000, "kvm": 3_000_000, "ptrace": 3_000_000}
N_FLOOR = 10_000


@pytest.mark.benchmark(group="getpid")
@pytest.mark.parametrize("mode", MODES)
def test_getpid(benchmark, targets, results, bench_programs, mode):
    """Default configuration: on KVM getpid is answered in the guest without an exit."""
    keys = ["getpid", "getpid_sentry"] if mode == "native" else ["getpid"]
    target = require(targets, results, keys, mode)
    ns = per_iteration_ns(benchmark, target, str(bench_programs / "getpid_loop"), 0, GETPID[mode])
    for k in keys:
        results.record(k, mode, ns)


@pytest.mark.benchmark(group="trap floor vs Sentry getpid")
@pytest.mark.parametrize("mode", ["kvm", "ptrace"])
def test_trap_floor_vs_sentry_getpid(benchmark, targets, results, bench_programs, mode):
    """Floor: a keystone guest loop of bare `syscall`s resumed with no Sentry work, on the platform's own
    Context; interleaved with getpid through the full Sentry path (fast_path=False) so both see the same load."""
    target = require(targets, results, ["trap_floor", "getpid_sentry"], mode, fast_path=False)
    platform = target.sandbox._platform
    try:
        aspace, ctx, cleanup = keystone_guest(platform, "top: mov eax, 999\n syscall\n jmp top\n")
    except Exception as e:  # noqa: BLE001 - a platform without the pieces the floor needs: say so
        results.unavailable("trap_floor", mode, f"no bare Context here: {type(e).__name__}: {e}")
        raise
    prog = str(bench_programs / "getpid_loop")
    floors: list[float] = []
    sentries: list[float] = []

    def one_round() -> None:
        t0 = time.perf_counter_ns()
        for _ in range(N_FLOOR):
            ctx.switch(aspace)
            ctx.set_return(1)
        floors.append((time.perf_counter_ns() - t0) / N_FLOOR)
        t_small = target.time([prog, "0"])
        t_big = target.time([prog, str(N_FLOOR)])
        sentries.append((t_big - t_small) / N_FLOOR)

    try:
        assert ctx.switch(aspace) is SYSCALL
        benchmark.pedantic(one_round, rounds=3, iterations=1)
    finally:
        cleanup()
    results.record("trap_floor", mode, statistics.median(floors))
    results.record("getpid_sentry", mode, statistics.median(sentries))


@pytest.mark.benchmark(group="clock_gettime")
@pytest.mark.parametrize("mode", MODES)
def test_clock_gettime(benchmark, targets, results, bench_programs, mode):
    target = require(targets, results, "clock", mode)
    results.record("clock", mode, per_iteration_ns(benchmark, target, str(bench_programs / "clock_loop"),
                                                   0, CLOCK[mode]))
