"""Page-table frames of a released address space never serve as page tables again (DESIGN.md,
"Copy-on-write fork"): under PVM, KVM keys its shadow pages by guest frame number, so a new
address space built in the old one's table frames could run on the old shadows.  Map VA to P1,
run, retire the tables, map VA to P2 in another address space, run on the same vCPU, read P2."""
from __future__ import annotations

import struct

import pytest

from guest import Guest, platform_fixture

from kvmbox.abi.mman import PROT_READ
from kvmbox.platform.base import SYSCALL

VA = 0xA00000
SOURCE = f"""
    mov rax, {VA}
    mov rbx, qword ptr [rax]
    mov eax, 39
    syscall
"""


@pytest.fixture(scope="module", params=["kvm", "ptrace"])
def platform(request):
    yield from platform_fixture(request.param)


def read_at_va(g: Guest) -> int:
    assert g.run() is SYSCALL
    return g.ctx.get_regs()["rbx"]


def test_a_new_address_space_reads_its_own_frame_not_the_old_tables_view(platform):
    first = Guest(platform, SOURCE)
    first.map(VA, 0x1000, PROT_READ, struct.pack("<Q", 0x1111))        # P1
    assert read_at_va(first) == 0x1111
    old_tables = set(getattr(first.aspace, "_tables", ()))
    first.ctx.release()                   # the vCPU goes back to the pool: the next guest gets it
    first.aspace.release()                # its tables retired; P1 stays allocated (and unpunched)
    second = Guest(platform, SOURCE)
    try:
        second.map(VA, 0x1000, PROT_READ, struct.pack("<Q", 0x2222))   # P2
        assert read_at_va(second) == 0x2222, "the guest read through stale shadow page tables"
        assert not old_tables & set(getattr(second.aspace, "_tables", ())), \
            "a former page-table frame became a page table again"
    finally:
        second.close()
        for phys, n in first.frames:
            platform.frames.free(phys, n)
