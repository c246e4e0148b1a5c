"""Signal default actions and forced signals (tests/programs/sigdefault.c), native vs sandbox.

Handler delivery itself is covered by sigs.c and sigfault.c in test_programs.py.
Stop signals are checked in the sandbox only: natively a process that stops
itself waits for a SIGCONT nobody sends.
"""
from __future__ import annotations

import signal

import pytest

from helpers import assert_same_outcome, run_native, run_sandbox

CORE = {signal.SIGQUIT, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGBUS,
        signal.SIGFPE, signal.SIGSEGV, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGSYS}

# (args, signal the native run dies of, 0 for exit 0)
CASES = [
    (("term", "15"), signal.SIGTERM),      # raise(SIGTERM) -> 143
    (("term", "10"), signal.SIGUSR1),
    (("term", "13"), signal.SIGPIPE),
    (("term", "14"), signal.SIGALRM),
    (("term", "1"), signal.SIGHUP),
    (("term", "40"), 40),                  # real-time: terminate
    (("term", "3"), signal.SIGQUIT),       # core
    (("term", "11"), signal.SIGSEGV),
    (("term", "31"), signal.SIGSYS),
    (("term", "17"), 0),                   # SIGCHLD: ignored by default
    (("term", "18"), 0),                   # SIGCONT
    (("term", "23"), 0),                   # SIGURG
    (("term", "28"), 0),                   # SIGWINCH
    (("abort",), signal.SIGABRT),          # 134
    (("ignored", "10"), 0),
    (("ignored", "15"), 0),
    (("pending-term",), signal.SIGTERM),
    (("fault-blocked",), signal.SIGSEGV),
    (("fault-nested",), signal.SIGSEGV),
    (("badframe",), signal.SIGSEGV),
    (("no-restorer",), signal.SIGSEGV),
    (("pipe",), signal.SIGPIPE),
    (("kill",), signal.SIGKILL),
]


@pytest.mark.parametrize("build", ["glibc", "musl"])
@pytest.mark.parametrize("args,signo", CASES, ids=["-".join(c[0]) for c in CASES])
def test_default_action(args, signo, build, test_programs, sandbox):
    path = test_programs / build / "sigdefault"
    native = run_native(path, args)
    assert native.signal == signo, native.describe()
    boxed = run_sandbox(path, args, sandbox=sandbox)
    assert_same_outcome(native, boxed, what=f"sigdefault {' '.join(args)}")


def test_core_flag(test_programs, sandbox):
    """abort(): exit status 134 with the core flag; SIGTERM: 143 without it."""
    r = sandbox.run([str(test_programs / "glibc" / "sigdefault"), "abort"])
    assert (r.exit_code, r.signal, r.core) == (134, signal.SIGABRT, True)
    r = sandbox.run([str(test_programs / "glibc" / "sigdefault"), "term", "15"])
    assert (r.exit_code, r.signal, r.core) == (143, signal.SIGTERM, False)
    r = sandbox.run([str(test_programs / "glibc" / "sigdefault"), "fault-blocked"])
    assert (r.exit_code, r.core) == (139, True)


@pytest.mark.parametrize("signo", [signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU])
def test_stop_signal_ends_the_run(signo, test_programs, sandbox):
    """Nothing can send SIGCONT in the sandbox: a stop ends the run as 128+N, with a report."""
    r = sandbox.run([str(test_programs / "glibc" / "sigdefault"), "term", str(int(signo))])
    assert (r.exit_code, r.signal, r.core) == (128 + signo, signo, False)
    assert r.report and "stopped by" in r.report


def test_next_run_is_clean_after_a_kill_inside_a_syscall(test_programs, sandbox):
    """A task killed right after a syscall (raise -> tgkill) leaves register edits that no
    entry consumed; the next program on the same pooled vCPU must start clean."""
    for _ in range(3):
        r = run_sandbox(test_programs / "glibc" / "sigdefault", ["term", "15"], sandbox=sandbox)
        assert r.signal == signal.SIGTERM
        hello = run_sandbox(test_programs / "glibc" / "hello", sandbox=sandbox)
        native = run_native(test_programs / "glibc" / "hello")
        assert_same_outcome(native, hello, what="hello after a killed run")
