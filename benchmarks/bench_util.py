"""Shared measuring helpers for the comparison suite: targets (native / kvm / ptrace) and loop differences."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH_BIN = ROOT / "benchmarks" / "programs" / "bin"

# The three ways every workload runs, i.e. the report's columns.
MODES = ("native", "kvm", "ptrace")


def kvm_usable() -> bool:
    """Does /dev/kvm open read-write here?"""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


class Unavailable(Exception):
    """A target (platform) cannot be used here; str() is the reason shown in the report."""


class Target:
    """Runs a program natively or in a Sandbox and returns the wall time in ns (asserting exit 0)."""

    def __init__(self, name: str, sandbox=None) -> None:
        self.name, self.sandbox = name, sandbox

    def time(self, argv: list[str]) -> int:
        if self.sandbox is None:
            t0 = time.perf_counter_ns()
            r = subprocess.run(argv, capture_output=True)
            dt = time.perf_counter_ns() - t0
            assert r.returncode == 0, (argv, r.returncode, r.stderr[-500:])
            return dt
        t0 = time.perf_counter_ns()
        r = self.sandbox.run(argv)
        dt = time.perf_counter_ns() - t0
        assert r.exit_code == 0, (self.name, argv, r.exit_code, r.report, r.notices, r.stderr[-500:])
        return dt


class Targets:
    """Lazily opened Sandboxes, one per (platform, fast_path), shared by the whole session."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, bool], object] = {}
        self._why: dict[tuple[str, bool], str] = {}

    def sandbox(self, platform: str, fast_path: bool = True):
        key = (platform, fast_path)
        if key in self._why:
            raise Unavailable(self._why[key])
        if key not in self._open:
            try:
                import kvmbox
                self._open[key] = kvmbox.Sandbox(platform=platform, fast_path=fast_path)
            except Exception as e:  # noqa: BLE001 - any failure to open means "no number", never a crash
                reason = " ".join(str(e).split()) or type(e).__name__
                reason = reason.removeprefix("kvmbox: ")
                self._why[key] = f"platform unavailable: {reason}"
                raise Unavailable(self._why[key]) from None
        return self._open[key]

    def get(self, mode: str, fast_path: bool = True) -> Target:
        if mode == "native":
            return Target("native")
        return Target(mode if fast_path else f"{mode} (fast_path=False)", self.sandbox(mode, fast_path))

    def close(self) -> None:
        for sb in self._open.values():
            sb.close()
        self._open.clear()


def require(targets: Targets, results, keys: str | list[str], mode: str, fast_path: bool = True) -> Target:
    """The target for `mode`, or: record n/a with the reason in the report rows and skip the test."""
    try:
        return targets.get(mode, fast_path)
    except Unavailable as e:
        for k in [keys] if isinstance(keys, str) else keys:
            results.unavailable(k, mode, str(e))
        pytest.skip(f"{mode}: {e}")


def per_iteration_ns(benchmark, target: Target, prog: str, small: int, big: int, rounds: int = 5,
                     extra: list[str] | None = None) -> float:
    """Median over rounds of (t(big) - t(small)) / (big - small): start-up and exit cancel out.

    pytest-benchmark times each round (both runs); the per-iteration figure is ours.
    """
    diffs: list[float] = []
    tail = extra or []

    def one_round() -> None:
        t_small = target.time([prog, str(small), *tail])
        t_big = target.time([prog, str(big), *tail])
        diffs.append((t_big - t_small) / (big - small))

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info["ns_per_iteration"] = statistics.median(diffs)
    return statistics.median(diffs)


def cli_command() -> list[str]:
    """The installed console script next to sys.executable, else `python -m kvmbox`."""
    script = os.path.join(os.path.dirname(sys.executable), "kvmbox")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "kvmbox"]


def keystone_guest(platform, source: str):
    """A tiny hand-assembled guest at 0x400000 with a 16 KiB stack, on any Platform.

    Returns (aspace, ctx, cleanup).  Uses the platform's MemoryFile and frame allocator.
    """
    from keystone import KS_ARCH_X86, KS_MODE_64, Ks

    from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE

    code = bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(source, 0x400000)[0])
    aspace = platform.new_address_space()
    (phys, _), = platform.frames.alloc(1)
    platform.memfile.write(phys, code.ljust(4096, b"\0"))
    aspace.map(0x400000, 0x1000, phys, PROT_READ | PROT_EXEC)
    (sphys, _), = platform.frames.alloc(4)
    aspace.map(0x7F0000, 0x4000, sphys, PROT_READ | PROT_WRITE)
    ctx = platform.new_context()
    ctx.set_regs(rip=0x400000, rsp=0x7F4000)

    def cleanup() -> None:
        ctx.release()
        aspace.release()
        platform.frames.free(phys, 1)
        platform.frames.free(sphys, 4)

    return aspace, ctx, cleanup
