"""The native side of every comparison starts as the sandbox starts a program: default
signal dispositions and an empty mask, whatever the test runner itself inherited."""
from __future__ import annotations

import signal

import helpers


def _status_fields(text: bytes) -> dict[str, str]:
    fields = {}
    for line in text.decode().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _raw_sigaction(sig: int, handler: int | None):
    """rt_sigaction through the raw syscall (libc refuses 32 and 33); returns the old action."""
    import ctypes
    libc = ctypes.CDLL(None)
    new = (ctypes.c_ulong * 4)(handler or 0, 0, 0, 0)
    old = (ctypes.c_ulong * 4)()
    libc.syscall(13, sig, ctypes.byref(new) if handler is not None else None, ctypes.byref(old), 8)
    return old


def test_native_run_resets_inherited_dispositions_and_mask():
    # As a background job of a non-interactive shell (SIGINT, SIGQUIT ignored) or nohup (SIGHUP),
    # and signal 32, which some runners leave ignored and libc's sigaction cannot reset.
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGQUIT, signal.SIGINT,
                                                               signal.SIGHUP)}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    old32 = _raw_sigaction(32, 1)                                       # SIG_IGN
    try:
        status = helpers.run_native("/bin/cat", ["/proc/self/status"])
        quit_ = helpers.run_native("/bin/sh", ["-c", "kill -QUIT $$; echo survived"])
    finally:
        _raw_sigaction(32, old32[0])
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    fields = _status_fields(status.stdout)
    assert int(fields["SigIgn"], 16) == 0 and int(fields["SigBlk"], 16) == 0, fields
    assert quit_.signal == signal.SIGQUIT, quit_
