"""Threads against the sandbox's limits and clean-up (issue 9).

- a thread bomb meets the pids limit: pthread_create gives EAGAIN after limit-1 threads
  (threads count as tasks, as the pids cgroup counts them), and the run ends normally;
- a run with 24 threads spinning in guest code, ended by its timeout or by kill(), ends
  promptly, and afterwards no host thread, child process (ptrace stub) or fd of it is left;
- 20 runs that each create and join 50 threads leave the host as they found it.
"""
from __future__ import annotations

import threading
import time

import pytest

from helpers import TEST_ENV, host_children, host_fds, host_threads, run_native, settled


def _sandbox(platform_name: str, **kw):
    import kvmbox
    return kvmbox.Sandbox(platform=platform_name, **kw)


_threads, _fds, _children = host_threads, host_fds, host_children


def _settled(check) -> bool:
    return settled(check, 10.0)


def test_threadbomb_native(test_programs):
    r = run_native(test_programs / "glibc" / "threadbomb", ["50"])
    assert (r.exit_code, r.stdout) == (0, b"created 50 (cap)\n"), r


@pytest.mark.parametrize("limit", [2, 40])
def test_thread_bomb_meets_the_pids_limit(limit, platform_name, test_programs):
    with _sandbox(platform_name, pids_limit=limit, timeout=120) as sb:
        r = sb.run([str(test_programs / "glibc" / "threadbomb"), "100000"], env=dict(TEST_ENV))
    assert (r.exit_code, r.stdout) == (0, f"created {limit - 1}, then EAGAIN\n".encode()), r


def test_spinning_threads_end_and_leave_nothing(platform_name, test_programs):
    """24 threads spinning in guest code: a timeout and a kill() each end the run within a
    few seconds; afterwards the Sentry's host threads, children and fds are as before."""
    threads0, fds0, kids0 = _threads(), _fds(), _children()
    with _sandbox(platform_name, timeout=120) as sb:
        sb.run([str(test_programs / "glibc" / "hello")], env=dict(TEST_ENV))
        base = (_threads(), _fds(), _children())
        t0 = time.monotonic()
        r = sb.run([str(test_programs / "glibc" / "spinbar")], env=dict(TEST_ENV))
        assert r.exit_code == 0, r
        for how in ("timeout", "kill"):
            t0 = time.monotonic()
            timer = threading.Timer(3.0, sb.kill) if how == "kill" else None
            if timer:
                timer.start()
            try:
                r = sb.run([str(test_programs / "glibc" / "spinbar"), "forever"], env=dict(TEST_ENV),
                           timeout=3 if how == "timeout" else 60)
            finally:
                if timer:
                    timer.cancel()
            took = time.monotonic() - t0
            assert r.stdout == b"spinning\n" and (r.timed_out or r.signal), (how, r)
            assert took < 15, (how, took)
            assert _settled(lambda: _threads() <= base[0] and _fds() <= base[1] and _children() <= base[2]), (
                f"after the {how}: threads {_threads()}, fds {_fds()}, children {sorted(_children())}; "
                f"before: {base}")
    # "No more than before", not "equal": a host thread or fd of an earlier test (a ptrace
    # service thread, a tracer finishing its exit) may still be ending when threads0 is
    # taken, so fewer afterwards is not a leak (CI saw 3 threads after, 4 before).
    assert _settled(lambda: _threads() <= threads0 and _fds() <= fds0 and _children() <= kids0), (
        _threads(), threads0, _fds(), fds0)


def test_thread_churn_leaves_nothing(platform_name, test_programs):
    """20 runs of 50 threads created and joined (plus a forked child's): no host thread,
    stub or fd accumulates."""
    with _sandbox(platform_name, timeout=120) as sb:
        prog = str(test_programs / "glibc" / "futexes")
        sb.run([prog], env=dict(TEST_ENV))
        base = (_threads(), _fds(), _children())
        for _ in range(20):
            r = sb.run([prog], env=dict(TEST_ENV))
            assert r.exit_code == 0, r
        assert _settled(lambda: _threads() <= base[0] and _fds() <= base[1] and _children() <= base[2]), (
            _threads(), _fds(), _children(), base)


def test_thread_exits_while_the_stub_page_is_hidden(monkeypatch, test_programs):
    """ptrace, with the code page hidden while guest code runs (as on a CPU without
    protection keys, forced here so PKU machines test it too): threads that exit while
    others enter the guest must not livelock. A thread's injected exit once lost that race
    (the page was emptied before it reached the gadget) and met SIGBUS for ever; the run
    is made in a helper thread so that a livelock fails this test instead of hanging."""
    from kvmbox.platform.ptrace.platform import ASSUME_NO_PKU_ENV
    monkeypatch.setenv(ASSUME_NO_PKU_ENV, "1")
    prog = str(test_programs / "glibc" / "futexes")
    results: list = []

    def runs() -> None:
        with _sandbox("ptrace", timeout=60) as sb:
            for _ in range(12):
                results.append(sb.run([prog], env=dict(TEST_ENV)).exit_code)
    t = threading.Thread(target=runs, daemon=True)
    t.start()
    t.join(120)
    if t.is_alive():                 # say where every thread is, then fail
        import sys
        import traceback
        stacks = "".join(f"--- {ident}\n" + "".join(traceback.format_stack(frame, limit=6))
                         for ident, frame in sys._current_frames().items())
        pytest.fail(f"livelock: {len(results)} of 12 runs ended\n{stacks}")
    assert results == [0] * 12, results
