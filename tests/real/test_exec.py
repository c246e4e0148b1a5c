"""Host programs that replace themselves with execve (no fork): same output as native.

`#!/usr/bin/env python3` scripts, env(1) and nice(1) running a command, a
shell's `exec`, bash's single-command -c (which execs without forking), and
python's os.execv/execvp.  Programs that fork are in tests/real/test_processes.py.
"""
from __future__ import annotations

import shutil

import pytest

from helpers import TEST_ENV, assert_same_outcome, run_native, run_sandbox

COMMANDS = {
    "env-runs-printenv": ["env", "FOO=bar", "printenv", "FOO"],
    "env-i": ["env", "-i", "/usr/bin/env"],
    "env-chain": ["env", "env", "env", "/bin/echo", "three", "levels"],
    "env-missing": ["env", "no-such-program-here"],
    "env-not-executable": ["env", "/etc/passwd"],
    "nice": ["nice", "-n", "5", "nice"],
    "sh-exec": ["sh", "-c", "exec /bin/echo replaced by exec"],
    "bash-single-command": ["bash", "-c", "ls -la /etc/hostname"],
    "python-execv": ["python3", "-c", "import os; os.execv('/bin/echo', ['echo', 'from', 'python'])"],
    "python-execvp-proc-exe": ["python3", "-c",
                               "import os; os.execvp('readlink', ['readlink', '/proc/self/exe'])"],
}


def _argv(argv: list[str]) -> list[str]:
    path = shutil.which(argv[0], path=TEST_ENV["PATH"])
    assert path, f"{argv[0]} is not installed here"
    return [path, *argv[1:]]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_exec_using_programs_same_as_native(name, sandbox):
    argv = _argv(COMMANDS[name])
    native = run_native(argv[0], argv[1:], timeout=60, cwd="/")
    boxed = run_sandbox(argv[0], argv[1:], timeout=120, sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what=name)


def test_env_shebang_script(sandbox, tmp_path):
    script = tmp_path / "tool.py"
    script.write_text("#!/usr/bin/env python3\nimport sys, os\n"
                      "print(sys.argv[1:], os.path.basename(sys.executable))\n")
    script.chmod(0o755)
    native = run_native(script, ["a", "b c"], timeout=60)
    boxed = run_sandbox(script, ["a", "b c"], timeout=120, sandbox=sandbox)
    assert native.exit_code == 0, native.describe()
    assert_same_outcome(native, boxed, what="#!/usr/bin/env python3")


def test_exec_loops_leak_no_memory_or_stubs(platform_name, tmp_path):
    """A shell script that execs itself 100 times: the right answer, the same number of
    guest frames in use after a second run as after the first, and no new child process
    (ptrace stubs) left once the Sandbox closes."""
    import os

    import kvmbox
    script = tmp_path / "selfexec.sh"
    script.write_text('#!/bin/sh\nn=${N:-0}\nif [ $n -lt 100 ]; then N=$((n+1)) exec "$0"; fi\n'
                      'echo done $n\n')
    script.chmod(0o755)
    me = str(os.getpid())
    before = {p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == me}
    with kvmbox.Sandbox(platform=platform_name, timeout=120) as sb:
        frames = sb._platform.frames
        first = sb.run([str(script)], env=dict(TEST_ENV))
        used = frames.used_pages
        second = sb.run([str(script)], env=dict(TEST_ENV))
        assert (first.stdout, second.stdout) == (b"done 100\n", b"done 100\n"), second.stderr
        assert frames.used_pages == used
    after = {p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == me}
    assert after <= before, f"left behind: {sorted(after - before)}"   # e.g. session fixtures' stubs


def _ppid(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[1]
    except OSError:
        return ""
