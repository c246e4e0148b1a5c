"""Hostile syscall arguments: thousands of random calls must never crash the Sentry or the host."""
from __future__ import annotations

import os

import pytest

import helpers


@pytest.mark.parametrize("seed", range(1, 17))
def test_random_syscalls_with_hostile_arguments(seed, test_programs, sandbox):
    fuzz = str(test_programs / "musl" / "sysfuzz")
    sandbox.run([str(test_programs / "musl" / "hello")])    # the pooled vCPU exists from here on
    fds_before = len(os.listdir("/proc/self/fd"))
    r = sandbox.run([fuzz, str(seed), "5000"], env={"KVMBOX_SANDBOXED_FUZZ": "1"}, timeout=60)
    # Whatever the calls did, the program ran to its end (or was killed by a signal it
    # earned), the Sentry raised nothing, and no host fd leaked.
    assert not r.timed_out, r
    assert r.exit_code == 0 or r.signal, r
    # (stdout may be gone: close(1) is among the random calls)
    assert len(os.listdir("/proc/self/fd")) <= fds_before   # more would be a leak
    # The sandbox is still usable afterwards.
    again = sandbox.run([str(test_programs / "musl" / "hello")])
    assert again.exit_code == 0


def test_fuzzer_refuses_to_run_natively(test_programs):
    r = helpers.run_native(test_programs / "musl" / "sysfuzz", ("1", "10"))
    assert r.exit_code == 2
