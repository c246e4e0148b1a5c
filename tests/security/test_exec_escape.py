"""execve cannot reach a host program outside the sandbox's mounts, nor hang the Sentry.

execve resolves its path (and a script's interpreter, and PT_INTERP) in the
Sentry's VFS, exactly as the first program of a run.  With a root that holds
only /usr (read-only), a program beside that root on the host must be
unreachable by absolute path, "..", /proc/self/root or cwd links, and a
symlink planted in the root that points at its host path.
"""
from __future__ import annotations

import os
import shutil

import kvmbox
from helpers import TEST_ENV

ATTEMPTS = ("{outside}", "../outside_prog", "/../outside_prog", "/proc/self/root/../outside_prog",
            "/proc/self/cwd/../outside_prog", "/link_out", "/usr/../../outside_prog")

TRY_EXEC = """
import os, sys, errno
for p in sys.argv[1:]:
    try:
        os.execv(p, [p])
    except OSError as e:
        print(p, errno.errorcode[e.errno])
"""


def test_exec_cannot_reach_host_programs_outside_the_root(tmp_path, platform_name):
    root = tmp_path / "root"
    (root / "usr").mkdir(parents=True)
    for name, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        (root / name).symlink_to(target)
    outside = tmp_path / "outside_prog"
    shutil.copy("/bin/true", outside)
    (root / "link_out").symlink_to(outside)
    attempts = [a.format(outside=outside) for a in ATTEMPTS]
    with kvmbox.Sandbox(platform=platform_name, rootfs=str(root), mounts=["/usr:/usr"],
                        timeout=60) as sb:
        r = sb.run(["/usr/bin/python3", "-S", "-c", TRY_EXEC, *attempts], env=dict(TEST_ENV))
    assert r.exit_code == 0, r.stderr.decode(errors="replace")[-800:]
    lines = r.stdout.decode().splitlines()
    assert lines == [f"{a} ENOENT" for a in attempts], lines


def test_hostile_argument_lists_fail_fast(sandbox):
    """300,000 empty arguments and one 200 KiB argument: E2BIG, the program goes on."""
    code = ("import os\n"
            "for args in (['x'] + [''] * 300000, ['x', 'a' * 200 * 1024]):\n"
            "    try:\n"
            "        os.execv('/bin/true', args)\n"
            "    except OSError as e:\n"
            "        print(os.strerror(e.errno))\n")
    r = sandbox.run(["/usr/bin/python3", "-c", code], env=dict(TEST_ENV), timeout=60)
    assert not r.timed_out
    assert r.stdout.decode().splitlines() == [os.strerror(7)] * 2, r.stdout
