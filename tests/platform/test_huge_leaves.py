"""2 MiB guest leaves on KVM (kvmbox/mm/pagetables.py, huge=True) with real guest code:
a guest reads through a leaf, through the page table a split leaves (a fresh path and a
new root), faults where the split unmapped, and reads new frames in a burnt slot reused.
Each read is checked against what the host wrote in that frame."""
from __future__ import annotations

import struct

import pytest
import helpers

from kvmbox.abi.mman import PROT_READ, PROT_WRITE
from kvmbox.platform.base import SYSCALL, Fault

pytestmark = pytest.mark.skipif(not helpers.kvm_usable(), reason="no usable /dev/kvm on this host")

PAGE = 4096
HUGE = 2 << 20
BASE = 0x4000_0000
READ = 1000                    # the "syscall" the guest makes after each read


def _frames(p, tag: int) -> int:
    (phys, _), = p.frames.alloc(HUGE // PAGE, 0)
    assert phys % HUGE == 0
    for i in range(HUGE // PAGE):
        struct.pack_into("<Q", p.memfile.view, phys + i * PAGE, tag << 32 | i)
    return phys


def _read(g, addr: int):
    """Resume the guest to read the qword at `addr`: its value, or the Fault."""
    g.ctx.set_regs(rsi=addr)
    ev = g.run()
    if isinstance(ev, Fault):
        return ev
    assert ev is SYSCALL and g.ctx.syscall_args()[0] == READ
    return g.ctx.syscall_args()[1]


def test_reads_through_a_leaf_a_split_and_a_reused_slot(kvm_guest):
    g = kvm_guest(f"""
        mov eax, {READ}
        syscall
    again:
        mov rdi, [rsi]
        mov eax, {READ}
        syscall
        jmp again
    """)
    p, aspace = g.p, g.aspace
    first = _frames(p, 1)
    aspace.map(BASE, HUGE, first, PROT_READ | PROT_WRITE)
    assert aspace.lookup(BASE + 5 * PAGE) == (first + 5 * PAGE, aspace.lookup(BASE)[1])
    assert g.run() is SYSCALL                      # the first stop, before any read
    assert _read(g, BASE + 5 * PAGE) == 1 << 32 | 5
    root = aspace.root
    aspace.unmap(BASE + 7 * PAGE, PAGE)            # splits the leaf: a new root
    assert aspace.root != root and aspace.rebuilds == 1
    assert _read(g, BASE + 8 * PAGE) == 1 << 32 | 8
    assert _read(g, BASE + 6 * PAGE + 8) == 0      # the qword after the marker
    ev = _read(g, BASE + 7 * PAGE)
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == BASE + 7 * PAGE
    g.ctx.set_regs(rip=g.ctx.get_regs()["rip"])    # (the fault left the vCPU in the handler)
    aspace.unmap(BASE, HUGE)
    p.frames.free(first, HUGE // PAGE)
    second = _frames(p, 2)
    aspace.map(BASE, HUGE, second, PROT_READ | PROT_WRITE)
    assert _read(g, BASE + 7 * PAGE) == 2 << 32 | 7
    assert _read(g, BASE + 511 * PAGE) == 2 << 32 | 511
    aspace.unmap(BASE + HUGE - PAGE, PAGE)
    aspace.unmap(BASE, HUGE)
    p.frames.free(second, HUGE // PAGE)


def test_a_whole_leaf_reused_in_place_after_an_unmap_reads_the_new_frames(kvm_guest):
    """Leaf -> empty -> leaf on other frames: the slot is burnt, so the second leaf goes
    in a fresh PD; a read must see the new frames, never the old ones."""
    g = kvm_guest(f"mov eax, {READ}\n syscall\n again:\n mov rdi, [rsi]\n mov eax, {READ}\n syscall\n jmp again\n")
    p, aspace = g.p, g.aspace
    assert g.run() is SYSCALL
    for tag in range(3, 8):
        phys = _frames(p, tag)
        aspace.map(BASE + HUGE, HUGE, phys, PROT_READ)
        assert _read(g, BASE + HUGE + 3 * PAGE) == tag << 32 | 3
        aspace.unmap(BASE + HUGE, HUGE)
        p.frames.free(phys, HUGE // PAGE)
    assert aspace.rebuilds >= 4
