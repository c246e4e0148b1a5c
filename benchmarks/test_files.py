"""File-system workloads: dynamic start-up (/bin/true, python3 -c pass), 64 MiB file reads, ls -lR.

Every program here is dynamically linked or reads host files, so each run
exercises ld.so, file-backed mmap and the VFS (host root, read-only, under the
in-memory overlay) on both platforms.
"""
from __future__ import annotations

import os
import statistics

import pytest

from bench_util import MODES, ROOT, per_iteration_ns, require

SCRATCH = ROOT / "benchmarks" / "results" / ".scratch"   # not /tmp: the sandbox's /tmp is its own tmpfs
READ_FILE = SCRATCH / "read64m.bin"
READ_SIZE = 64 << 20
STARTS = {"native": 20, "kvm": 10, "ptrace": 10}


@pytest.fixture(scope="module")
def read_file() -> str:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    if not READ_FILE.exists() or READ_FILE.stat().st_size != READ_SIZE:
        block = bytes(range(256)) * 4096
        with open(READ_FILE, "wb") as f:
            for _ in range(READ_SIZE // len(block)):
                f.write(block)
    return str(READ_FILE)


def _median_runs(benchmark, target, argv: list[str], rounds: int) -> float:
    samples: list[int] = []
    benchmark.pedantic(lambda: samples.append(target.time(argv)), rounds=rounds, iterations=1,
                       warmup_rounds=1)
    return statistics.median(samples)


@pytest.mark.benchmark(group="dynamic start")
@pytest.mark.parametrize("mode", MODES)
def test_start_dynamic_true(benchmark, targets, results, mode):
    target = require(targets, results, "start_true", mode)
    results.record("start_true", mode, _median_runs(benchmark, target, ["/bin/true"], STARTS[mode]))


@pytest.mark.benchmark(group="python start")
@pytest.mark.parametrize("mode", MODES)
def test_start_python(benchmark, targets, results, mode):
    target = require(targets, results, "start_python", mode)
    argv = ["/usr/bin/python3", "-c", "pass"]
    results.record("start_python", mode, _median_runs(benchmark, target, argv, STARTS[mode] // 2))


@pytest.mark.benchmark(group="file read")
@pytest.mark.parametrize("mode", MODES)
def test_read_64m(benchmark, targets, results, bench_programs, read_file, mode):
    target = require(targets, results, "read64m", mode)
    ns = per_iteration_ns(benchmark, target, str(bench_programs / "readfile"), 1, 3, rounds=3,
                          extra=[read_file])
    results.record("read64m", mode, ns)


@pytest.mark.benchmark(group="ls -lR")
@pytest.mark.parametrize("mode", MODES)
def test_ls_lr_usr_lib(benchmark, targets, results, mode):
    target = require(targets, results, "ls_lr", mode)
    argv = ["/bin/ls", "-lR", "/usr/lib"]
    rounds = 3 if mode == "native" else 1
    samples: list[int] = []
    benchmark.pedantic(lambda: samples.append(target.time(argv)), rounds=rounds, iterations=1,
                       warmup_rounds=1 if mode == "native" else 0)
    results.record("ls_lr", mode, statistics.median(samples))
