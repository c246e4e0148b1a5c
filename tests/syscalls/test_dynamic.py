"""Dynamically linked programs: the host's own /bin/true and /bin/echo run through ld.so from the
sandbox's file system, on every platform, with output identical to native; the mappings they
get name their files; PATH lookup and the interpreter come from the sandbox, not the host."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import helpers
from helpers import assert_same_outcome, run_native, run_sandbox

TRUE, ECHO, CAT = Path("/bin/true"), Path("/bin/echo"), Path("/bin/cat")


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.exists():
            pytest.skip(f"{p} is not on this host")


@pytest.mark.parametrize("argv", [(str(TRUE),), (str(ECHO), "hi"), (str(ECHO), "-n", "a", "b c")],
                         ids=["true", "echo-hi", "echo-n"])
def test_host_dynamic_program_matches_native(argv, sandbox):
    _need(Path(argv[0]))
    native = run_native(argv[0], argv[1:])
    boxed = run_sandbox(argv[0], argv[1:], sandbox=sandbox)
    assert_same_outcome(native, boxed, what=" ".join(argv), compare_stderr=True)


def test_bare_name_found_through_path_in_the_sandbox(sandbox):
    _need(ECHO)
    r = sandbox.run(["echo", "via", "PATH"], env=dict(helpers.TEST_ENV))
    assert (r.exit_code, r.stdout) == (0, b"via PATH\n"), r.stderr


def test_maps_name_the_program_its_interpreter_and_libc(sandbox):
    _need(CAT)
    r = sandbox.run([str(CAT), "/proc/self/maps"], env=dict(helpers.TEST_ENV))
    assert r.exit_code == 0, r.stderr
    names = {line.split()[5] for line in r.stdout.decode().splitlines() if len(line.split()) > 5}
    assert any(n.endswith("/cat") for n in names), names
    assert any("ld-linux-x86-64.so.2" in n for n in names), names
    assert any("libc.so.6" in n for n in names), names
    assert {"[stack]", "[vdso]", "[vvar]"} <= names


def test_dynamic_test_program_auxv(test_programs, sandbox):
    """A dynamic build runs with AT_BASE set (its interpreter) and the program's own AT_ENTRY."""
    path = test_programs / "dynamic" / "hello"
    native = run_native(path)
    boxed = run_sandbox(path, sandbox=sandbox)
    assert_same_outcome(native, boxed, what="dynamic/hello")


def test_interpreter_missing_from_the_sandbox_root(tmp_path, test_programs, platform_name):
    """A root without /lib64: the host has the interpreter, the sandbox does not -> 127, one line."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(test_programs / "dynamic" / "hello", root / "hello")
    proc = helpers.run_cli(["run", "--platform", platform_name, "--rootfs", str(root), "/hello"])
    err = proc.stderr.decode(errors="replace").strip()
    assert proc.returncode == 127 and len(err.splitlines()) == 1, err
    assert "interpreter /lib64/ld-linux-x86-64.so.2" in err and "Traceback" not in err


def test_path_search_does_not_look_at_the_host(tmp_path, platform_name):
    """A bare name present on the host but absent in the sandbox root is not found."""
    root = tmp_path / "root"
    root.mkdir()
    proc = helpers.run_cli(["run", "--platform", platform_name, "--rootfs", str(root), "true"])
    err = proc.stderr.decode(errors="replace").strip()
    assert proc.returncode == 127 and "not found" in err, err
