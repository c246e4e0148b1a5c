"""kvmbox vs PRoot, runsc (gVisor, ptrace platform) and qemu-user: cold runs from the command line."""
from __future__ import annotations

import pytest

from bench_util import kvm_usable
from peers import TOOLS, measure, workloads


@pytest.mark.benchmark(group="peers")
def test_peers_cold(benchmark, results, bench_programs):
    cells: dict = {}
    benchmark.pedantic(lambda: cells.update(measure(workloads(), list(TOOLS))), rounds=1, iterations=1)
    for (label, tool), (ns, why) in cells.items():
        results.peer(label, tool, ns, why)
    # kvmbox's own columns must have numbers here: a failure of ours is a failed benchmark.
    usable = {"kvm", "ptrace"} if kvm_usable() else {"ptrace"}
    ours = [(k, why) for k, (ns, why) in cells.items() if ns is None and k[1] in usable]
    assert not ours, ours

