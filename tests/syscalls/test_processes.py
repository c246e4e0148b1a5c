"""tests/programs/procs.c (issue 8, section 2): processes, natively compared.

The native run is the program as pid 1 of a new pid namespace (the
`pid_namespace` fixture: `unshare --pid --fork --mount-proc`), the place the
sandbox gives its first program: orphans come back to it, kill(-1) reaches only
its own descendants and /proc lists only them.  The sandboxed run must print the same bytes and end the same
way, in each of the four builds and on both platforms.

Every build runs whole; the glibc build also runs one section at a time, so a
failure names the section (procs.c prints "== SECTION ==" headers as well)."""
from __future__ import annotations

import pytest

from helpers import BUILDS, Outcome, assert_same_outcome, run_native_as_init, run_sandbox

PROGRAM_BUILDS = (*BUILDS, "dynamic")
SECTIONS = ("fork", "vfork", "clone", "spawn", "exec", "exit", "reparent", "pdeathsig", "wait", "waitid",
            "stop", "zombie", "sigchld", "nocldwait", "rusage", "ids", "kill", "proc", "pipes", "offsets",
            "locks", "eventfd", "fds", "memory")
RUN_TIMEOUT = 180


def run_as_init(prefix: list[str], path, args=()) -> Outcome:
    return run_native_as_init(prefix, path, args, timeout=RUN_TIMEOUT)


def _native_ok(native: Outcome, sections: int) -> None:
    text = native.stdout.decode(errors="replace")
    assert native.exit_code == 0 and native.signal == 0, f"native run: {native.describe()}\n{text}"
    assert f"sections run: {sections}\n" in text, text
    assert " ended: " not in text, f"a section died natively:\n{text}"
    assert text.startswith("main: pid 1 1,"), text[:200]


@pytest.mark.parametrize("build", PROGRAM_BUILDS)
def test_procs_native_is_deterministic(build, test_programs, pid_namespace):
    """The native half alone: every section runs to its end, twice with the same bytes."""
    path = test_programs / build / "procs"
    first = run_as_init(pid_namespace, path)
    _native_ok(first, len(SECTIONS))
    second = run_as_init(pid_namespace, path)
    assert_same_outcome(first, second, what=f"{build}/procs, two native runs")


@pytest.mark.parametrize("build", PROGRAM_BUILDS)
def test_procs_same_as_native(build, test_programs, pid_namespace, sandbox):
    path = test_programs / build / "procs"
    native = run_as_init(pid_namespace, path)
    _native_ok(native, len(SECTIONS))
    boxed = run_sandbox(path, sandbox=sandbox, timeout=RUN_TIMEOUT)
    assert_same_outcome(native, boxed, what=f"{build}/procs")


@pytest.mark.parametrize("section", SECTIONS)
def test_procs_section_same_as_native(section, test_programs, pid_namespace, sandbox):
    path = test_programs / "glibc" / "procs"
    native = run_as_init(pid_namespace, path, [section])
    _native_ok(native, 1)
    boxed = run_sandbox(path, [section], sandbox=sandbox, timeout=RUN_TIMEOUT)
    assert_same_outcome(native, boxed, what=f"procs {section}")


def test_section_list_matches_the_program(test_programs, pid_namespace):
    """SECTIONS here is procs.c's table, in its order (a new section must be listed)."""
    native = run_as_init(pid_namespace, test_programs / "glibc" / "procs")
    headers = [line[3:-3] for line in native.stdout.decode().splitlines() if line.startswith("== ")]
    assert tuple(headers) == SECTIONS
