"""Lays the stub region out in guest RAM: GDT, IDT, per-vCPU TSS and stacks, code, and its page tables.

The region occupies guest-physical [0, layout.STUB_RESERVED) and is mapped at
layout.STUB_VIRT in every address space through one shared PDPT (returned to
the caller, who links it into each PML4).  Everything is supervisor-only
except the trampoline page (user R+X) and the reserved vDSO data page (user R).
"""
from __future__ import annotations

import struct

from kvmbox.guest_stub import layout as L
from kvmbox.guest_stub.stub import StubCode

# Page-table entry bits used for the stub region.
_P, _W, _U, _NX = 1, 2, 4, 1 << 63
_A_D = 0x60  # accessed + dirty set up front

# GDT descriptors (flat segments, Linux's layout).
_GDT_ENTRIES = {
    L.KERNEL_CS: 0x00AF9B000000FFFF,   # 64-bit code, DPL 0
    L.KERNEL_DS: 0x00CF93000000FFFF,   # data, DPL 0
    L.USER_CS32: 0x00CFFB000000FFFF,   # 32-bit code, DPL 3 (STAR base for sysret)
    L.USER_DS: 0x00CFF3000000FFFF,     # data, DPL 3
    L.USER_CS: 0x00AFFB000000FFFF,     # 64-bit code, DPL 3
}
_USER_GATES = frozenset({3, 4})         # int3 and into may be raised from ring 3 (DPL 3 gates)


def tss_selector(vcpu_index: int) -> int:
    return L.TSS_SEL + 16 * vcpu_index


def _tss_descriptor(base: int, limit: int) -> tuple[int, int]:
    low = ((limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89 << 40)
           | (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56))
    return low, base >> 32


def _gate(handler: int, dpl: int) -> tuple[int, int]:
    type_attr = 0x8E | (dpl << 5)       # present, 64-bit interrupt gate
    low = ((handler & 0xFFFF) | (L.KERNEL_CS << 16) | (1 << 32)  # IST1
           | (type_attr << 40) | (((handler >> 16) & 0xFFFF) << 48))
    return low, handler >> 32


def write_stub_region(mem: memoryview, code: StubCode, nvcpus: int) -> int:
    """Write the whole stub region into `mem` (guest RAM from physical 0); returns the PDPT's address.

    `mem` must be fresh (all zero, as a new memfd is): unwritten bytes stay zero
    without the host committing memory for them.
    """
    if not 1 <= nvcpus <= L.MAX_VCPUS:
        raise ValueError(f"nvcpus must be 1..{L.MAX_VCPUS}")
    v = L.STUB_VIRT
    # GDT
    for sel, desc in _GDT_ENTRIES.items():
        struct.pack_into("<Q", mem, L.GDT_OFF + (sel & ~7), desc)
    for i in range(nvcpus):
        low, high = _tss_descriptor(v + L.percpu_tss(i), L.TSS_LIMIT)
        struct.pack_into("<QQ", mem, L.GDT_OFF + tss_selector(i), low, high)
    # IDT: the 32 exception vectors
    for vec in range(32):
        low, high = _gate(v + L.HANDLERS_OFF + vec * L.HANDLER_STRIDE, 3 if vec in _USER_GATES else 0)
        struct.pack_into("<QQ", mem, L.IDT_OFF + 16 * vec, low, high)
        off = L.HANDLERS_OFF + vec * L.HANDLER_STRIDE
        mem[off:off + len(code.handlers[vec])] = code.handlers[vec]
    for i in range(nvcpus):
        off = L.user_trampoline(i)
        mem[off:off + len(code.trampoline)] = code.trampoline
    # Per-vCPU TSS: RSP0 and IST1 at the top of the vCPU's stack; I/O bitmap allowing PORT_SYSCALL only.
    for i in range(nvcpus):
        tss = L.percpu_tss(i)
        top = v + L.percpu_stack_top(i)
        struct.pack_into("<Q", mem, tss + 4, top)           # RSP0
        struct.pack_into("<Q", mem, tss + 0x24, top)        # IST1
        struct.pack_into("<H", mem, tss + 0x66, L.TSS_IOMAP_OFF)
        bitmap = bytearray(b"\xff" * 8193)
        bitmap[L.PORT_SYSCALL // 8] &= ~(1 << (L.PORT_SYSCALL % 8)) & 0xFF
        mem[tss + L.TSS_IOMAP_OFF:tss + L.TSS_IOMAP_OFF + len(bitmap)] = bitmap
    return _write_tables(mem, nvcpus, user_trampoline=code.flavour == "pvm-native")


def _write_tables(mem: memoryview, nvcpus: int, user_trampoline: bool) -> int:
    pdpt = L.STUB_TABLES_OFF
    pd, pt = pdpt + 0x1000, pdpt + 0x2000
    idx_pdpt = (L.STUB_VIRT >> 30) & 511
    idx_pd = (L.STUB_VIRT >> 21) & 511
    struct.pack_into("<Q", mem, pdpt + 8 * idx_pdpt, pd | _P | _W | _U)
    struct.pack_into("<Q", mem, pd + 8 * idx_pd, pt | _P | _W | _U)

    def leaf(off: int, flags: int) -> None:
        struct.pack_into("<Q", mem, pt + 8 * (off >> 12), off | flags | _A_D)

    leaf(L.GDT_OFF, _P | _W | _NX)
    leaf(L.IDT_OFF, _P | _NX)
    leaf(L.HANDLERS_OFF, _P)
    for i in range(nvcpus):
        # pvm-native: the trampoline runs in ring 3 (R+X for the user) and reads its
        # fast-path data page (R).  hw: the entry is ring-0 code, supervisor-only.
        user = _U if user_trampoline else 0
        leaf(L.user_trampoline(i), _P | user)
        leaf(L.fast_data(i), _P | user | _NX)
    leaf(L.VDSO_DATA_OFF, _P | _U | _NX)
    for off in range(L.PERCPU_OFF, L.percpu_stack_top(nvcpus - 1), 0x1000):
        leaf(off, _P | _W | _NX)
    return pdpt
