"""Turns a fatal guest CPU fault into the signal Linux would send, and a one-line report."""
from __future__ import annotations

import signal as _signal

from kvmbox.platform.base import Fault

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager

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
