"""kill(-1, SIGKILL) inside the sandbox reaches the sandbox's processes only (issue 8 §6).

A host process started by the test (`sleep 60`) must be alive after the guest
sends SIGKILL to -1, from the first process and from a child of it.  Where the
guest has children of its own, its output is compared with a native run as pid
1 of a pid namespace (there kill(-1) reaches exactly the namespace's other
processes, which is what the sandbox must do).
"""
from __future__ import annotations

import subprocess

import pytest

from helpers import TEST_ENV, assert_same_outcome, run_native_as_init, run_sandbox

ALONE = "kill -KILL -1; echo status $?"
FROM_INIT = "sleep 30 & kill -KILL -1; wait $!; echo after $?"
FROM_CHILD = 'sleep 30 & sh -c "kill -KILL -1; echo inner survived"; wait $!; echo outer $?'


def _check(script: str, sandbox, prefix: list[str] | None) -> None:
    host = subprocess.Popen(["sleep", "60"])
    try:
        boxed = run_sandbox("/bin/sh", ["-c", script], sandbox=sandbox, timeout=60)
        alive = host.poll() is None
    finally:
        host.kill()
        host.wait()
    assert alive, f"the host's sleep died (returncode {host.returncode}): kill(-1) left the sandbox"
    if prefix is not None:
        native = run_native_as_init(prefix, "/bin/sh", ["-c", script], env=dict(TEST_ENV), timeout=60)
        assert_same_outcome(native, boxed, what=script)


def test_kill_minus_one_from_the_only_process(sandbox):
    """No fork needed: the guest is alone, kill(-1) finds no process (ESRCH)."""
    _check(ALONE, sandbox, None)


@pytest.mark.parametrize("script", [FROM_INIT, FROM_CHILD], ids=["from-init", "from-a-child"])
def test_kill_minus_one_spares_the_host(script, sandbox, pid_namespace):
    _check(script, sandbox, pid_namespace)


@pytest.mark.parametrize("script", [ALONE, FROM_INIT, FROM_CHILD], ids=["alone", "from-init", "from-a-child"])
def test_kill_minus_one_native(script, pid_namespace):
    """The native half, today: as pid 1 of a pid namespace the shell survives, the rest dies."""
    r = run_native_as_init(pid_namespace, "/bin/sh", ["-c", script], env=dict(TEST_ENV), timeout=60)
    want = {ALONE: b"status 1\n", FROM_INIT: b"after 137\n", FROM_CHILD: b"inner survived\nouter 137\n"}
    assert (r.exit_code, r.stdout) == (0, want[script]), r
