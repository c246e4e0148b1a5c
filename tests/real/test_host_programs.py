"""Real programs: the host's own dynamically linked tools, run natively and in the sandbox.

Each case runs the same command line both ways and compares exit status and
stdout byte for byte.  Nothing here is built for the test: these are the
binaries Debian ships (coreutils, findutils, grep, sed, mawk, perl, tar,
python3).  The sandbox's root is the host's `/` read-only with an in-memory
overlay, so the programs see the same /etc and /usr as natively.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import TEST_ENV, Outcome, assert_same_outcome, run_native, run_sandbox

TEXT = "".join(f"{w}\n" for w in "pear apple fig apple kiwi fig apple banana pear date".split()).encode()


@dataclass(frozen=True)
class Cmd:
    argv: tuple[str, ...]
    stdin: bytes = b""
    expect_exit: int = 0
    env: dict[str, str] = field(default_factory=lambda: dict(TEST_ENV))

    @property
    def id(self) -> str:
        return " ".join(self.argv)[:60]


def _need(prog: str) -> str:
    path = shutil.which(prog, path=TEST_ENV["PATH"])
    assert path, f"{prog} is not installed on this host (make test installs Debian's tools)"
    return path


PYTHON_JSON = ("import json, re, hashlib, os, sys; "
               "print(json.dumps({'a': [1, 2, 3], 'b': {'c': None}}, sort_keys=True)); "
               "print(re.sub(r'[aeiou]', '_', 'sandboxed kernel')); "
               "print(hashlib.sha256(b'kvmbox' * 1000).hexdigest()); "
               "print(os.getcwd(), os.path.exists('/etc/passwd'), sys.platform); "
               "print(sorted(os.listdir('/etc'))[:8])")

PYTHON_FILES = """
import os, tempfile, shutil
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, 'data.txt')
    with open(p, 'w') as f:
        for i in range(1000):
            f.write(f'line {i}\\n')
    with open(p) as f:
        lines = f.readlines()
    print(len(lines), lines[0].strip(), lines[-1].strip(), os.path.getsize(p))
    os.mkdir(os.path.join(d, 'sub'))
    os.rename(p, os.path.join(d, 'sub', 'moved.txt'))
    shutil.copy(os.path.join(d, 'sub', 'moved.txt'), os.path.join(d, 'copy.txt'))
    with open(os.path.join(d, 'copy.txt'), 'a') as f:
        f.write('tail\\n')
    print(sorted(os.listdir(d)), sorted(os.listdir(os.path.join(d, 'sub'))))
    print(os.stat(os.path.join(d, 'copy.txt')).st_size)
    os.remove(os.path.join(d, 'copy.txt'))
    print(sorted(os.listdir(d)))
"""

PYTHON_SQLITE = ("import sqlite3; db = sqlite3.connect(':memory:'); "
                 "db.execute('create table t (k integer primary key, v text)'); "
                 "db.executemany('insert into t (v) values (?)', [(str(i * i),) for i in range(500)]); "
                 "print(db.execute('select count(*), sum(length(v)), max(k) from t').fetchone()); "
                 "print(db.execute(\"select v from t where k in (1, 250, 500) order by k\").fetchall())")

CASES = [
    Cmd(("/bin/true",)),
    Cmd(("id",)),                                   # glibc's nscd probe: connect -> ENOENT/ECONNREFUSED, goes on
    Cmd(("whoami",)),
    Cmd(("/bin/false",), expect_exit=1),
    Cmd(("/bin/echo", "hello", "from", "the", "sandbox")),
    Cmd(("/bin/ls", "-la", "/etc")),
    Cmd(("/bin/ls", "-la", "/etc/hostname", "/etc/os-release", "/etc/passwd")),   # getxattr per file
    Cmd(("cat", "/etc/passwd", "/etc/os-release")),
    Cmd(("sort",), stdin=TEXT),
    Cmd(("uniq", "-c"), stdin=b"".join(sorted(TEXT.splitlines(keepends=True)))),
    Cmd(("wc", "/etc/passwd", "/etc/services")),
    Cmd(("sha256sum", "/etc/passwd", "/etc/services")),
    Cmd(("head", "-n", "5", "/etc/services")),
    Cmd(("tail", "-n", "7", "/etc/services")),
    Cmd(("date", "-u", "-d", "@0")),
    Cmd(("seq", "1", "3", "2000")),
    Cmd(("od", "-A", "x", "-t", "x1z", "/etc/hostname")),
    Cmd(("base64", "/etc/passwd")),
    Cmd(("basename", "/usr/lib/x86_64-linux-gnu/libc.so.6", ".6")),
    Cmd(("dirname", "/usr/lib/x86_64-linux-gnu/libc.so.6")),
    # Everything stat prints except the device number (the sandbox's own) and the access
    # time (which other readers of the host file move, natively and in the sandbox alike).
    Cmd(("stat", "-c", "%n %s %b %B %F %a %A %u %g %U %G %h %i %Y %Z", "/etc/passwd", "/etc",
         "/usr/bin/env")),
    Cmd(("find", "/etc")),
    Cmd(("grep", "-r", "-n", "root", "/etc")),
    Cmd(("sed", "-e", "s/root/ROOT/g", "-e", "/nologin/d", "/etc/passwd")),
    Cmd(("mawk", "-F:", "{ n += length($1) } END { print NR, n }", "/etc/passwd")),
    Cmd(("perl", "-e", 'my %h; $h{$_ % 7}++ for 1..1000; print join(",", map { "$_=$h{$_}" } sort keys %h), "\\n"')),
    Cmd(("python3", "-c", PYTHON_JSON)),
    Cmd(("python3", "-c", PYTHON_FILES)),
    Cmd(("python3", "-c", PYTHON_SQLITE)),
]


def _resolve(cmd: Cmd) -> list[str]:
    argv = list(cmd.argv)
    if "/" not in argv[0]:
        argv[0] = _need(argv[0])
    return argv


@pytest.mark.parametrize("cmd", CASES, ids=[c.id for c in CASES])
def test_host_program_same_as_native(cmd: Cmd, sandbox):
    argv = _resolve(cmd)
    native = run_native(argv[0], argv[1:], stdin=cmd.stdin, env=cmd.env, timeout=60, cwd="/")
    assert native.exit_code == cmd.expect_exit, f"native run failed: {native.describe()}"
    boxed = run_sandbox(argv[0], argv[1:], stdin=cmd.stdin, env=cmd.env, timeout=120,
                        sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what=cmd.id)


def test_tar_round_trip_across_two_runs(sandbox, tmp_path):
    """`tar cf - FILE | tar tvf -` as two runs, the archive passed between them."""
    tar = _need("tar")
    create = ["cf", "-", "-C", "/etc", "passwd", "hostname", "services"]
    native_archive = run_native(tar, create)
    boxed_archive = run_sandbox(tar, create, sandbox=sandbox)
    assert_same_outcome(native_archive, boxed_archive, what="tar cf")
    native_list = run_native(tar, ["tvf", "-"], stdin=native_archive.stdout)
    boxed_list = run_sandbox(tar, ["tvf", "-"], stdin=boxed_archive.stdout, sandbox=sandbox)
    assert_same_outcome(native_list, boxed_list, what="tar tvf")
    assert b"passwd" in boxed_list.stdout


def test_files_under_tmp_stay_in_the_sandbox(platform_name, tmp_path):
    """mkdir, touch, cp and ls under /tmp: same listings as native; the host's /tmp unchanged."""
    import kvmbox
    name = f"kvmbox-acceptance-{os.getpid()}"
    host_tmp_before = sorted(os.listdir("/tmp"))
    steps = [
        ["mkdir", "-p", f"{name}/a/b"],
        ["touch", f"{name}/a/empty"],
        ["cp", "/etc/passwd", f"{name}/a/b/passwd"],
        ["cp", "-r", f"{name}/a", f"{name}/copy"],
        ["ls", "-R", name],
        ["stat", "-c", "%n %s %F %a", f"{name}/a/empty", f"{name}/copy/b/passwd"],
        ["cat", f"{name}/copy/b/passwd"],
    ]
    native_root = tmp_path / "native"
    native_root.mkdir()
    with kvmbox.Sandbox(platform=platform_name, timeout=60) as sb:
        for step in steps:
            argv = [_need(step[0]), *step[1:]]
            native = run_native(argv[0], argv[1:], cwd=native_root)
            boxed = run_sandbox(argv[0], argv[1:], sandbox=sb, cwd="/tmp")
            assert_same_outcome(native, boxed, what=" ".join(step))
        assert sb.read_file(f"/tmp/{name}/copy/b/passwd") == Path("/etc/passwd").read_bytes()
    assert not os.path.exists(f"/tmp/{name}")
    assert sorted(os.listdir("/tmp")) == host_tmp_before or name not in os.listdir("/tmp")


def test_cli_output_redirected_to_a_host_file(platform_name, tmp_path):
    """`kvmbox run cat FILE > out`: the program's stdout is the Sentry's own stream (a host
    file here), which copy_file_range cannot target (EXDEV): cat falls back to read/write."""
    import subprocess
    import sys

    from helpers import REPO
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(out, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "kvmbox", "run", "--platform", platform_name,
                            "/bin/cat", "/etc/passwd"], stdout=f, stderr=subprocess.PIPE,
                           cwd=REPO, env=env, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert out.read_bytes() == Path("/etc/passwd").read_bytes()
