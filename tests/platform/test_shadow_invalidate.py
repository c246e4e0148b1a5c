"""A present leaf the Sentry changes under a running guest takes effect at once (docs/pvm.md,
"Page tables and PVM's shadow MMU"): on KVM the old frame's shadow entries must be dropped
through the host mmu notifier, which AnonMemory triggers with an mprotect round trip and
MemoryFile with MADV_DONTNEED.  The guest reads a page, the Sentry re-points or write-protects
it, the guest must see the new frame or fault."""
from __future__ import annotations

import struct

import pytest

from guest import Guest, platform_fixture

from kvmbox.abi.mman import PROT_READ, PROT_WRITE
from kvmbox.platform.base import SYSCALL, Fault

VA = 0xA00000
READ_LOOP = f"""
again:
    mov rax, {VA}
    mov rbx, qword ptr [rax]
    mov eax, 39
    syscall
    jmp again
"""
WRITE_LOOP = f"""
again:
    mov rax, {VA}
    mov qword ptr [rax], rbx
    add rbx, 1
    mov eax, 39
    syscall
    jmp again
"""


@pytest.fixture(scope="module", params=["kvm", "ptrace"])
def platform(request):
    yield from platform_fixture(request.param)


def _frame(platform, value: int) -> int:
    (phys, n), = platform.frames.alloc(1)
    platform.memfile.write(phys, struct.pack("<Q", value))
    return phys


def test_a_repointed_leaf_is_seen_at_once(platform):
    g = Guest(platform, READ_LOOP)
    frames = [_frame(platform, 0x1000 + i) for i in range(8)]
    try:
        for i, phys in enumerate(frames * 3):      # back and forth over frames the shadow has seen
            g.aspace.map(VA, 0x1000, phys, PROT_READ)
            assert g.run() is SYSCALL
            assert g.ctx.get_regs()["rbx"] == 0x1000 + i % 8, f"step {i}: the guest read a stale frame"
    finally:
        g.close()
        for phys in frames:
            platform.frames.free(phys, 1)


def test_a_write_protected_leaf_faults_the_next_write(platform):
    g = Guest(platform, WRITE_LOOP)
    phys = _frame(platform, 0)
    try:
        g.aspace.map(VA, 0x1000, phys, PROT_READ | PROT_WRITE)
        for _ in range(3):
            assert g.run() is SYSCALL                  # writes land (the shadow entry is writable)
        g.aspace.protect(VA, 0x1000, PROT_READ)
        ev = g.run()
        assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == VA, ev
        assert struct.unpack("<Q", platform.memfile.read(phys, 8))[0] == 2   # 0, 1, 2 written
    finally:
        g.close()
        platform.frames.free(phys, 1)


def test_an_unmapped_leaf_faults_and_keeps_nothing(platform):
    g = Guest(platform, READ_LOOP)
    phys = _frame(platform, 0x77)
    try:
        g.aspace.map(VA, 0x1000, phys, PROT_READ)
        assert g.run() is SYSCALL and g.ctx.get_regs()["rbx"] == 0x77
        g.aspace.unmap(VA, 0x1000)
        ev = g.run()
        assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == VA, ev
    finally:
        g.close()
        platform.frames.free(phys, 1)
