"""Unit tests for the initial stack layout and the CPU features (hwcap) that feed the auxv."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from kvmbox.errors import CannotExecute
from kvmbox.guest_stub import layout
from kvmbox.sentry import hwcap
from kvmbox.sentry.stack import INITIAL_STACK_SIZE, build_initial_stack, plan_stack

from .fake_mm import FakeMM

TOP = layout.STACK_TOP
# AT_* numbers written out here (independent of kvmbox.abi.auxv)
AT_NULL, AT_PAGESZ, AT_ENTRY, AT_PLATFORM, AT_RANDOM, AT_EXECFN = 0, 6, 9, 15, 25, 31
RANDOM = bytes(range(0xA0, 0xB0))


def base_auxv() -> list[tuple[int, int]]:
    return [(AT_PAGESZ, 4096), (AT_ENTRY, 0x401000), (AT_RANDOM, 0), (AT_EXECFN, 0),
            (AT_PLATFORM, 0), (AT_NULL, 0)]


def parse_stack(mm: FakeMM, sp: int) -> tuple[list[bytes], list[bytes], list[tuple[int, int]]]:
    """Read argc/argv/envp/auxv back the way a libc _start does."""
    argc = mm.u64(sp)
    argv_ptrs = [mm.u64(sp + 8 * (1 + i)) for i in range(argc)]
    assert mm.u64(sp + 8 * (1 + argc)) == 0
    p = sp + 8 * (2 + argc)
    envp_ptrs = []
    while (q := mm.u64(p)) != 0:
        envp_ptrs.append(q)
        p += 8
    p += 8
    auxv = []
    while True:
        key, val = mm.u64(p), mm.u64(p + 8)
        auxv.append((key, val))
        p += 16
        if key == AT_NULL:
            break
    return [mm.cstring(a) for a in argv_ptrs], [mm.cstring(e) for e in envp_ptrs], auxv


def build(argv, envp, execfn=b"/usr/bin/prog", auxv=None, mm=None, **kw):
    mm = mm or FakeMM()
    sp = build_initial_stack(mm, TOP, argv, envp, auxv or base_auxv(), execfn, b"x86_64",
                             RANDOM, **kw)
    return mm, sp


def test_round_trip():
    argv = [b"prog", b"-x", b"", b"hello world"]
    envp = [b"HOME=/root", b"PATH=/bin:/usr/bin"]
    mm, sp = build(argv, envp)
    got_argv, got_envp, auxv = parse_stack(mm, sp)
    assert got_argv == argv and got_envp == envp
    av = dict(auxv)
    assert auxv[-1] == (AT_NULL, 0) and [k for k, _ in auxv].count(AT_NULL) == 1
    assert av[AT_PAGESZ] == 4096 and av[AT_ENTRY] == 0x401000
    assert mm.read(av[AT_RANDOM], 16) == RANDOM
    assert mm.cstring(av[AT_EXECFN]) == b"/usr/bin/prog"
    assert mm.cstring(av[AT_PLATFORM]) == b"x86_64"


@pytest.mark.parametrize("nargs", range(0, 6))
@pytest.mark.parametrize("nenv", range(0, 3))
def test_rsp_is_16_byte_aligned(nargs, nenv):
    mm, sp = build([b"a" * (i + 1) for i in range(nargs)], [b"E=" + b"v" * i for i in range(nenv)])
    assert sp % 16 == 0
    assert mm.u64(sp) == nargs


def test_string_order_matches_linux():
    argv, envp = [b"a0", b"a1"], [b"e0", b"e1"]
    mm, sp = build(argv, envp, execfn=b"/x")
    av = dict(parse_stack(mm, sp)[2])
    argv_ptrs = [mm.u64(sp + 8), mm.u64(sp + 16)]
    envp_ptrs = [mm.u64(sp + 32), mm.u64(sp + 40)]
    # argv strings first (lowest), then envp, then execfn, then 8 zero bytes up to the top
    assert argv_ptrs[0] < argv_ptrs[1] < envp_ptrs[0] < envp_ptrs[1] < av[AT_EXECFN]
    assert av[AT_EXECFN] + len(b"/x\0") == TOP - 8
    assert mm.read(TOP - 8, 8) == bytes(8)
    assert mm.read(argv_ptrs[0], 12) == b"a0\0a1\0e0\0e1\0"
    # platform string and random bytes below the strings, random lowest, all above the table
    assert av[AT_RANDOM] + 16 <= av[AT_PLATFORM] < argv_ptrs[0]
    table_end = sp + 8 * (1 + 3 + 3) + 16 * len(base_auxv())
    assert table_end <= av[AT_RANDOM]


def test_stack_is_mapped_at_top_with_room():
    mm, sp = build([b"p"], [])
    top, size, max_size = mm.stack
    assert top == TOP and size == INITIAL_STACK_SIZE and max_size == layout.STACK_MAX
    assert mm.prot_at(TOP - 1) == 1 | 2 and mm.prot_at(TOP - size) == 1 | 2
    assert mm.prot_at(TOP) is None


def test_big_arguments_get_a_bigger_mapping():
    envp = [b"K=" + b"v" * 60_000] * 4          # 240 KB > 128 KiB initial size
    mm, sp = build([b"p"], envp)
    top, size, _ = mm.stack
    assert size >= top - sp and size % 4096 == 0
    assert parse_stack(mm, sp)[1] == envp


def test_argument_list_too_long():
    with pytest.raises(CannotExecute, match=r"^argument list too long$"):
        build([b"p"], [b"K=" + b"v" * 100_000] * 30)            # > STACK_MAX / 4
    with pytest.raises(CannotExecute, match=r"^argument list too long$"):
        build([b"x" * (32 * 4096)], [])                         # one string > MAX_ARG_STRLEN
    with pytest.raises(CannotExecute, match=r"^argument list too long$"):
        build([b"p"], [b"K=v"] * 10, stack_max=64)


def test_nul_inside_argument_refused():
    with pytest.raises(CannotExecute, match="NUL"):
        build([b"a\0b"], [])


def test_plan_is_pure_and_fills_addresses():
    plan = plan_stack(TOP, [b"p"], [b"E=1"], [(AT_RANDOM, 0), (AT_EXECFN, 0)], b"/p", b"x86_64", RANDOM)
    av = dict(plan.auxv)
    assert av[AT_RANDOM] == plan.random_addr and av[AT_EXECFN] == plan.execfn_addr
    assert plan.auxv[-1] == (AT_NULL, 0)
    assert len(plan.blob) == TOP - plan.sp
    assert struct.unpack_from("<Q", plan.blob, 0)[0] == 1
    off = plan.random_addr - plan.sp
    assert plan.blob[off:off + 16] == RANDOM


# --- hwcap ------------------------------------------------------------------------------

def cpuinfo_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    pytest.skip("no flags line in /proc/cpuinfo")


def test_cpuid_vendor_and_leaf1_agree_with_cpuinfo():
    flags = cpuinfo_flags()
    eax, ebx, ecx, edx = hwcap.cpuid(0)
    vendor = struct.pack("<III", ebx, edx, ecx).decode()
    text = Path("/proc/cpuinfo").read_text()
    assert f"vendor_id\t: {vendor}" in text
    assert eax >= 1
    edx1 = hwcap.cpuid(1)[3]
    for bit, name in ((0, "fpu"), (4, "tsc"), (15, "cmov"), (23, "mmx"), (25, "sse"), (26, "sse2")):
        assert bool(edx1 >> bit & 1) == (name in flags), name
    ecx1 = hwcap.cpuid(1)[2]
    assert bool(ecx1 >> 0 & 1) == ("pni" in flags)
    assert bool(ecx1 >> 28 & 1) == ("avx" in flags)


def test_cpuid_leaf7_agrees_with_cpuinfo():
    if hwcap.cpuid(0)[0] < 7:
        pytest.skip("CPU has no leaf 7")
    flags = cpuinfo_flags()
    ebx7 = hwcap.cpuid(7, 0)[1]
    assert bool(ebx7 & 1 << 5) == ("avx2" in flags)
    assert bool(ebx7 & 1 << 0) == ("fsgsbase" in flags)


def test_hwcaps_match_cpuinfo_and_fallback():
    flags = cpuinfo_flags()
    at_hwcap, at_hwcap2 = hwcap.hwcaps()
    assert at_hwcap == hwcap.cpuid(1)[3]
    assert bool(at_hwcap >> 26 & 1) == ("sse2" in flags)
    assert at_hwcap2 == (2 if "fsgsbase" in flags else 0)
    fb_hwcap, fb_hwcap2 = hwcap.hwcaps_from_flags(frozenset(flags))
    assert fb_hwcap2 == at_hwcap2
    # the kernel may hide a bit or two (e.g. pn, ht); the common ones must agree
    common = (1 << 0) | (1 << 4) | (1 << 15) | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26)
    assert fb_hwcap & common == at_hwcap & common


def test_hwcaps_match_the_hosts_own_auxv():
    auxv = Path("/proc/self/auxv").read_bytes()
    pairs = dict(struct.iter_unpack("<QQ", auxv))
    assert hwcap.hwcaps() == (pairs[16], pairs.get(26, 0))
    if 51 in pairs and hwcap.cpuid(1)[2] & (1 << 27):
        assert hwcap.minsigstksz() == pairs[51]


def test_minsigstksz_model():
    assert hwcap.minsigstksz_for(2440) == 3376
    assert hwcap.minsigstksz_for(832) % 16 == 0 and hwcap.minsigstksz_for(832) < 3376


def test_cpuinfo_flags_parser():
    assert hwcap.cpuinfo_flags("processor\t: 0\nflags\t\t: fpu sse2 fsgsbase\n") == {"fpu", "sse2", "fsgsbase"}
    assert hwcap.hwcaps_from_flags(frozenset({"fpu", "sse2", "fsgsbase"})) == (1 | 1 << 26, 2)
    assert os.path.exists("/proc/cpuinfo")


def test_hwcaps_fall_back_to_cpuinfo_when_exec_mapping_refused(monkeypatch):
    def refused(leaf, subleaf=0):
        raise OSError("PROT_EXEC refused")
    monkeypatch.setattr(hwcap, "cpuid", refused)
    assert hwcap.hwcaps.__wrapped__() == hwcap.hwcaps_from_flags(hwcap.cpuinfo_flags())
    assert hwcap.minsigstksz.__wrapped__() == hwcap.minsigstksz_for(512)


def test_cpuid_routine_bytes_match_its_source():
    import keystone
    from kvmbox.sentry import hwcap
    ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)
    assert bytes(ks.asm(hwcap._CPUID_ASM)[0]) == hwcap._CPUID_CODE
