"""pvm_gp.reclassify: which #UD / #PF reports from PVM were really a #GP(0) of the CPU."""
from __future__ import annotations

import pytest
from keystone import KS_ARCH_X86, KS_MODE_64, Ks

from kvmbox.platform.base import Fault
from kvmbox.platform.kvm.pvm_gp import canonical, reclassify

RIP = 0x401000
NONCANON = 0x8000_0000_0000_0000


def _ud(asm: str, **regs: int) -> Fault:
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(asm, RIP)[0])
    return reclassify(Fault(6, RIP, 0, RIP), lambda a, n: code[a - RIP:a - RIP + n],
                      lambda: {"fs_base": 0, "gs_base": 0, **regs})


@pytest.mark.parametrize("asm,regs,vector", [
    ("vmovdqu xmm0, [rax]", {"rax": NONCANON}, 13),
    ("vpaddd ymm0, ymm0, [rbx + rcx*8 + 0x10]", {"rbx": 0x7FFF_FFFF_0000, "rcx": 1 << 40}, 13),
    ("vmovdqu xmm0, [rax]", {"rax": 0x7FFF_FFFF_FFF8}, 13),         # crosses into the hole
    ("vmovdqu xmm0, [rax]", {"rax": 0x7FFF_FFFF_FFF0}, 6),          # ends at the last byte
    ("paddd xmm0, [rax]", {"rax": 0x600008}, 13),                   # legacy SSE: 16-aligned
    ("movdqu xmm0, [rax]", {"rax": 0x600008}, 6),                   # the unaligned move
    ("vpaddd xmm0, xmm0, [rax]", {"rax": 0x600008}, 6),             # VEX: no alignment
    ("vmovaps ymm0, [rax]", {"rax": 0x600010}, 13),                 # aligned VEX move: 32
    ("mov rax, qword ptr fs:[rbx]", {"rbx": 8, "fs_base": 0x7FFF_FFFF_FFFC}, 13),
    ("popcnt rax, [eax]", {"rax": 0xFFFF_FFFF_8000_0000}, 6),        # 32-bit address: canonical
    ("ud2", {}, 6),
    ("addps xmm0, xmm1", {}, 6),                                    # no memory operand
])
def test_ud_with_a_refused_memory_operand_is_a_gp(asm, regs, vector):
    fault = _ud(asm, **regs)
    assert (fault.vector, fault.error_code, fault.rip) == (vector, 0, RIP)


def test_pf_at_a_noncanonical_address_is_a_gp():
    pf = Fault(14, NONCANON, 6, RIP)
    assert reclassify(pf, lambda a, n: b"", dict) == Fault(13, RIP, 0, RIP)
    ok = Fault(14, 0x1000, 6, RIP)
    assert reclassify(ok, lambda a, n: b"", dict) is ok


def test_canonical():
    assert canonical(0) and canonical(0x7FFF_FFFF_FFFF) and canonical(0xFFFF_8000_0000_0000)
    assert not canonical(0x8000_0000_0000) and not canonical(NONCANON)
