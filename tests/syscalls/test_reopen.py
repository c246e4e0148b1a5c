"""Reopening the standard streams through the CLI: /dev/stdin, /dev/stdout and
/proc/self/fd/N of a host file, pipe or tty, natively and under `kvmbox run`, compared
(tests/programs/reopen.c covers the Sentry's own pipes and the API's streams)."""
from __future__ import annotations

import shutil

import pytest

import helpers

# K marks where `kvmbox run` goes (nothing natively).
CASES = {
    "cat-dev-stdin-file": "K cat /dev/stdin < in.txt",
    "cat-fd0-pipe": "echo x | K cat /proc/self/fd/0",
    "python-open-dev-stdout": "K python3 -c \"open('/dev/stdout','w').write('x')\" > out.txt; "
                              "cat out.txt",
    "echo-to-dev-stderr": "K sh -c 'echo to stderr > /dev/stderr' 2> err.txt; cat err.txt",
    "own-offset": "K python3 -c \"import os; os.read(0, 6); f = open('/dev/stdin', 'rb'); "
                  "print(f.read(5), os.read(0, 5), os.lseek(0, 0, 1), f.tell())\" < in.txt",
    "append-reopen": "K python3 -c \"open('/proc/self/fd/1', 'a').write('appended')\" >> out.txt; "
                     "cat out.txt",
    "readlink-file": "K readlink /proc/self/fd/0 /dev/stdin < in.txt",
    "stat-through-link": "K stat -L -c '%F %s %i' /dev/stdin < in.txt",
    "readlink-dev-null": "K readlink /proc/self/fd/0 < /dev/null; "
                         "K python3 -c \"import os, sys; "
                         "sys.stderr.write(os.readlink('/proc/self/fd/1'))\" > /dev/null",
}


@pytest.mark.parametrize("name", list(CASES))
def test_reopen_matches_native(name, tmp_path, platform_name):
    cmd = CASES[name]
    runs = []
    for k in ("", helpers.kvmbox_command(platform_name) + " "):
        (tmp_path / "in.txt").write_bytes(b"hello world, the input file\n")
        (tmp_path / "out.txt").write_bytes(b"old out\n")
        p = helpers.run_shell(cmd.replace("K ", k), tmp_path)
        runs.append((p.returncode, p.stdout, p.stderr))
    assert runs[0][0] == 0, runs[0]
    assert runs[1] == runs[0], f"{name}: native {runs[0]}\nkvmbox {runs[1]}"


def test_reopen_of_a_tty_is_the_tty(tmp_path, platform_name):
    if shutil.which("script") is None:
        pytest.skip("no `script` (util-linux) to make a pty")
    prog = ("python3 -c \"import os; fd = os.open('/dev/stdin', os.O_RDWR); "
            "print(os.isatty(fd), os.read(fd, 0)); "
            "os.write(os.open('/proc/self/fd/2', os.O_WRONLY), b'to the tty\\n')\"")
    runs = [helpers.run_shell(k + prog, tmp_path, tty=True).stdout
            for k in ("", helpers.kvmbox_command(platform_name) + " ")]
    assert runs[1] == runs[0]
