"""The vDSO in the sandbox: glibc, static-pie and musl programs find it, clock reads cost no exit,
CLOCK_MONOTONIC never goes backwards across rebases, realtime stays within 1 ms of the host's,
and the cost per clock_gettime natively, with the vDSO and without it, measured in one run."""
from __future__ import annotations

import re

import pytest

from helpers import BUILDS, assert_same_outcome, run_native, run_sandbox

SYS_CLOCK_GETTIME = 228


@pytest.fixture
def ready_sandbox(sandbox):
    assert sandbox._kernel.vdso.timekeeper.wait_ready(2), "the timekeeper never published"
    return sandbox


def _run(sb, path, *args):
    r = sb.run([str(path), *args], timeout=60)
    assert r.exit_code == 0, (r.exit_code, r.report, r.stdout, r.stderr)
    return r.stdout.decode()


@pytest.mark.parametrize("build", BUILDS)
def test_every_entry_matches_native(build, test_programs, ready_sandbox):
    path = test_programs / build / "vdso_clock"
    assert_same_outcome(run_native(path, ["calls"]), run_sandbox(path, ["calls"], sandbox=ready_sandbox))


@pytest.mark.parametrize("build", BUILDS)
def test_clock_gettime_makes_no_exit(build, test_programs, ready_sandbox):
    k = ready_sandbox._kernel
    out = _run(ready_sandbox, test_programs / build / "vdso_clock", "bench", "200000")
    assert out.startswith("ns_per_call")
    assert k.syscall_counts[SYS_CLOCK_GETTIME] == 0
    # With in-guest answers off (as --strace does) every call is a real syscall again.
    k.fast_path = False
    try:
        _run(ready_sandbox, test_programs / build / "vdso_clock", "bench", "1000")
    finally:
        k.fast_path = True
    assert k.syscall_counts[SYS_CLOCK_GETTIME] >= 1000


@pytest.mark.parametrize("build", ["glibc", "musl"])
def test_monotonic_never_goes_backwards_across_rebases(build, test_programs, ready_sandbox):
    tk = ready_sandbox._kernel.vdso.timekeeper
    before = tk.rebases
    out = _run(ready_sandbox, test_programs / build / "vdso_clock", "loop", "2000000", "350")
    calls, back = map(int, re.fullmatch(r"calls (\d+) backwards (\d+)\n", out).groups())
    assert calls >= 2_000_000 and back == 0
    assert tk.rebases - before >= 2, "the loop did not span a rebase"


@pytest.mark.parametrize("build", ["glibc", "musl"])
def test_realtime_within_a_millisecond_of_the_host(build, test_programs, ready_sandbox):
    out = _run(ready_sandbox, test_programs / build / "vdso_clock", "realtime", "8")
    worst = int(re.fullmatch(r"worst realtime offset ns (\d+)\n", out).group(1))
    assert worst < 1_000_000


def test_cost_per_clock_gettime(test_programs, ready_sandbox, capsys):
    """ns per call: native, sandbox with the vDSO, sandbox with it off (syscall exits); one run."""
    path = test_programs / "glibc" / "vdso_clock"

    def ns(out: str) -> float:
        return float(re.fullmatch(r"ns_per_call ([\d.]+)\n", out).group(1))

    native = ns(run_native(path, ["bench", "2000000"]).stdout.decode())
    boxed = ns(_run(ready_sandbox, path, "bench", "2000000"))
    k = ready_sandbox._kernel
    k.fast_path = False
    try:
        syscall = ns(_run(ready_sandbox, path, "bench", "2000"))
    finally:
        k.fast_path = True
    with capsys.disabled():
        print(f"\nclock_gettime ns/call: native {native:.1f}, kvmbox vDSO {boxed:.1f}, "
              f"kvmbox syscall {syscall:.1f} (vDSO/native {boxed / native:.2f}x, "
              f"syscall/vDSO {syscall / boxed:.0f}x)")
    assert boxed < syscall / 10
