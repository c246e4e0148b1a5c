"""Turns a fatal guest CPU fault into the signal Linux would send, and a one-line report."""
from __future__ import annotations

import signal as _signal

from kvmbox.errors import SyscallError
from kvmbox.platform.base import PF_ACCESS_UNKNOWN, PF_WRITE, Fault

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager
    from kvmbox.sentry.task import Task

# x86 exception vector -> the signal Linux delivers for it from user mode.
VECTOR_SIGNAL = {
    0: _signal.SIGFPE,     # #DE divide error
    1: _signal.SIGTRAP,    # #DB debug
    3: _signal.SIGTRAP,    # #BP int3
    4: _signal.SIGSEGV,    # #OF into
    5: _signal.SIGSEGV,    # #BR bound
    6: _signal.SIGILL,     # #UD invalid opcode
    7: _signal.SIGSEGV,    # #NM (never expected: the FPU is always on)
    10: _signal.SIGSEGV,   # #TS
    11: _signal.SIGBUS,    # #NP
    12: _signal.SIGBUS,    # #SS
    13: _signal.SIGSEGV,   # #GP: privileged instructions, non-canonical addresses
    14: _signal.SIGSEGV,   # #PF
    16: _signal.SIGFPE,    # #MF x87
    17: _signal.SIGBUS,    # #AC alignment check
    19: _signal.SIGFPE,    # #XM SIMD
}
VECTOR_NAMES = {0: "#DE", 1: "#DB", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 10: "#TS",
                11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 19: "#XM"}


def signal_for(fault: Fault, mm: "MemoryManager | None" = None) -> int:
    """The signal Linux sends for `fault`: a page fault the MemoryManager refused is SIGBUS
    where it touched a file mapping's page wholly past the file's end, else SIGSEGV."""
    if fault.vector == 14 and mm is not None and mm.beyond_eof(fault.address, fault.error_code):
        return _signal.SIGBUS
    return int(VECTOR_SIGNAL.get(fault.vector, _signal.SIGSEGV))


def disassemble(code: bytes, rip: int) -> str:
    """The instruction at `rip` in AT&T-free Intel syntax, or '?' when it cannot be decoded."""
    try:
        from capstone import CS_ARCH_X86, CS_MODE_64, Cs
    except ImportError:  # pragma: no cover - capstone is a declared dependency
        return "?"
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    for insn in md.disasm(code, rip, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "?"


def describe(fault: Fault, signo: int, code: bytes | None) -> str:
    """`killed by SIGSEGV at rip 0x401000 (mov byte ptr [rax], 1): #PF address 0x0 (write, not present)`."""
    name = _signal.Signals(signo).name
    insn = disassemble(code, fault.rip) if code else "unreadable"
    vec = VECTOR_NAMES.get(fault.vector, f"vector {fault.vector}")
    detail = f"{vec}"
    if fault.vector == 14:
        access = "instruction fetch" if fault.error_code & 16 else ("write" if fault.error_code & 2 else "read")
        why = "past end of file" if signo == _signal.SIGBUS else \
            "protection violation" if fault.error_code & 1 else "not mapped"
        detail += f" address {fault.address:#x} ({access}, {why})"
    elif fault.error_code:
        detail += f" error code {fault.error_code:#x}"
    return f"killed by {name} at rip {fault.rip:#x} ({insn}): {detail}"


# Instructions whose first (memory) operand is only read.
_READ_FIRST = frozenset({
    "cmp", "test", "bt", "ptest", "vptest", "ucomiss", "ucomisd", "comiss", "comisd", "vucomiss",
    "vucomisd", "vcomiss", "vcomisd", "nop", "prefetch", "prefetchw", "prefetcht0", "prefetcht1",
    "prefetcht2", "prefetchnta", "clflush", "clflushopt", "clwb", "cmpsb", "cmpsw", "cmpsd",
    "cmpsq", "scasb", "scasw", "scasd", "scasq", "lodsb", "lodsw", "lodsd", "lodsq",
    "push", "call", "jmp"})      # (their memory operand is read; the stack write is implicit)


def writes_page(code: bytes, rip: int, regs: dict[str, int], address: int) -> bool:
    """Whether the instruction at `rip` writes the page holding `address`: a memory operand
    it writes (capstone's access flags, or the first operand of anything not in _READ_FIRST,
    since capstone marks some stores as reads) whose effective address lies on that page, or
    an implicit push.  When no operand's address can be matched, any written one counts."""
    from capstone import CS_AC_WRITE, CS_ARCH_X86, CS_MODE_64, Cs
    from capstone.x86 import X86_OP_MEM

    md = Cs(CS_ARCH_X86, CS_MODE_64)
    md.detail = True
    insn = next(md.disasm(code, rip, 1), None)
    if insn is None:
        return False
    name = insn.mnemonic.split()[-1]
    page = address >> 12
    if name.startswith(("push", "call", "enter")) and (regs.get("rsp", 0) - 8) >> 12 == page:
        return True
    written_any = False
    for i, op in enumerate(insn.operands):
        if op.type != X86_OP_MEM:
            continue
        written = bool(op.access & CS_AC_WRITE) or (i == 0 and name not in _READ_FIRST)
        written_any |= written
        ea = _effective_address(insn, op, regs)
        if ea is not None and ea >> 12 <= page <= (ea + max(op.size, 1) - 1) >> 12:
            return written
    return written_any


def _effective_address(insn, op, regs: dict[str, int]) -> int | None:
    """base + index * scale + disp (+ FS/GS base) of memory operand `op`, or None."""
    mem = op.mem
    total = mem.disp
    for reg, scale in ((mem.base, 1), (mem.index, mem.scale)):
        if not reg:
            continue
        name = insn.reg_name(reg)
        if name == "rip":
            total += insn.address + insn.size
        elif name in regs:
            total += regs[name] * scale
        else:
            return None                          # 32-bit or odd registers: no guess
    if mem.segment:
        seg = insn.reg_name(mem.segment)
        total += regs.get(f"{seg}_base", 0) if seg in ("fs", "gs") else 0
    return total & ((1 << 64) - 1)


def resolve_access(fault: Fault, t: "Task") -> Fault:
    """`fault` with PF_ACCESS_UNKNOWN replaced by what the instruction at its rip does
    (PF_WRITE when it writes the faulting page); unreadable code counts as a read."""
    if not fault.error_code & PF_ACCESS_UNKNOWN:
        return fault
    code = fault.error_code & ~PF_ACCESS_UNKNOWN
    text = b""
    for n in (16, 4096 - fault.rip % 4096):       # the longest instruction, else to the page end
        try:
            text = t.mm.copy_in(fault.rip, min(n, 16))
            break
        except SyscallError:
            continue
    if text and writes_page(text, fault.rip, t.ctx.get_regs(), fault.address):
        code |= PF_WRITE
    return Fault(fault.vector, fault.address, code, fault.rip)
