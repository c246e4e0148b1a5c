"""Scripts: "#!" files run as Linux's binfmt_script runs them, compared with native execve.

The interpreter line is parsed by the Sentry (kvmbox.sentry.program), so these
cases use /bin/echo as the interpreter wherever possible: its output is
exactly the argv the kernel built, which makes the native run the judge of
every whitespace and NUL rule.  Scripts live in pytest's tmp_path, which the
sandbox sees through its read-only host root.
"""
from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
from helpers import TEST_ENV, assert_same_outcome, run_native, run_sandbox

HEADERS = {
    "plain": b"#!/bin/echo\n",
    "one-arg": b"#!/bin/echo -n\nbody\n",
    "spaces": b"#!   /bin/echo   one  two  \t\n",
    "tabs": b"#!\t/bin/echo\targ\t\n",
    "nul-ends-name": b"#!/bin/echo\0ignored\n",
    "nul-in-arg": b"#!/bin/echo a\0b\n",
    "empty-arg": b"#!/bin/echo \0x\n",
    "no-newline": b"#!/bin/echo last",
    "long-arg": b"#!/bin/echo " + b"y" * 400 + b"\n",
}


def _script(path: Path, body: bytes, mode: int = 0o755) -> str:
    path.write_bytes(body)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_interpreter_line_gives_the_same_argv(name, sandbox, tmp_path):
    script = _script(tmp_path / f"s-{name}", HEADERS[name])
    native = run_native(script, ["x", "y z"])
    boxed = run_sandbox(script, ["x", "y z"], sandbox=sandbox)
    assert native.exit_code == 0, native.describe()
    assert_same_outcome(native, boxed, what=name)


def test_python_script_sees_its_argv_exe_and_cmdline(sandbox, tmp_path):
    script = _script(tmp_path / "show.py", b"#!/usr/bin/python3 -S\n"
                     b"import os, sys\n"
                     b"print(sys.argv[1:], os.path.basename(sys.argv[0]))\n"
                     b"print(os.readlink('/proc/self/exe'))\n"
                     b"print(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[:2])\n")
    native = run_native(script, ["a", "b"])
    boxed = run_sandbox(script, ["a", "b"], sandbox=sandbox)
    assert native.exit_code == 0, native.describe()
    assert_same_outcome(native, boxed, what="python script")
    assert b"['a', 'b'] show.py" in boxed.stdout


def test_interpreter_may_itself_be_a_script(sandbox, tmp_path):
    inner = _script(tmp_path / "inner", b"#!/bin/echo inner-arg\n")
    outer = _script(tmp_path / "outer", f"#!{inner} outer-arg\n".encode())
    native = run_native(outer, ["z"])
    boxed = run_sandbox(outer, ["z"], sandbox=sandbox)
    assert_same_outcome(native, boxed, what="nested script")
    assert boxed.stdout.count(b"outer-arg") == 1


def _native_exec_errno(path: str) -> int:
    try:
        subprocess.run([path], env=dict(TEST_ENV), capture_output=True, check=False,
                       preexec_fn=helpers.native_preexec)
    except OSError as e:
        return e.errno
    return 0


def _chain(tmp_path: Path, depth: int) -> str:
    prev = "/bin/echo"
    for i in range(depth):
        prev = _script(tmp_path / f"level{i}", f"#!{prev}\n".encode())
    return prev


@pytest.mark.parametrize("case,err,status,words", [
    ("missing interpreter", errno.ENOENT, 127, "interpreter /nonexistent/interp"),
    ("blank line", errno.ENOEXEC, 126, "exec format error"),
    ("too deep", errno.ELOOP, 126, "too many levels"),
    ("not executable", errno.EACCES, 126, "permission denied"),
])
def test_bad_scripts_fail_like_execve(case, err, status, words, platform_name, tmp_path):
    """The CLI gives one line and the shell's status (127 for ENOENT, else 126)."""
    if case == "missing interpreter":
        script = _script(tmp_path / "s", b"#!/nonexistent/interp\n")
    elif case == "blank line":
        script = _script(tmp_path / "s", b"#!   \n")
    elif case == "too deep":
        script = _chain(tmp_path, 6)        # six rewrites: one more than exec_binprm allows
    else:
        script = _script(tmp_path / "s", b"#!/bin/echo\n", mode=0o644)
    assert _native_exec_errno(script) == err     # root too: a file without x bits is EACCES
    r = subprocess.run([sys.executable, "-m", "kvmbox", "run", "--platform", platform_name, script],
                       capture_output=True, timeout=120, check=False)
    assert r.returncode == status, r
    message = r.stderr.decode()
    assert words in message and message.count("\n") == 1 and "Traceback" not in message, message


def test_five_levels_still_run(sandbox, tmp_path):
    script = _chain(tmp_path, 5)
    native = run_native(script, ["end"])
    boxed = run_sandbox(script, ["end"], sandbox=sandbox)
    assert native.exit_code == 0
    assert_same_outcome(native, boxed, what="five levels")
