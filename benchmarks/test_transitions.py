"""Per-transition costs on the KVM platform's hypervisor (issue 11): one exit, an in-guest
syscall, a first page touch, a ptrace round trip, and the alternative exit designs.

Runs benchmarks/probes/exit_designs.py's measure functions (raw ioctls, a minimal
guest, designs interleaved) and hands the result to bench_report.render_transitions,
which conftest appends to results/report.md.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "probes"))

import bench_report  # noqa: E402


def _kvm_ok() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _kvm_ok(), reason="no usable /dev/kvm on this host")
def test_transitions():
    import exit_designs
    res = exit_designs.run_all(iters=int(os.environ.get("KVMBOX_TRANSITION_ITERS", "10000")), rounds=20)
    bench_report.TRANSITIONS.clear()
    bench_report.TRANSITIONS.update(res)
    rows = {r["name"]: r for r in res["rows"]}
    for must in ("syscall_out", "out_tss", "immediate_exit", "in_guest_syscall", "first_touch_4k"):
        assert "error" not in rows[must], rows[must]
    sys.stdout.write("\n" + exit_designs.table(res) + "\n")
