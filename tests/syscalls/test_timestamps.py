"""timestamps.c where test_programs.py cannot put it: on entries of the root overlay's
lower layer (every change copies them up first) and on a read-write host mount.

The lower tree is made on the host by `timestamps DIR prepare` (aged to 1700000000),
twice: the native run changes one copy, the sandbox sees the other through its
overlay (the default root is the host's /, so tmp_path shows at the same path) and
changes only its in-memory upper layer.  Outputs are relations, compared byte for byte.
"""
from __future__ import annotations

import pytest

import kvmbox
from helpers import assert_same_outcome, run_native
from helpers import BUILDS

PROGRAM_BUILDS = (*BUILDS, "dynamic")


def _boxed(native, r):
    return type(native)(r.exit_code, r.signal, r.stdout, r.stderr)


@pytest.mark.parametrize("build", PROGRAM_BUILDS)
def test_timestamps_of_copied_up_entries(build, tmp_path, test_programs, sandbox):
    prog = test_programs / build / "timestamps"
    trees = {}
    for name in ("native", "boxed"):
        trees[name] = tmp_path / name
        trees[name].mkdir()
        made = run_native(prog, (str(trees[name]), "prepare"))
        assert made.exit_code == 0, made.describe()
    snapshot = sorted(p.relative_to(trees["boxed"]) for p in trees["boxed"].rglob("*"))
    native = run_native(prog, (str(trees["native"]), "lower"))
    assert native.exit_code == 0, native.stdout.decode(errors="replace")
    r = sandbox.run([str(prog), str(trees["boxed"]), "lower"])
    assert_same_outcome(native, _boxed(native, r), what=f"{build}/timestamps on the overlay's lower layer")
    assert sorted(p.relative_to(trees["boxed"]) for p in trees["boxed"].rglob("*")) == snapshot


@pytest.mark.parametrize("build", PROGRAM_BUILDS)
def test_timestamps_on_a_read_write_host_mount(build, tmp_path, test_programs, platform_name):
    """The host kernel keeps these times; what kvmbox adds (creating with the right mode at
    once, UTIME_NOW for "now") must not stamp anything twice.  Host files have no extended
    attributes in the sandbox, so that check is left out on both sides."""
    prog = test_programs / build / "timestamps"
    native_dir, host_dir = tmp_path / "native", tmp_path / "mounted"
    native_dir.mkdir()
    host_dir.mkdir()
    native = run_native(prog, (str(native_dir), "noxattr"))
    assert native.exit_code == 0, native.stdout.decode(errors="replace")
    with kvmbox.Sandbox(platform=platform_name, timeout=60, mounts=[f"{host_dir}:/mnt/ts:rw"]) as sb:
        r = sb.run([str(prog), "/mnt/ts", "noxattr"])
    assert_same_outcome(native, _boxed(native, r), what=f"{build}/timestamps on a host mount")
    assert list(host_dir.iterdir()) == []
