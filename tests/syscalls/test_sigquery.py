"""rt_sigaction queries on KVM cost no exit while the process has one thread, and exit
again when that would be wrong: with a second thread, and with in-guest answers off
(as --strace does).  What the queries return is checked against native in
test_programs.py (tests/programs/sigquery.c); this counts the exits."""
from __future__ import annotations

import pytest

from helpers import BUILDS

SYS_RT_SIGACTION = 13
N = 2000


def _run(sb, path, *args):
    r = sb.run([str(path), *args], timeout=60)
    assert r.exit_code == 0, (r.exit_code, r.report, r.stdout, r.stderr)
    assert r.stdout.decode() == f"{N} of {N} queries right\n"


@pytest.mark.parametrize("build", BUILDS)
def test_queries_make_no_exit_in_a_single_threaded_process(build, test_programs, sandbox, platform_name):
    k = sandbox._kernel
    _run(sandbox, test_programs / build / "sigquery", "loop", str(N))
    exits = k.syscall_counts[SYS_RT_SIGACTION]
    if platform_name == "ptrace":
        assert exits >= N, "ptrace has no in-guest path: every query traps"
    else:
        assert exits < 100, f"{exits} rt_sigaction exits for {N} queries"


@pytest.mark.parametrize("build", ["glibc", "musl"])
def test_queries_exit_while_a_second_thread_shares_the_handlers(build, test_programs, sandbox):
    k = sandbox._kernel
    _run(sandbox, test_programs / build / "sigquery", "loop", str(N), "threaded")
    assert k.syscall_counts[SYS_RT_SIGACTION] >= N


@pytest.mark.parametrize("build", ["glibc", "musl"])
def test_queries_exit_with_in_guest_answers_off(build, test_programs, sandbox):
    k = sandbox._kernel
    k.fast_path = False
    try:
        _run(sandbox, test_programs / build / "sigquery", "loop", str(N))
    finally:
        k.fast_path = True
    assert k.syscall_counts[SYS_RT_SIGACTION] >= N
