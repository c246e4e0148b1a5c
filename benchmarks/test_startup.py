"""Start-up: cold (a new `kvmbox run` process per run) and warm (one Sandbox running static hello 50 times)."""
from __future__ import annotations

import statistics
import subprocess
import sys
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


@pytest.mark.benchmark(group="cold start")
def test_cold_true_vs_bare_python(benchmark, targets, results):
    """Cold `kvmbox run /bin/true` on each platform against a bare `python -c pass` of the same
    interpreter (the floor any Python tool pays), interleaved round by round so load hits all."""
    argvs = {"native": [sys.executable, "-c", "pass"]}
    for mode in ("kvm", "ptrace"):
        argvs[mode] = [*cli_command(), "run", "--platform", mode, "/bin/true"]
    samples: dict[str, list[int]] = {m: [] for m in argvs}
    failed: dict[str, str] = {}

    def one_round() -> None:
        for mode, argv in argvs.items():
            if mode in failed:
                continue
            t0 = time.perf_counter_ns()
            r = subprocess.run(argv, capture_output=True, cwd=ROOT)
            samples[mode].append(time.perf_counter_ns() - t0)
            if r.returncode != 0:
                failed[mode] = (r.stderr.decode(errors="replace").strip().splitlines()
                                or [f"exit {r.returncode}"])[-1]

    benchmark.pedantic(one_round, rounds=COLD_RUNS, iterations=1, warmup_rounds=1)
    for mode, s in samples.items():
        if mode in failed:
            results.unavailable("cold_true", mode, f"`kvmbox run --platform {mode}` failed: {failed[mode]}")
        else:
            results.record("cold_true", mode, statistics.median(s[1:] or s))
    assert "native" not in failed, failed["native"]
