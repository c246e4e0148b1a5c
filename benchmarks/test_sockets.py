"""Sockets (issue 10 §5): a stream between a parent and a forked child, native vs kvm vs
ptrace: throughput in 64 KiB writes (MB/s) and 64-byte request/response round trips per
second (benchmarks/programs/sockpair.c), over an AF_UNIX socketpair and over TCP on
127.0.0.1 (in the sandbox, the Sentry's own loopback; natively the host's)."""
from __future__ import annotations

import pytest

from bench_util import BENCH_BIN, MODES, per_iteration_ns, require

PROG = str(BENCH_BIN / "sockpair")
BLOCKS = {"native": 20000, "kvm": 2000, "ptrace": 2000}
TRIPS = {"native": 20000, "kvm": 2000, "ptrace": 2000}


@pytest.mark.benchmark(group="socketpair throughput")
@pytest.mark.parametrize("mode", MODES)
def test_socketpair_throughput(benchmark, targets, results, figures, mode):
    target = require(targets, results, "socketpair_64k", mode)
    n = BLOCKS[mode]
    ns = per_iteration_ns(benchmark, target, PROG, n // 10, n, extra=["tput"])
    results.record("socketpair_64k", mode, ns)
    figures.add(f"socketpair throughput, 64 KiB writes ({mode})", f"{65536 / ns * 1e3:,.0f} MB/s")


@pytest.mark.benchmark(group="socketpair round trips")
@pytest.mark.parametrize("mode", MODES)
def test_socketpair_round_trips(benchmark, targets, results, figures, mode):
    target = require(targets, results, "socketpair_rr", mode)
    n = TRIPS[mode]
    ns = per_iteration_ns(benchmark, target, PROG, n // 10, n, extra=["rr"])
    results.record("socketpair_rr", mode, ns)
    figures.add(f"socketpair request/response ({mode})", f"{1e9 / ns:,.0f} round trips/s")


@pytest.mark.benchmark(group="tcp loopback throughput")
@pytest.mark.parametrize("mode", MODES)
def test_tcp_throughput(benchmark, targets, results, figures, mode):
    target = require(targets, results, "tcp_64k", mode)
    n = BLOCKS[mode]
    ns = per_iteration_ns(benchmark, target, PROG, n // 10, n, extra=["tput", "tcp"])
    results.record("tcp_64k", mode, ns)
    figures.add(f"TCP loopback throughput, 64 KiB writes ({mode})", f"{65536 / ns * 1e3:,.0f} MB/s")


@pytest.mark.benchmark(group="tcp loopback round trips")
@pytest.mark.parametrize("mode", MODES)
def test_tcp_round_trips(benchmark, targets, results, figures, mode):
    target = require(targets, results, "tcp_rr", mode)
    n = TRIPS[mode]
    ns = per_iteration_ns(benchmark, target, PROG, n // 10, n, extra=["rr", "tcp"])
    results.record("tcp_rr", mode, ns)
    figures.add(f"TCP loopback request/response ({mode})", f"{1e9 / ns:,.0f} round trips/s")
