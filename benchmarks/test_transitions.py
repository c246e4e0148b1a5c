"""Per-transition costs on the KVM platform's hypervisor (issue 11): one exit, an in-guest
syscall, a first page touch, a ptrace round trip, and the alternative exit designs.

Runs benchmarks/probes/exit_designs.py's measure functions (raw ioctls, a minimal
guest, designs interleaved) and keeps the result in Results.transitions, which conftest renders
(bench_report.render_transitions) and appends to results/report.md.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench_util import kvm_usable

sys.path.insert(0, str(Path(__file__).resolve().parent / "probes"))


@pytest.mark.skipif(not kvm_usable(), reason="no usable /dev/kvm on this host")
def test_transitions(results):
    import exit_designs
    res = exit_designs.run_all(iters=int(os.environ.get("KVMBOX_TRANSITION_ITERS", "10000")), rounds=20)
    results.transitions = res
    rows = {r["name"]: r for r in res["rows"]}
    for must in ("syscall_out", "out_tss", "immediate_exit", "in_guest_syscall", "first_touch_4k"):
        assert "error" not in rows[must], rows[must]
    sys.stdout.write("\n" + exit_designs.table(res) + "\n")
