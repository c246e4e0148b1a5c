"""A bare guest for platform tests: keystone-assembled code, data and stack pages, one context."""
from __future__ import annotations

from keystone import KS_ARCH_X86, KS_MODE_64, Ks

from kvmbox.platform.base import PROT_EXEC, PROT_READ, PROT_WRITE

CODE = 0x400000
DATA = 0x600000
STACK_TOP = 0x800000
ks = Ks(KS_ARCH_X86, KS_MODE_64)


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
