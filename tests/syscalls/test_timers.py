"""Timers beyond tests/programs' plain comparisons: timer signals that end a program (and
RLIMIT_CPU), a high rate of timer signals during page faults and syscalls, and the life of
the timer service (no timer outlives its run, a closed Sandbox leaves no thread behind, a
kill or timeout ends a run full of timers at once).  Native runs define the outcomes.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest

from helpers import assert_same_outcome, run_native, run_sandbox

TIMER_THREAD = "kvmbox-timers"
PROMPT = 3.0


def _timer_threads() -> list[threading.Thread]:
    return [th for th in threading.enumerate() if th.name == TIMER_THREAD]


@pytest.mark.parametrize("mode,signo", [
    ("alarm", signal.SIGALRM), ("vtalrm", signal.SIGVTALRM), ("prof", signal.SIGPROF),
    ("posix", signal.SIGALRM), ("rlimit", signal.SIGKILL), ("rlimit-soft", signal.SIGXCPU),
])
def test_timer_signal_ends_the_program(mode, signo, test_programs, sandbox):
    """Default actions of SIGALRM/SIGVTALRM/SIGPROF from timers, and RLIMIT_CPU's SIGXCPU
    (once per second past the soft limit) then SIGKILL at the hard limit."""
    path = test_programs / "glibc" / "timerdie"
    native = run_native(path, (mode,))
    assert native.signal == signo, native.describe()
    assert_same_outcome(native, run_sandbox(path, (mode,), sandbox=sandbox), what=f"timerdie {mode}")


def test_signals_during_faults_and_syscalls(test_programs, sandbox):
    """ITIMER_REAL every 1 ms, a POSIX timer every 1.5 ms and ITIMER_PROF every 2 ms of CPU
    while the guest page-faults, makes syscalls and spins with known values in 25
    registers: no crash, no register or page corrupted, hundreds of signals taken."""
    path = test_programs / "glibc" / "timerstress"
    native = run_native(path)
    assert native.exit_code == 0, native.stdout
    boxed = run_sandbox(path, sandbox=sandbox, timeout=120)
    assert_same_outcome(native, boxed, what="timerstress")


def test_stress_check_can_fail(test_programs):
    """The register check catches a signal return that changes a register (a handler edits r12)."""
    r = run_native(test_programs / "glibc" / "timerstress", ("corrupt",))
    assert b"registers intact after every spin: NO" in r.stdout and r.exit_code == 1


_ARM_AND_EXIT = r"""
import signal, os, time
signal.signal(signal.SIGALRM, lambda *a: None)
signal.signal(signal.SIGPROF, lambda *a: None)
signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
t = time.monotonic()
while time.monotonic() - t < 0.1:
    pass
print("armed", flush=True)
os._exit(0)                       # with the timers still running
"""

_CHECK_FRESH = r"""
import signal
print(signal.getitimer(signal.ITIMER_REAL), signal.getitimer(signal.ITIMER_PROF),
      sorted(signal.sigpending()))
"""


def test_timers_die_with_the_run(platform_name):
    """Timers armed by one run never fire into the next; the service thread is gone after
    each run and after close()."""
    import kvmbox
    before = len(_timer_threads())
    with kvmbox.Sandbox(platform=platform_name, timeout=60) as sb:
        armed = sb.run(["/usr/bin/python3", "-c", _ARM_AND_EXIT])
        assert armed.exit_code == 0 and armed.stdout == b"armed\n", armed
        assert len(_timer_threads()) == before
        time.sleep(0.05)
        fresh = sb.run(["/usr/bin/python3", "-c", _CHECK_FRESH])
        assert fresh.stdout == b"(0.0, 0.0) (0.0, 0.0) []\n", fresh
    assert len(_timer_threads()) == before


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_stop_ends_a_run_full_of_timers(how, test_programs, sandbox):
    """A guest spinning under fast periodic timers is stopped as promptly as any other."""
    path = str(test_programs / "glibc" / "timerstress")
    before = len(_timer_threads())
    t0 = time.monotonic()
    if how == "kill":
        killer = threading.Timer(0.5, sandbox.kill)
        killer.start()
        try:
            r = sandbox.run([path], timeout=60)
        finally:
            killer.cancel()
    else:
        r = sandbox.run([path], timeout=0.5)
    took = time.monotonic() - t0
    assert r.timed_out and r.signal == signal.SIGKILL, r
    assert took < 0.5 + PROMPT, f"the run ended {took:.1f} s after start"
    assert len(_timer_threads()) == before


@pytest.mark.parametrize("soft,hard", [(1, 2), (1, 1)])
def test_rlimit_cpu_from_the_start(soft, hard, test_programs, sandbox):
    """RLIMIT_CPU given before the program starts (the invoker's, or ulimits=): a spinning
    program ends as natively under `ulimit -t` (SIGXCPU at the soft limit; SIGKILL when the
    hard limit is reached at the same time)."""
    path = test_programs / "glibc" / "spin"
    native = run_native(path, rlimits={0: (soft, hard)})
    assert native.signal in (signal.SIGXCPU, signal.SIGKILL), native.describe()
    r = sandbox.run([str(path)], ulimits={"cpu": (soft, hard)}, timeout=30)
    assert not r.timed_out, r
    assert (r.signal, r.exit_code, r.stdout) == (native.signal, native.exit_code, native.stdout), r
