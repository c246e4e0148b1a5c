"""The Sandbox API: results, reuse, many runs without host fd growth, kill from another thread."""
from __future__ import annotations

import os
import threading
import time

import helpers


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_result_fields(test_programs, sandbox):
    r = sandbox.run([str(test_programs / "glibc" / "exit42")])
    assert (r.exit_code, r.signal, r.timed_out, r.report) == (42, 0, False, None)


def test_200_runs_no_fd_or_frame_growth(test_programs, sandbox):
    hello = str(test_programs / "musl" / "hello")
    native = helpers.run_native(hello)
    sandbox.run([hello])
    fds = _fd_count()
    frames = sandbox._platform.frames.used_pages
    for _ in range(200):
        r = sandbox.run([hello])
        assert r.exit_code == 0 and r.stdout == native.stdout
    assert _fd_count() <= fds          # fewer: an earlier test's fd closing late; more: a leak
    assert sandbox._platform.frames.used_pages == frames


def test_kill_from_another_thread(test_programs, sandbox):
    threading.Timer(0.3, sandbox.kill).start()
    t0 = time.monotonic()
    r = sandbox.run([str(test_programs / "glibc" / "spin")])
    assert r.signal == 9 and time.monotonic() - t0 < 10


def test_closed_sandbox_refuses(test_programs, kvm_available):
    import kvmbox
    import pytest
    sb = kvmbox.Sandbox()
    sb.close()
    with pytest.raises(kvmbox.KvmboxError):
        sb.run([str(test_programs / "glibc" / "hello")])


def test_stdin_and_env(test_programs, sandbox):
    path = str(test_programs / "glibc" / "stdin_sum")
    data = b"some input\n" * 1000
    assert sandbox.run([path], stdin=data).stdout == helpers.run_native(path, stdin=data).stdout


def test_no_host_pid_is_visible(sandbox):
    """pid, ppid, pgrp and sid are the sandbox's own: never the Sentry's host pid."""
    r = sandbox.run(["/usr/bin/python3", "-c",
                     "import os; print(os.getpid(), os.getppid(), os.getpgrp(), os.getsid(0))"])
    assert r.exit_code == 0, (r.stderr, r.notices)
    pid, ppid, pgrp, sid = map(int, r.stdout.split())
    assert os.getpid() not in (pid, ppid, pgrp, sid)
    assert ppid == 0                       # the parent is outside the sandbox, as across a pid namespace
    # init's group and session are its invoker's, outside the sandbox: 0, as a process sees
    # ids from another pid namespace (natively, a program run from a script leads neither).
    assert pgrp == sid == 0


def test_output_past_the_capture_limit_is_reported(sandbox):
    """Past the capture limit the bytes are dropped (the writes still succeed, as into a
    reader that discards them), and the Result says which streams were cut, in a notice too."""
    script = ("import os, sys; os.write(1, b'o' * 300000); os.write(2, b'e' * 1000); "
              "print(sys.stdout.write('tail'))")
    r = sandbox.run(["/usr/bin/python3", "-c", script], capture_limit="100K")
    assert r.exit_code == 0, r
    assert r.stdout == b"o" * 102400 and r.stderr == b"e" * 1000
    assert r.truncated == ["stdout"]
    assert [n for n in r.notices if "capture limit" in n] == [
        "kvmbox: stdout passed the capture limit of 102400 bytes: 197606 more bytes were dropped"]
    r = sandbox.run(["/usr/bin/python3", "-c", script])           # the default: 64 MiB
    assert r.truncated == [] and len(r.stdout) == 300006 and not r.notices


def test_capture_limit_of_a_sandbox(test_programs, platform_name):
    import kvmbox
    import pytest
    with kvmbox.Sandbox(platform=platform_name, capture_limit=8) as sb:
        r = sb.run([str(test_programs / "glibc" / "hello")])
        assert r.stdout == b"hello fr" and r.truncated == ["stdout"] and r.exit_code == 0
        assert sb.run([str(test_programs / "glibc" / "hello")], capture_limit="1M").truncated == []
    with pytest.raises(kvmbox.KvmboxError):
        kvmbox.Sandbox(platform=platform_name, capture_limit="lots")
