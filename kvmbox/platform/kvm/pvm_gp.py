"""PVM reports some #GPs of guest user code as #UD or #PF: recognise them and report #GP(0).

Guest ring 3 runs natively under PVM, and a #GP it takes goes to the hypervisor, which
runs KVM's instruction emulator on it (that is how an `out` is checked against the
guest TSS's I/O bitmap).  The emulator knows a subset of x86.  For an instruction
outside it (VEX-encoded AVX, most SSE arithmetic, x87 loads, popcnt, crc32, andn ...)
it injects #UD instead of the #GP the CPU raised; for fxsave it reports a #PF at the
non-canonical address.  Linux gives SIGSEGV (SI_KERNEL, address 0) for a #GP.  So on
the pvm flavour (docs/pvm.md):

  - a #PF at a non-canonical address (which hardware never raises) is a #GP(0);
  - a #UD on an instruction that decodes (capstone) to a memory access the CPU refuses
    with #GP is a #GP(0): an operand at a non-canonical linear address or crossing
    into the hole, or a misaligned operand of an alignment-checking instruction
    (legacy SSE on 16 bytes but the unaligned moves and string compares; the aligned
    VEX moves; fxsave/fxrstor).

Anything else stays #UD.  A genuinely invalid instruction with such an operand would
be misreported as #GP; the CPU decodes before it translates addresses, so that needs
an instruction capstone accepts and this CPU does not.
"""
from __future__ import annotations

from collections.abc import Callable

from kvmbox.platform.base import VEC_GP, VEC_PF, VEC_UD, Fault

_MAX_INSN = 15
_MASK64 = (1 << 64) - 1

# Legacy SSE instructions whose 16-byte memory operand needs no alignment.
_UNALIGNED_OK = frozenset({"movups", "movupd", "movdqu", "lddqu", "pcmpestri", "pcmpestrm",
                           "pcmpistri", "pcmpistrm"})
# VEX/EVEX instructions that check alignment (to their operand size).
_ALIGNED_VEX = frozenset({"vmovaps", "vmovapd", "vmovdqa", "vmovdqa32", "vmovdqa64", "vmovntps",
                          "vmovntpd", "vmovntdq", "vmovntdqa"})
_ALIGNED_16 = frozenset({"fxsave", "fxsave64", "fxrstor", "fxrstor64", "cmpxchg16b"})

# Register names capstone prints -> (the 64-bit register whose value it reads, width in bits).
_GPR = {}
for _n in ("ax", "bx", "cx", "dx", "si", "di", "sp", "bp"):
    _GPR["r" + _n], _GPR["e" + _n] = ("r" + _n, 64), ("r" + _n, 32)
for _i in range(8, 16):
    _GPR[f"r{_i}"], _GPR[f"r{_i}d"] = (f"r{_i}", 64), (f"r{_i}", 32)


def canonical(addr: int) -> bool:
    """Is `addr` canonical with 48-bit virtual addresses (bits 63..47 all equal)?"""
    top = (addr & _MASK64) >> 47
    return top == 0 or top == (1 << 17) - 1


def reclassify(fault: Fault, read_code: Callable[[int, int], bytes],
               regs: Callable[[], dict[str, int]]) -> Fault:
    """`fault` as the CPU raised it.  read_code(addr, n) gives up to n instruction bytes
    (fewer where the mapping ends); regs() the user registers (with fs_base, gs_base)."""
    if fault.vector == VEC_PF and not canonical(fault.address):
        return Fault(VEC_GP, fault.rip, 0, fault.rip)
    if fault.vector != VEC_UD:
        return fault
    if _refused_access(read_code(fault.rip, _MAX_INSN), fault.rip, regs):
        return Fault(VEC_GP, fault.rip, 0, fault.rip)
    return fault


def _refused_access(code: bytes, rip: int, regs: Callable[[], dict[str, int]]) -> bool:
    try:
        from capstone import CS_ARCH_X86, CS_MODE_64, Cs
        from capstone.x86_const import X86_OP_MEM, X86_REG_FS, X86_REG_GS
    except ImportError:  # pragma: no cover - capstone is a declared dependency
        return False
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    md.detail = True
    insn = next(md.disasm(code, rip, 1), None)
    if insn is None or insn.mnemonic.startswith("ud"):
        return False
    values: dict[str, int] | None = None
    for op in insn.operands:
        if op.type != X86_OP_MEM:
            continue
        if values is None:
            values = regs()
        addr = _effective_address(insn, op.mem, values, rip + insn.size)
        if addr is None:
            continue                                    # a vector index (gather): not ours
        if op.mem.segment == X86_REG_FS:
            addr += values.get("fs_base", 0)
        elif op.mem.segment == X86_REG_GS:
            addr += values.get("gs_base", 0)
        addr &= _MASK64
        size = max(op.size, 1)
        if not canonical(addr) or not canonical(addr + size - 1):
            return True
        if _must_be_aligned(insn, size) and addr % _alignment(insn, size):
            return True
    return False


def _effective_address(insn, mem, values: dict[str, int], next_rip: int) -> int | None:
    addr = mem.disp
    for reg, scale in ((mem.base, 1), (mem.index, mem.scale)):
        if not reg:
            continue
        name = insn.reg_name(reg)
        if name == "rip":
            addr += next_rip
            continue
        if name not in _GPR:
            return None
        full, width = _GPR[name]
        addr += scale * (values.get(full, 0) & ((1 << width) - 1))
    return addr


def _must_be_aligned(insn, size: int) -> bool:
    name = insn.mnemonic
    if name in _ALIGNED_16 or name in _ALIGNED_VEX:
        return True
    return size == 16 and not name.startswith("v") and name not in _UNALIGNED_OK and _is_sse(insn)


def _alignment(insn, size: int) -> int:
    return 16 if insn.mnemonic in _ALIGNED_16 else size


def _is_sse(insn) -> bool:
    from capstone.x86_const import (X86_GRP_SSE1, X86_GRP_SSE2, X86_GRP_SSE3, X86_GRP_SSE41,
                                    X86_GRP_SSE42, X86_GRP_SSSE3, X86_GRP_AES, X86_GRP_PCLMUL,
                                    X86_GRP_SHA)
    sse = {X86_GRP_SSE1, X86_GRP_SSE2, X86_GRP_SSE3, X86_GRP_SSE41, X86_GRP_SSE42,
           X86_GRP_SSSE3, X86_GRP_AES, X86_GRP_PCLMUL, X86_GRP_SHA}
    return any(g in sse for g in insn.groups)
