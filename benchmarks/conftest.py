"""Benchmark fixtures and the report writer.

Every workload runs three ways in one session: natively (subprocess), on the
KVM platform and on the ptrace platform, each through one shared Sandbox.
Figures are ratios to the native run of the same session; absolute times on
shared machines are noise.  A platform that cannot be opened here gets
"n/a (platform unavailable: <reason>)" in its column, never a number.

At the end of the session the collected figures are written to
benchmarks/results/: report.md (the comparison table plus the KVM core
figures), ratios.svg (bar chart of the ratios) and kvm_core.md.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_report import Results, render_core, render_markdown, render_peers, render_svg, render_transitions  # noqa: E402
from bench_util import BENCH_BIN, ROOT, Targets, kvm_usable  # noqa: E402
from peers import TOOLS, machine_line  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
_RESULTS = Results()


@pytest.fixture(scope="session")
def bench_programs() -> Path:
    for d in ("benchmarks/programs", "tests/programs"):
        r = subprocess.run(["make", "-s", "-C", str(ROOT / d), "-j2"], capture_output=True, text=True)
        if r.returncode:
            pytest.fail(f"building {d} failed:\n{r.stdout}\n{r.stderr}")
    return BENCH_BIN


@pytest.fixture(scope="session")
def results() -> Results:
    return _RESULTS


@pytest.fixture(scope="session")
def targets():
    t = Targets()
    yield t
    t.close()


@pytest.fixture(scope="session")
def sandbox(targets):
    """The shared KVM Sandbox (skips when /dev/kvm is unusable)."""
    if not kvm_usable():
        pytest.skip("no usable /dev/kvm on this host")
    return targets.sandbox("kvm")


@pytest.fixture(scope="session")
def slow_sandbox(targets, sandbox):
    """A KVM Sandbox whose every syscall goes to the Sentry (no in-guest fast path)."""
    return targets.sandbox("kvm", fast_path=False)


class Figures:
    """The KVM core figures (name, value, note), kept for kvm_core.md."""

    def add(self, name: str, value: str, note: str = "") -> None:
        _RESULTS.core.append((name, value, note))


@pytest.fixture(scope="session")
def figures() -> Figures:
    return Figures()


def pytest_sessionfinish(session, exitstatus):
    if not _RESULTS.rows and not _RESULTS.core and not _RESULTS.peers and not _RESULTS.transitions:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = ["# kvmbox benchmarks: native vs KVM vs ptrace\n",
             "Medians from one `make bench` run; each ratio is to the native median of the same run. "
             "Per-iteration figures are the difference of two loop lengths in the same Sandbox "
             "(start-up cancels out).\n",
             f"Machine: {machine_line()}.\n",
             "![ratios to native](ratios.svg)\n"]
    table = render_markdown(_RESULTS) if _RESULTS.rows else ""
    if table:
        parts.append(table)
        (RESULTS / "ratios.svg").write_text(render_svg(_RESULTS))
    peers = render_peers(_RESULTS, list(TOOLS)) if _RESULTS.peers else ""
    if peers:
        parts += ["## Peers, cold from the command line\n",
                  "Each tool starts each workload as a user would, a new process per run (kvmbox: "
                  "`kvmbox run --platform kvm|ptrace`; PRoot: `proot`; gVisor: `runsc --platform=ptrace "
                  "--network=none do`, its KVM platform hangs on PVM; qemu-user: `qemu-x86_64`). "
                  "Ratios to the native median of the same run; output checked against native.\n",
                  peers, f"Machine: {machine_line()}.\n"]
    if _RESULTS.core:
        core = render_core(_RESULTS)
        (RESULTS / "kvm_core.md").write_text(core)
        parts += ["## KVM core figures\n", core]
    if _RESULTS.transitions:
        parts += ["## Per-transition costs (µs)\n", render_transitions(_RESULTS.transitions)]
    (RESULTS / "report.md").write_text("\n".join(parts))
    sys.stdout.write("\n\nkvmbox benchmark report (benchmarks/results/report.md, ratios.svg):\n\n"
                     + table + ("\n" + peers if peers else "")
                     + ("\n" + render_core(_RESULTS) if _RESULTS.core else ""))
