"""vCPU setup done once before the first KVM_RUN: CPUID, MSRs, XCR0, control and segment registers."""
from __future__ import annotations

import struct

from kvmbox.guest_stub import layout as L
from kvmbox.guest_stub.image import tss_selector
from kvmbox.kvm_ioctls import (CPUID_ENTRY_SIZE, REGS_SIZE, SEGMENT_FMT, SEGMENT_SIZE,
                               SREGS_CR_OFF, SREGS_DTABLE_OFF, Vcpu)

# XCR0 components kvmbox enables when KVM supports them: x87, SSE, AVX, AVX-512 (opmask, ZMM).
XCR0_WANTED = 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x80


def cpuid_entry(cpuid2: bytes, function: int, index: int = 0) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) of one leaf in a kvm_cpuid2 buffer; zeros when absent."""
    nent = struct.unpack_from("I", cpuid2, 0)[0]
    for i in range(nent):
        fn, idx, _flags, eax, ebx, ecx, edx = struct.unpack_from("7I", cpuid2, 8 + i * CPUID_ENTRY_SIZE)
        if fn == function and (idx == index or function not in (4, 7, 0xB, 0xD, 0xF, 0x10, 0x14)):
            return eax, ebx, ecx, edx
    return 0, 0, 0, 0


def control_registers(cpuid2: bytes) -> tuple[int, int, int]:
    """(cr0, cr4, efer) for the guest, with SMEP/SMAP/UMIP when the CPU has them."""
    cr0 = L.CR0_PE | L.CR0_MP | L.CR0_ET | L.CR0_NE | L.CR0_WP | L.CR0_PG
    cr4 = L.CR4_PAE | L.CR4_OSFXSR | L.CR4_OSXMMEXCPT | L.CR4_FSGSBASE | L.CR4_OSXSAVE
    _, ebx7, ecx7, _ = cpuid_entry(cpuid2, 7, 0)
    if ebx7 & (1 << 7):
        cr4 |= L.CR4_SMEP
    if ebx7 & (1 << 20):
        cr4 |= L.CR4_SMAP
    if ecx7 & (1 << 2):
        cr4 |= L.CR4_UMIP
    efer = L.EFER_SCE | L.EFER_LME | L.EFER_LMA | L.EFER_NXE
    return cr0, cr4, efer


def xcr0_for(cpuid2: bytes) -> int:
    eax, _, _, _ = cpuid_entry(cpuid2, 0xD, 0)
    return (eax & XCR0_WANTED) | 0x3


def xsave_layout(cpuid2: bytes) -> tuple[int, int]:
    """(XSAVE image size, XCR0) of the guest's user state: the end of the last enabled
    component by CPUID leaf 0xD (legacy area + header = 576 bytes at least)."""
    xcr0 = xcr0_for(cpuid2)
    size = 576
    for bit in range(2, 64):
        if xcr0 >> bit & 1:
            eax, ebx, _, _ = cpuid_entry(cpuid2, 0xD, bit)
            size = max(size, ebx + eax)
    return size, xcr0


def _seg(buf: bytearray, i: int, selector: int, type_: int, dpl: int, db: int, l: int,
         s: int = 1, base: int = 0, limit: int = 0xFFFFFFFF, g: int = 1) -> None:
    struct.pack_into(SEGMENT_FMT, buf, i * SEGMENT_SIZE, base, limit, selector, type_, 1, dpl, db, s, l,
                     g, 0, 0, 0)


def configure(vcpu: Vcpu, cpuid2: bytes, flavour: str, cr3: int, entry: int, sp: int) -> None:
    """Put the vCPU in 64-bit user mode at `entry` with the stub's GDT/IDT/TSS loaded."""
    if not vcpu.cpuid_set:
        # KVM refuses a different CPUID once a vCPU has run, and it edits its own
        # copy at run time (OSXSAVE follows CR4), so a pooled vCPU keeps its first one.
        vcpu.set_cpuid2(cpuid2)
        vcpu.cpuid_set = True
    v = L.STUB_VIRT
    lstar = v + L.user_trampoline(vcpu.index)   # one trampoline per vCPU (its own fast-path page)
    percpu = v + L.PERCPU_OFF + vcpu.index * L.PERCPU_STRIDE
    vcpu.set_msrs({
        L.MSR_STAR: (L.USER_CS32 << 48) | (L.KERNEL_CS << 32),
        L.MSR_LSTAR: lstar,
        L.MSR_CSTAR: lstar,
        # pvm-native: nothing runs in ring 0 on the syscall path, so no flag needs
        # masking, and the user trampoline could not restore masked flags.
        L.MSR_FMASK: 0 if flavour == "pvm-native" else 0x47700,
        L.MSR_FS_BASE: 0,
        L.MSR_GS_BASE: 0,
        L.MSR_KERNEL_GS_BASE: percpu,
    })
    try:
        vcpu.set_xcr0(xcr0_for(cpuid2))
    except OSError:
        pass  # KVM without XSAVE support keeps its default (x87|SSE); glibc then avoids AVX
    cr0, cr4, efer = control_registers(cpuid2)
    sregs = vcpu.get_sregs()
    _seg(sregs, 0, L.USER_CS, 0xB, 3, 0, 1)             # cs: 64-bit user code
    for i in (1, 2, 3, 4, 5):                            # ds es fs gs ss
        _seg(sregs, i, L.USER_DS, 0x3, 3, 1, 0)
    _seg(sregs, 6, tss_selector(vcpu.index), 0xB, 0, 0, 0, s=0,
         base=v + L.percpu_tss(vcpu.index), limit=L.TSS_LIMIT, g=0)
    _seg(sregs, 7, 0, 0x2, 0, 0, 0, s=0, limit=0xFFFF, g=0)   # ldt: unused
    struct.pack_into("<QH", sregs, SREGS_DTABLE_OFF, v + L.GDT_OFF, 0xFFF)
    struct.pack_into("<QH", sregs, SREGS_DTABLE_OFF + 16, v + L.IDT_OFF, 256 * 16 - 1)
    struct.pack_into("<QQQQQQ", sregs, SREGS_CR_OFF, cr0, 0, cr3, cr4, 0, efer)
    vcpu.set_sregs(sregs)
    regs = bytearray(REGS_SIZE)
    struct.pack_into("<Q", regs, 6 * 8, sp)
    struct.pack_into("<QQ", regs, 16 * 8, entry, 0x202)
    vcpu.set_regs(regs)
