"""The memory-manager fuzzer (tests/programs/memfuzz.c) against native, fixed seeds.

Each case runs `memfuzz SEED STEPS /dev/shm` natively and in the sandbox: the
native transcript must agree with the program's own model ("model misses: 0")
and the sandbox's must equal it byte for byte.  `make bench` runs many more
seeds and steps (benchmarks/test_memfuzz.py).
"""
from __future__ import annotations

import pytest

from helpers import assert_same_outcome, run_native, run_sandbox

STEPS = 300
# One seed per build; each takes about a second per platform here.
CASES = [(1, "glibc"), (2, "musl"), (3, "pie"), (4, "dynamic")]


@pytest.mark.parametrize("seed,build", CASES, ids=[f"seed{s}-{b}" for s, b in CASES])
def test_memfuzz_matches_native(seed: int, build: str, test_programs, sandbox):
    prog = test_programs / build / "memfuzz"
    args = (str(seed), str(STEPS), "/dev/shm")
    native = run_native(prog, args, timeout=60)
    assert native.exit_code == 0 and b"model misses: 0\n" in native.stdout, (
        "the fuzzer's model disagrees with the native kernel (fix the model):\n"
        + native.stdout.decode(errors="replace")[-3000:] + native.stderr.decode(errors="replace")[-3000:])
    boxed = run_sandbox(prog, args, timeout=120, sandbox=sandbox)
    assert_same_outcome(native, boxed, what=f"memfuzz {seed} {STEPS} ({build})")
