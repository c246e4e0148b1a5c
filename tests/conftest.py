"""Shared fixtures: the built test programs, /dev/kvm availability, one Sandbox per session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _p in (str(_TESTS), str(_TESTS.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import helpers  # noqa: E402


@pytest.fixture(scope="session")
def kvm_available() -> None:
    """Skip (only) when /dev/kvm cannot be opened read-write."""
    if not helpers.kvm_usable():
        pytest.skip("no usable /dev/kvm on this host")


@pytest.fixture(scope="session")
def test_programs() -> Path:
    """Build tests/programs once (make -j2); returns the bin directory.

    Layout: bin/glibc/NAME, bin/pie/NAME, bin/musl/NAME.
    A failed build is an error of every test that needs it, with make's output.
    """
    ok, output = helpers.build_programs(jobs=2)
    if not ok:
        pytest.fail("building tests/programs failed:\n" + output[-8000:], pytrace=False)
    return helpers.PROGRAMS_BIN


PLATFORMS = ("kvm", "ptrace")


@pytest.fixture(scope="session", params=PLATFORMS)
def platform_name(request) -> str:
    """Every test that runs a guest program runs once per trap mechanism."""
    if request.param == "kvm" and not helpers.kvm_usable():
        pytest.skip("no usable /dev/kvm on this host")
    return request.param


@pytest.fixture(scope="session")
def sandbox(platform_name):
    """One Sandbox per platform shared by the whole session (starting one is not free)."""
    import kvmbox
    sb = kvmbox.Sandbox(platform=platform_name, timeout=60)
    try:
        yield sb
    finally:
        sb.close()


@pytest.fixture(scope="session")
def pid_namespace() -> list[str]:
    """helpers.pid_namespace_prefix(), or a skip naming what this host lacks."""
    prefix, why = helpers.pid_namespace_prefix()
    if prefix is None:
        pytest.skip(f"{why}: the native run of this test must be pid 1 of a pid namespace")
    return prefix
