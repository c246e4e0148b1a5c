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


def test_native_run_resets_inherited_dispositions_and_mask():
    # As a background job of a non-interactive shell (SIGINT, SIGQUIT ignored) or nohup (SIGHUP).
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGQUIT, signal.SIGINT,
                                                               signal.SIGHUP)}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    try:
        status = helpers.run_native("/bin/cat", ["/proc/self/status"])
        quit_ = helpers.run_native("/bin/sh", ["-c", "kill -QUIT $$; echo survived"])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    fields = _status_fields(status.stdout)
    assert int(fields["SigIgn"], 16) == 0 and int(fields["SigBlk"], 16) == 0, fields
    assert quit_.signal == signal.SIGQUIT, quit_
