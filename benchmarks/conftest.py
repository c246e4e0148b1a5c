"""Benchmark fixtures: the KVM platform, a Sandbox, the benchmark programs, and the report writer.

Every figure is reported as a ratio measured in the same run; absolute times
on shared machines are noise.  At the end of the session the collected
figures are written to benchmarks/results/kvm_core.md.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH_BIN = ROOT / "benchmarks" / "programs" / "bin"
TEST_BIN = ROOT / "tests" / "programs" / "bin"
RESULTS = ROOT / "benchmarks" / "results"


def _kvm_ok() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def bench_programs() -> Path:
    for d in ("benchmarks/programs", "tests/programs"):
        r = subprocess.run(["make", "-s", "-C", str(ROOT / d), "-j2"], capture_output=True, text=True)
        if r.returncode:
            pytest.fail(f"building {d} failed:\n{r.stdout}\n{r.stderr}")
    return BENCH_BIN


@pytest.fixture(scope="session")
def sandbox():
    if not _kvm_ok():
        pytest.skip("no usable /dev/kvm on this host")
    import kvmbox
    with kvmbox.Sandbox() as sb:
        yield sb


@pytest.fixture(scope="session")
def slow_sandbox(sandbox):
    """A Sandbox whose every syscall goes to the Sentry (no in-guest fast path)."""
    import kvmbox
    with kvmbox.Sandbox(fast_path=False) as sb:
        yield sb


class Figures:
    """Named measurements collected during the session, written as one Markdown table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, name: str, value: str, note: str = "") -> None:
        self.rows.append((name, value, note))


_FIGURES = Figures()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _FIGURES


def pytest_sessionfinish(session, exitstatus):
    if not _FIGURES.rows:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = ["| measurement | value | note |", "|---|---|---|"]
    lines += [f"| {n} | {v} | {note} |" for n, v, note in _FIGURES.rows]
    text = "\n".join(lines) + "\n"
    (RESULTS / "kvm_core.md").write_text(text)
    sys.stdout.write("\n\nkvmbox benchmark figures (also in benchmarks/results/kvm_core.md):\n" + text)
