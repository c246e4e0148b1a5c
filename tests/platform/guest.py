"""A bare guest for platform tests: keystone-assembled code, data and stack pages, one context;
and the fixture bodies that open a platform and make guests on it."""
from __future__ import annotations

import pytest
from keystone import KS_ARCH_X86, KS_MODE_64, Ks

import helpers

from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE

CODE = 0x400000
DATA = 0x600000
STACK_TOP = 0x800000
ks = Ks(KS_ARCH_X86, KS_MODE_64)
# Sets CF, PF, ZF, SF and OF (RFLAGS & 0x8d5 == 0x8c5): put before a syscall, then read RFLAGS.
FLAGS_PROLOGUE = """
    mov eax, 0x7fffffff
    add eax, 1
    mov al, 0
    mov ah, 0xc5
    sahf
"""


class Guest:
    """An address space with code at CODE, data at DATA and a stack below STACK_TOP."""

    def __init__(self, platform, source: str) -> None:
        self.p = platform
        self.aspace = platform.new_address_space()
        self.ctx = platform.new_context()
        self.frames: list[tuple[int, int]] = []
        code = bytes(ks.asm(source, CODE)[0])
        self.code_phys = self.map(CODE, 0x2000, PROT_READ | PROT_EXEC, code)
        self.data_phys = self.map(DATA, 0x2000, PROT_READ | PROT_WRITE)
        self.map(STACK_TOP - 0x4000, 0x4000, PROT_READ | PROT_WRITE)
        self.ctx.set_regs(rip=CODE, rsp=STACK_TOP - 0x100)

    def map(self, va: int, length: int, prot: int, data: bytes = b"") -> int:
        ext = self.p.frames.alloc(length // 0x1000)
        assert len(ext) == 1, "test wants one contiguous extent"
        phys, n = ext[0]
        self.frames.append((phys, n))
        self.p.memfile.write(phys, data.ljust(length, b"\0"))
        self.aspace.map(va, length, phys, prot)
        return phys

    def run(self):
        return self.ctx.switch(self.aspace)

    def close(self) -> None:
        self.ctx.release()
        self.aspace.release()
        for phys, n in self.frames:
            self.p.frames.free(phys, n)


def guest_factory(platform, cls=Guest):
    """A fixture body: yields make(source) and closes every guest made."""
    made = []

    def make(source: str):
        g = cls(platform, source)
        made.append(g)
        return g
    yield make
    for g in made:
        g.close()


def platform_fixture(name: str, memory: int = 128 << 20):
    """A fixture body: yields an open `name` platform ("kvm" or "ptrace") and closes it.
    Skips (only) a kvm test when /dev/kvm cannot be used."""
    if name == "kvm":
        if not helpers.kvm_usable():
            pytest.skip("no usable /dev/kvm on this host")
        from kvmbox.platform.kvm.platform import KvmPlatform
        p = KvmPlatform(memory)
    else:
        from kvmbox.platform.ptrace.platform import PtracePlatform
        p = PtracePlatform(memory)
    yield p
    p.close()
