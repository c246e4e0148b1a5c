"""The standard streams are no way out of the sandbox (tests/programs/escape_stdio.c).

fd 0 is a host directory or a host file outside the sandbox's view (the root is
a small --rootfs), fd 1 a host file opened for appending that holds a secret,
passed as the CLI passes them (HostStream dups).  Reopening through
/proc/self/fd/N or /dev/stdin never gives more access than the descriptor has
(no write to a read-only stdin, no read of a write-only stdout), nothing walks
from a stream to its neighbours on the host, the link text names no host path
outside the view, and the host files are unchanged afterwards.
"""
from __future__ import annotations

import os
import re

import pytest

from security.escape_harness import ESCAPE_ENV, diff_snapshots, install, snapshot

# What a safe sandbox may answer besides an errno.
ALLOWED = {
    "O_PATH of fd/0": {"ok"},
    "read fd 1": {"opened, read EBADF"},
}


@pytest.mark.parametrize("stdin_kind", ["file", "directory"])
def test_streams_give_no_more_than_their_descriptors(stdin_kind, layout, test_programs,
                                                      platform_name):
    import kvmbox
    from kvmbox.sentry.hoststream import HostStream

    lay = layout
    prog = install(lay, test_programs, "escape_stdio")
    (lay.outside / "in.txt").write_bytes(b"the stdin file\n")
    (lay.outside / "out.txt").write_bytes(b"old output " + lay.secret + b"\n")
    before = snapshot(lay.outside)
    stdin = lay.outside / "in.txt" if stdin_kind == "file" else lay.outside
    report = lay.base / "report.txt"
    fds = [os.open(stdin, os.O_RDONLY), os.open(lay.outside / "out.txt", os.O_WRONLY | os.O_APPEND),
           os.open(report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
    streams = [HostStream(fd) for fd in fds]
    try:
        with kvmbox.Sandbox(platform=platform_name, timeout=120, rootfs=str(lay.rootfs)) as sb:
            r = sb.run([prog], env=ESCAPE_ENV, stdio=streams)
    finally:
        for s in streams:
            s.release()
        for fd in fds:
            os.close(fd)
    text = report.read_text(errors="replace")
    assert r.exit_code == 0 and not r.report, (r, text)
    problems = []
    if lay.secret.decode() in text:
        problems.append("THE SECRET appears in the report")
    if str(lay.base) in text or "outside" in text:
        problems.append("a host path appears in the report")
    lines = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    assert len(lines) > 40, text
    for label, result in lines.items():
        if label == "readlink fd 0":
            if not re.fullmatch(r"host:\[\d+\]", result):
                problems.append(f"{label}: {result}")
        elif result not in ALLOWED.get(label, ()) and not re.fullmatch(r"E[A-Z]+", result):
            problems.append(f"{label}: {result}")
    problems += [f"host changed: {p}" for p in diff_snapshots(before, snapshot(lay.outside))]
    assert not problems, "\n".join(problems) + "\n--- report ---\n" + text
