"""RLIMIT_FSIZE against native (tests/programs/fsize.c), 4 builds, both platforms: on
tmpfs (/dev/shm), the root overlay (/tmp), a read-write host mount and a stdout that
is a host file (through the CLI); with SIGXFSZ caught, ignored and at its default
action (killed by SIGXFSZ)."""
from __future__ import annotations

import pytest

import helpers
from helpers import assert_same_outcome, run_native, run_sandbox

BUILDS = [*helpers.BUILDS, "dynamic"]


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("where", ["/dev/shm", "/tmp"])
@pytest.mark.parametrize("mode", ["handler", "ignore", "die"])
def test_fsize_matches_native(mode, where, build, test_programs, sandbox):
    path = test_programs / build / "fsize"
    native = run_native(path, (where, mode))
    assert native.signal == (25 if mode == "die" else 0), native
    boxed = run_sandbox(path, (where, mode), sandbox=sandbox)
    assert_same_outcome(native, boxed, what=f"{build}/fsize {where} {mode}")


@pytest.mark.parametrize("build", BUILDS)
def test_fsize_on_a_host_mount(build, tmp_path, test_programs, platform_name):
    import kvmbox
    prog = test_programs / build / "fsize"
    native_dir, host_dir = tmp_path / "native", tmp_path / "mounted"
    native_dir.mkdir()
    host_dir.mkdir()
    native = run_native(prog, (str(native_dir),))
    assert native.exit_code == 0, native
    with kvmbox.Sandbox(platform=platform_name, timeout=60, mounts=[f"{host_dir}:/mnt/fsize:rw"]) as sb:
        r = sb.run([str(prog), "/mnt/fsize"])
    boxed = type(native)(r.exit_code, r.signal, r.stdout, r.stderr)
    assert_same_outcome(native, boxed, what=f"{build}/fsize on a host mount")


@pytest.mark.parametrize("build", BUILDS)
def test_fsize_on_a_host_file_stdout(build, tmp_path, test_programs, platform_name):
    prog = test_programs / build / "fsize"
    runs = []
    for k in ("", helpers.kvmbox_command(platform_name) + " "):
        p = helpers.run_shell(f"{k}{prog} stdout > out.bin", tmp_path)
        runs.append((p.returncode, p.stderr, (tmp_path / "out.bin").read_bytes()))
    assert runs[0][0] == 0, runs[0][1]
    assert runs[1] == runs[0], helpers.diff_text(runs[0][1], runs[1][1])
