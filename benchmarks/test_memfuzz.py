"""The memory-manager fuzzer's long run: many seeds and steps, each platform against native.

tests/syscalls/test_memfuzz.py runs four fixed seeds of 300 steps in `make test`;
this runs SEEDS seeds of STEPS steps (KVMBOX_MEMFUZZ_SEEDS / KVMBOX_MEMFUZZ_STEPS
override) on each platform, records how many transcripts differed from native in
the core figures, and fails, naming the seeds, when any did.  Not a timing: the
figure is a count, pass or fail.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from bench_util import ROOT, Unavailable

SEEDS = int(os.environ.get("KVMBOX_MEMFUZZ_SEEDS", "40"))
STEPS = int(os.environ.get("KVMBOX_MEMFUZZ_STEPS", "2000"))
FIRST_SEED = 1000
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


def _native(prog: str, seed: int) -> bytes:
    r = subprocess.run([prog, str(seed), str(STEPS), "/dev/shm"], capture_output=True, env=ENV,
                       timeout=600)
    assert r.returncode == 0, f"native memfuzz {seed}: the model disagrees with Linux:\n" \
        + r.stdout.decode(errors="replace")[-2000:]
    return r.stdout


@pytest.mark.parametrize("platform", ["kvm", "ptrace"])
def test_memfuzz_long_run(targets, figures, bench_programs, platform):
    try:
        sb = targets.sandbox(platform)
    except Unavailable as e:
        figures.add(f"memfuzz on {platform}", "n/a", str(e))
        pytest.skip(str(e))
    prog = str(ROOT / "tests" / "programs" / "bin" / "glibc" / "memfuzz")
    differ: list[int] = []
    t0 = time.monotonic()
    for seed in range(FIRST_SEED, FIRST_SEED + SEEDS):
        want = _native(prog, seed)
        r = sb.run([prog, str(seed), str(STEPS), "/dev/shm"], env=ENV, timeout=600)
        if r.exit_code != 0 or r.stdout != want:
            differ.append(seed)
    took = time.monotonic() - t0
    figures.add(f"memfuzz on {platform}", f"{len(differ)} of {SEEDS} seeds differ",
                f"{SEEDS} seeds x {STEPS} steps ({SEEDS * STEPS} steps) vs native in {took:.0f} s"
                + (f"; differing seeds: {differ[:10]}" if differ else ""))
    assert not differ, f"memfuzz {STEPS} steps: seeds {differ} differ from native on {platform} " \
        f"(rerun: tests/programs/bin/glibc/memfuzz SEED {STEPS} /dev/shm natively and in kvmbox)"
