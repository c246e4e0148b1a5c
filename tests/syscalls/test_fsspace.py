"""In-memory file systems are bounded by --memory (issue 7 §5): fsspace.c on a native
tmpfs of its own (mounted with size= and nr_inodes= in a private mount namespace)
and in the sandbox (/dev/shm and the overlay's upper layer under --memory 32M)
prints the same statfs relations and ends its fills with the same ENOSPC.

Then the reason for it: a flood of symlinks with page-sized targets, and a write
far past --memory, stop at ENOSPC and the Sentry's own memory (this process's
VmRSS: the Sandbox runs in-process) grows by about --memory at most.  Before,
400,000 such symlinks grew kvmbox to 1.8 GB under --memory 256M.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

import kvmbox
from helpers import BUILDS, TEST_ENV, Outcome, assert_same_outcome

PROGRAM_BUILDS = (*BUILDS, "dynamic")
MIB = 1 << 20


def _native_on_private_tmpfs(prog, args, tmp_path) -> Outcome:
    """Run prog DIR ARGS where DIR is a fresh tmpfs (size=8m, nr_inodes=1000) no one else uses."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1) on this host: no private tmpfs to compare with")
    where = tempfile.mkdtemp(prefix="tmpfs-", dir=tmp_path)
    ns = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]     # unprivileged: a user namespace too
    script = 'mount -t tmpfs -o size=8m,nr_inodes=1000 kvmbox-test "$1" && shift && exec "$@"'
    proc = subprocess.run([unshare, *ns, "--propagation", "private", "sh", "-c", script, "sh",
                           where, str(prog), where, *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(TEST_ENV), timeout=120)
    if proc.returncode and b"mount" in proc.stderr and not proc.stdout:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.decode(errors='replace').strip()}")
    return Outcome(proc.returncode, 0, proc.stdout, proc.stderr)


@pytest.mark.parametrize("build,where", [(b, "/dev/shm") for b in PROGRAM_BUILDS] + [("glibc", "/tmp")])
def test_statfs_and_enospc_as_a_limited_tmpfs(build, where, tmp_path, test_programs, platform_name):
    """/dev/shm in every build; /tmp (the root overlay's upper layer shares the space) once."""
    prog = test_programs / build / "fsspace"
    native = _native_on_private_tmpfs(prog, (), tmp_path)
    assert native.exit_code == 0, native.stdout.decode(errors="replace") + native.stderr.decode()
    with kvmbox.Sandbox(platform=platform_name, memory="32M", timeout=120) as sb:
        r = sb.run([str(prog), where], env=dict(TEST_ENV))
    assert_same_outcome(native, Outcome(r.exit_code, r.signal, r.stdout, r.stderr),
                        what=f"{build}/fsspace {where}")


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_floods_stop_at_enospc_and_the_sentry_stays_small(tmp_path, test_programs, platform_name):
    prog = test_programs / "glibc" / "fsspace"
    flood, write = ("flood", "100000", "4000"), ("write", "1024")
    native = [_native_on_private_tmpfs(prog, args, tmp_path) for args in (flood, write)]
    memory = 64 * MIB
    with kvmbox.Sandbox(platform=platform_name, memory=memory, timeout=300) as sb:
        sb.run([str(prog), "/dev/shm", "flood", "10", "4000"])      # warm up the Sentry
        before = _rss()
        boxed = [sb.run([str(prog), "/dev/shm", *flood]), sb.run([str(prog), "/tmp", *write])]
        grown = _rss() - before
    for n, b, what in zip(native, boxed, ("flood", "write")):
        assert n.stdout.startswith(f"{what}: ENOSPC".encode()), n.stdout
        assert_same_outcome(n, Outcome(b.exit_code, b.signal, b.stdout, b.stderr), what=f"fsspace {what}")
    # Blocks are at most --memory; names, nodes and short targets at most an inode's worth
    # each (--memory / 8 KiB inodes).  Before the limit, the flood alone grew it by ~450 MB.
    assert grown < memory + memory // 2, f"the Sentry grew by {grown / MIB:.0f} MiB under --memory 64M"
