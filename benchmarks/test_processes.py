"""Processes (issue 8 §7): the fork+exit+wait round trip, a shell loop of 200 /bin/true,
and forking a parent with 256 MiB resident (time per fork, and host memory with four
children alive against the parent alone).

Host memory is the proportional set size (Pss, /proc/PID/smaps_rollup) summed over a
process tree, sampled every 20 ms during the run, peak minus the tree's idle figure:
natively the program and its children; in the sandbox this process (the Sentry: guest
RAM is its memfd, mapped for KVM) and its children (the ptrace stubs).  Pss counts a
page shared by k processes as 1/k in each, so a copy-on-write fork adds ~0.

A sandboxed run that fails leaves "n/a (...)" with the reason in its cell.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench_util import MODES, ROOT, Target, per_iteration_ns, require

FORKS = {"native": 2000, "kvm": 40, "ptrace": 40}
SH_LOOP = ["/bin/sh", "-c", "for i in $(seq 200); do /bin/true; done"]
SH_ROUNDS = {"native": 5, "kvm": 3, "ptrace": 3}
BIG_FORKS = {"native": 20, "kvm": 4, "ptrace": 4}
HOLDERS = 4


def _failing_cell(results, key: str, mode: str, run):
    """Run `run()`; when a sandboxed run fails, record why in the report's cell and re-raise."""
    try:
        return run()
    except AssertionError as e:
        if mode != "native":
            said = re.findall(r"kvmbox: [^'\"\]]+", str(e))
            results.unavailable(key, mode, "the run failed" + (f": {said[0]}" if said else ""))
        raise


@pytest.mark.benchmark(group="fork round trip")
@pytest.mark.parametrize("mode", MODES)
def test_fork_wait(benchmark, targets, results, bench_programs, mode):
    target = require(targets, results, "fork_wait", mode)
    prog = str(bench_programs / "fork_loop")
    ns = _failing_cell(results, "fork_wait", mode,
                       lambda: per_iteration_ns(benchmark, target, prog, 5, 5 + FORKS[mode]))
    results.record("fork_wait", mode, ns)


@pytest.mark.benchmark(group="sh loop of /bin/true")
@pytest.mark.parametrize("mode", MODES)
def test_sh_true_loop(benchmark, targets, results, mode):
    target = require(targets, results, "sh_true_loop", mode)
    samples: list[int] = []

    def run() -> None:
        benchmark.pedantic(lambda: samples.append(target.time(SH_LOOP)), rounds=SH_ROUNDS[mode], iterations=1,
                           warmup_rounds=1)

    _failing_cell(results, "sh_true_loop", mode, run)
    results.record("sh_true_loop", mode, statistics.median(samples))


@pytest.mark.benchmark(group="fork 256 MiB parent")
@pytest.mark.parametrize("mode", MODES)
def test_fork_256m(benchmark, targets, results, bench_programs, mode):
    target = require(targets, results, "fork_256m", mode)
    prog = str(bench_programs / "fork_big")
    ns = _failing_cell(results, "fork_256m", mode,
                       lambda: per_iteration_ns(benchmark, target, prog, 1, 1 + BIG_FORKS[mode], rounds=3))
    results.record("fork_256m", mode, ns)


# ---------------------------------------------------------------- host memory

def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else ():
            try:
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    return pids


def _tree_pss_mib(root: int) -> float:
    return sum(_pss_kib(p) for p in _tree(root)) / 1024


class PeakSampler:
    """Samples the Pss of a process tree every 20 ms in a thread; .peak in MiB."""

    def __init__(self, root_of) -> None:
        self.root_of, self.peak, self._stop = root_of, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            root = self.root_of()
            if root:
                self.peak = max(self.peak, _tree_pss_mib(root))
            time.sleep(0.02)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _peak_mib(target: Target, argv: list[str]) -> float:
    """Peak Pss added by one run of argv: natively the program's tree; in a sandbox this
    process's tree less its idle figure."""
    if target.sandbox is None:
        proc: list[subprocess.Popen] = []
        with PeakSampler(lambda: proc[0].pid if proc else 0) as s:
            proc.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
            assert proc[0].wait() == 0, argv
        return s.peak
    idle = _tree_pss_mib(os.getpid())
    with PeakSampler(os.getpid) as s:
        r = target.sandbox.run(argv)
    assert r.exit_code == 0, (argv, r.exit_code, r.notices, r.stderr[-500:])
    return s.peak - idle


@pytest.mark.parametrize("mode", MODES)
def test_fork_256m_host_memory(targets, results, figures, bench_programs, mode):
    target = require(targets, results, "fork_256m", mode)
    prog = str(bench_programs / "fork_big")

    def measure() -> tuple[float, float]:
        alone = _peak_mib(target, [prog, "0", "hold"])
        held = _peak_mib(target, [prog, str(HOLDERS), "hold"])
        return alone, held

    alone, held = _failing_cell(results, "fork_256m", mode, measure)
    figures.add(f"fork of a 256 MiB parent, host Pss ({mode})",
                f"{alone:.0f} MiB alone, {held:.0f} MiB with {HOLDERS} children reading every page",
                "peak over the run, less the idle figure; copy-on-write keeps the two close")
