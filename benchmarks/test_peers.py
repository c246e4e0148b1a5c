"""kvmbox vs PRoot, runsc (gVisor, ptrace platform) and qemu-user: cold runs from the command line."""
from __future__ import annotations

import os

import pytest

from peers import TOOLS, measure, workloads


@pytest.mark.benchmark(group="peers")
def test_peers_cold(benchmark, results, bench_programs):
    cells: dict = {}
    benchmark.pedantic(lambda: cells.update(measure(workloads(), list(TOOLS))), rounds=1, iterations=1)
    for (label, tool), (ns, why) in cells.items():
        results.peer(label, tool, ns, why)
    # kvmbox's own columns must have numbers here: a failure of ours is a failed benchmark.
    ours = [(k, why) for k, (ns, why) in cells.items() if ns is None and k[1] in _usable()]
    assert not ours, ours


def _usable() -> set[str]:
    """kvmbox's platforms that can run here (ptrace always; kvm when /dev/kvm opens)."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return {"kvm", "ptrace"}
    except OSError:
        return {"ptrace"}
