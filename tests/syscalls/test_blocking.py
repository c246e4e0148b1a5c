"""Every kind of wait ends at once when the run is stopped: --timeout, Sandbox.kill(), and
the CLI blocked reading an idle host pipe or tty.

tests/programs/block.c starts one wait that nothing in its process can satisfy.  The native
run proves each wait really blocks (it is still waiting when killed); the sandbox must then
end the same wait promptly, whichever way the run is stopped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import helpers
from helpers import run_native

KINDS = ["pipe_read", "pipe_write", "fifo_open_read", "fifo_open_write", "fifo_rdwr_read",
         "fifo_rdwr_write", "eventfd_read", "eventfd_write", "poll", "select", "epoll",
         "nanosleep", "clock_nanosleep_abs", "pause", "sigsuspend", "sigtimedwait", "futex",
         "flock", "ofd_lock", "timerfd_read", "signalfd_read"]
PROMPT = 3.0         # seconds a stopped run may take to end (it is ~0 plus the exit path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("block")


@pytest.mark.parametrize("kind", KINDS)
def test_native_really_blocks(kind, test_programs, scratch):
    with pytest.raises(subprocess.TimeoutExpired) as ei:
        run_native(test_programs / "glibc" / "block", (kind, str(scratch)), timeout=0.5)
    assert ei.value.stdout == f"blocking {kind}\n".encode()


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_ends_the_wait(kind, test_programs, scratch, sandbox):
    t0 = time.monotonic()
    r = sandbox.run([str(test_programs / "glibc" / "block"), kind, str(scratch)], timeout=0.5)
    took = time.monotonic() - t0
    assert r.timed_out, (r, r.stderr)
    assert r.stdout == f"blocking {kind}\n".encode()
    assert took < 0.5 + PROMPT, f"the run ended {took:.1f} s after start"


@pytest.mark.parametrize("kind", KINDS)
def test_kill_ends_the_wait(kind, test_programs, scratch, sandbox):
    timer = threading.Timer(0.5, sandbox.kill)
    t0 = time.monotonic()
    timer.start()
    try:
        r = sandbox.run([str(test_programs / "glibc" / "block"), kind, str(scratch)], timeout=60)
    finally:
        timer.cancel()
    took = time.monotonic() - t0
    assert r.timed_out and r.stdout == f"blocking {kind}\n".encode(), r
    assert took < 0.5 + PROMPT, f"the run ended {took:.1f} s after start"


def _cli(platform: str, prog, *args: str) -> list[str]:
    return [sys.executable, "-m", "kvmbox", "run", "--platform", platform, "--timeout", "1",
            str(prog), *args]


def _wait_keeping_stdin(proc: subprocess.Popen, timeout: float) -> tuple[bytes, bytes]:
    """Wait for `proc` with its stdin pipe still open (communicate() would close it: EOF)."""
    try:
        proc.wait(timeout=timeout)
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
    return proc.stdout.read(), proc.stderr.read() if proc.stderr else b""


def test_cli_timeout_while_reading_an_idle_host_pipe(test_programs, scratch, platform_name):
    """`(sleep 20) | kvmbox run --timeout 1 PROG`: kvmbox ends after 1 s, not when the pipe
    delivers (it used to wait for the writer)."""
    env = dict(os.environ, PYTHONPATH=str(helpers.REPO))
    t0 = time.monotonic()
    proc = subprocess.Popen(_cli(platform_name, test_programs / "glibc" / "block", "stdin",
                                 str(scratch)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=helpers.REPO, env=env)
    out, err = _wait_keeping_stdin(proc, 1 + PROMPT + 5)
    took = time.monotonic() - t0
    assert proc.returncode == 124, err
    assert out == b"blocking stdin\n"
    assert took < 1 + PROMPT + 3, f"kvmbox ended {took:.1f} s after start"


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux `script` (a pty) is missing")
def test_cli_timeout_while_reading_an_idle_tty(test_programs, scratch, platform_name):
    """The same with stdin a terminal nobody types on (script(1) gives the pty)."""
    cmd = " ".join(_cli(platform_name, test_programs / "glibc" / "block", "stdin", str(scratch)))
    env = dict(os.environ, PYTHONPATH=str(helpers.REPO))
    t0 = time.monotonic()
    proc = subprocess.Popen(["script", "-qec", cmd, "/dev/null"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=helpers.REPO,
                            env=env)
    out, _ = _wait_keeping_stdin(proc, 1 + PROMPT + 10)
    took = time.monotonic() - t0
    assert b"blocking stdin" in out and b"timed out" in out, out
    assert proc.returncode == 124, out
    assert took < 1 + PROMPT + 8, f"kvmbox ended {took:.1f} s after start"
