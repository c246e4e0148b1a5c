"""The CPU features the guest sees: raw CPUID from Python, and AT_HWCAP/AT_HWCAP2/AT_MINSIGSTKSZ.

Guest user code runs on the host's real CPU (PVM gives ring 3 the real CPUID,
and ptrace runs it natively), so the auxv must describe the real CPU.  CPUID is
executed for real: a ten-instruction function is assembled with keystone into
an anonymous PROT_EXEC page and called through ctypes.  If the host refuses an
executable mapping, AT_HWCAP falls back to the flags in /proc/cpuinfo.
"""
from __future__ import annotations

import ctypes
import functools
import mmap
from collections.abc import Callable

from kvmbox.abi.auxv import HWCAP2_FSGSBASE
from kvmbox.record import record

# cpuid_fn(leaf: edi, subleaf: esi, out: rdx -> uint32[4]) under the SysV ABI.
_CPUID_ASM = """
    push rbx
    mov eax, edi
    mov ecx, esi
    mov r8, rdx
    cpuid
    mov dword ptr [r8], eax
    mov dword ptr [r8 + 4], ebx
    mov dword ptr [r8 + 8], ecx
    mov dword ptr [r8 + 12], edx
    pop rbx
    ret
"""
# _CPUID_ASM assembled (tests/unit checks keystone still gives these bytes); kept
# pre-assembled so start-up does not import keystone.
_CPUID_CODE = bytes.fromhex("5389f889f14989d00fa241890041895804418948084189500c5bc3")

# /proc/cpuinfo flag name of each CPUID.1:EDX bit (None: reserved / no name).
LEAF1_EDX_FLAGS: tuple[str | None, ...] = (
    "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce",
    "cx8", "apic", None, "sep", "mtrr", "pge", "mca", "cmov",
    "pat", "pse36", "pn", "clflush", None, "dts", "acpi", "mmx",
    "fxsr", "sse", "sse2", "ss", "ht", "tm", "ia64", "pbe",
)

# AT_MINSIGSTKSZ model: the worst-case signal frame is the XSAVE image plus a
# fixed overhead (rt_sigframe = pretcode 8 + ucontext 304 + siginfo 128; the
# 112-byte legacy fsave header Linux always reserves when it supports 32-bit
# tasks; 304 more bytes of ucontext slack; 15 + 63 bytes of worst-case alignment
# of the frame and of the xsave area), rounded up to 16.  Calibrated against a
# Linux 6.x host that prints "max sigframe size: 3376" for a 2440-byte XSAVE image.
_RT_SIGFRAME_SIZE = 8 + 304 + 128
_FSAVE_HEADER_SIZE = 112
_UCONTEXT_SLACK = 304
_FRAME_PADDING = 15 + 63
_LEGACY_FXSAVE_SIZE = 512      # without XSAVE the FPU state is a 512-byte fxsave image


@record(frozen=True)
class _CpuidFunction:
    """An executable page holding the cpuid routine; keeps the mapping alive."""
    page: mmap.mmap
    call: Callable[[int, int, ctypes.Array], None]


@functools.cache
def _cpuid_function() -> _CpuidFunction:
    """Map the cpuid routine once (raises OSError if PROT_EXEC is refused)."""
    code = _CPUID_CODE
    page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes(code))
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    proto = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))
    return _CpuidFunction(page=page, call=proto(address))


@functools.cache
def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) of CPUID(leaf, subleaf) on this CPU; raises OSError if unavailable."""
    fn = _cpuid_function()
    out = (ctypes.c_uint32 * 4)()
    fn.call(leaf & 0xFFFF_FFFF, subleaf & 0xFFFF_FFFF, out)
    return out[0], out[1], out[2], out[3]


def cpuinfo_flags(text: str | None = None) -> frozenset[str]:
    """The `flags` of the first processor in /proc/cpuinfo (or in `text`)."""
    if text is None:
        try:
            with open("/proc/cpuinfo") as f:
                text = f.read()
        except OSError:
            return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def hwcaps_from_flags(flags: frozenset[str]) -> tuple[int, int]:
    """AT_HWCAP/AT_HWCAP2 rebuilt from /proc/cpuinfo flag names (the fallback path)."""
    hwcap = 0
    for bit, name in enumerate(LEAF1_EDX_FLAGS):
        if name is not None and name in flags:
            hwcap |= 1 << bit
    hwcap2 = HWCAP2_FSGSBASE if "fsgsbase" in flags else 0
    return hwcap, hwcap2


@functools.cache
def hwcaps() -> tuple[int, int]:
    """(AT_HWCAP, AT_HWCAP2) as x86-64 Linux reports them for this CPU.

    AT_HWCAP is CPUID.1:EDX.  AT_HWCAP2 carries HWCAP2_FSGSBASE when the CPU has
    FSGSBASE (CPUID.7.0:EBX bit 0): the KVM platform enables CR4.FSGSBASE
    whenever it exists, and a host kernel that has it enables it as well.
    HWCAP2_RING3MWAIT (Xeon Phi only) is never reported.
    """
    try:
        max_leaf = cpuid(0)[0]
        hwcap = cpuid(1)[3]
        fsgsbase = max_leaf >= 7 and bool(cpuid(7, 0)[1] & 1)
    except OSError:
        return hwcaps_from_flags(cpuinfo_flags())
    return hwcap, HWCAP2_FSGSBASE if fsgsbase else 0


def minsigstksz_for(xstate_size: int) -> int:
    """AT_MINSIGSTKSZ for a signal frame carrying `xstate_size` bytes of FPU state."""
    size = xstate_size + _FSAVE_HEADER_SIZE + _RT_SIGFRAME_SIZE + _UCONTEXT_SLACK + _FRAME_PADDING
    return (size + 15) & ~15


@functools.cache
def minsigstksz() -> int:
    """AT_MINSIGSTKSZ for this CPU with the XSAVE features the OS enabled (CPUID.0xD.0:EBX)."""
    try:
        if cpuid(0)[0] >= 0xD and cpuid(1)[2] & (1 << 27):   # OSXSAVE: XCR0 is set up
            return minsigstksz_for(cpuid(0xD, 0)[1])
    except OSError:
        pass
    return minsigstksz_for(_LEGACY_FXSAVE_SIZE)
