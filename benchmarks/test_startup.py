"""Start-up: cold (a new `kvmbox run` process per run) and warm (one Sandbox running static hello 50 times)."""
from __future__ import annotations

import statistics
import subprocess
import time

import pytest

from bench_util import MODES, ROOT, cli_command, require

COLD_RUNS = 10
WARM_RUNS = 50


@pytest.mark.benchmark(group="cold start")
@pytest.mark.parametrize("mode", MODES)
def test_cold_start(benchmark, targets, results, bench_programs, mode):
    hello = str(bench_programs / "hello")
    if mode == "native":
        argv = [hello]
    else:
        require(targets, results, "cold_start", mode)   # n/a (and skip) when the platform cannot open here
        argv = [*cli_command(), "run", "--platform", mode, hello]
    samples: list[int] = []

    def once() -> None:
        t0 = time.perf_counter_ns()
        r = subprocess.run(argv, capture_output=True, cwd=ROOT)
        samples.append(time.perf_counter_ns() - t0)
        if r.returncode != 0 or r.stdout != b"hello\n":
            why = (r.stderr.decode(errors="replace").strip().splitlines() or [f"exit {r.returncode}"])[-1]
            if mode != "native":
                results.unavailable("cold_start", mode, f"`kvmbox run --platform {mode}` failed: {why}")
            pytest.fail(f"{argv}: exit {r.returncode}: {why}")

    benchmark.pedantic(once, rounds=COLD_RUNS, iterations=1, warmup_rounds=1)
    results.record("cold_start", mode, statistics.median(samples[1:] or samples))


@pytest.mark.benchmark(group="warm start")
@pytest.mark.parametrize("mode", MODES)
def test_warm_start(benchmark, targets, results, bench_programs, mode):
    target = require(targets, results, "warm_start", mode)
    hello = str(bench_programs / "hello")
    samples: list[int] = []
    benchmark.pedantic(lambda: samples.append(target.time([hello])), rounds=WARM_RUNS, iterations=1)
    results.record("warm_start", mode, statistics.median(samples))
