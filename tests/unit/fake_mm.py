"""A page-dict-backed stand-in for the MemoryManager, with the methods the loader uses.

It checks what the real one would: page alignment, the mmap flags the loader
must pass, prot on copy_in/copy_out (unless force=True), mapped ranges (EFAULT).
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from kvmbox.abi.mman import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.errors import SyscallError

PAGE = 4096


@dataclass
class FakeMM:
    """Guest memory as {page number: bytearray}, with a prot per page."""
    limit: int = 0x7F80_0000_0000
    pages: dict[int, bytearray] = field(default_factory=dict)
    prots: dict[int, int] = field(default_factory=dict)
    mmap_calls: list[tuple[int, int, int, int]] = field(default_factory=list)
    brk_base: int | None = None
    stack: tuple[int, int, int] | None = None
    max_pages: int = 1 << 16           # refuse to back absurd mappings in a unit test
    mmap_top: int = 0x7F7F_0000_0000   # non-fixed mappings go top-down below here

    # --- the MemoryManager API --------------------------------------------------
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0, *, file=None) -> int:
        if addr % PAGE or length <= 0 or length % PAGE or prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
            raise SyscallError(errno.EINVAL)
        if flags == MAP_PRIVATE | MAP_ANONYMOUS and fd == -1 and not offset and not addr:
            addr = self.mmap_top - length           # the loader's reservation for an interpreter
            while any(p in self.pages for p in range(addr // PAGE, (addr + length) // PAGE)):
                addr -= PAGE
        elif flags != MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED or fd != -1 or offset or file:
            raise SyscallError(errno.EINVAL)
        if addr + length > self.limit:
            raise SyscallError(errno.ENOMEM)
        if len(self.pages) + length // PAGE > self.max_pages:
            raise SyscallError(errno.ENOMEM)
        self.mmap_calls.append((addr, length, prot, flags))
        for page in range(addr // PAGE, (addr + length) // PAGE):
            self.pages[page] = bytearray(PAGE)       # MAP_FIXED replaces: fresh zero page
            self.prots[page] = prot
        return addr

    def munmap(self, addr: int, length: int) -> None:
        for page in range(addr // PAGE, (addr + length + PAGE - 1) // PAGE):
            self.pages.pop(page, None)
            self.prots.pop(page, None)

    def copy_out(self, addr: int, data: bytes, *, force: bool = False) -> None:
        self._check(addr, len(data), PROT_WRITE, force)
        for i, b in enumerate(data):
            self.pages[(addr + i) // PAGE][(addr + i) % PAGE] = b

    def copy_in(self, addr: int, n: int) -> bytes:
        self._check(addr, n, PROT_READ, False)
        return bytes(self.pages[(addr + i) // PAGE][(addr + i) % PAGE] for i in range(n))

    def set_brk_base(self, addr: int) -> None:
        if addr % PAGE:
            raise SyscallError(errno.EINVAL)
        self.brk_base = addr

    def map_stack(self, top: int, size: int, max_size: int) -> None:
        if top % PAGE or size % PAGE or size > max_size:
            raise SyscallError(errno.EINVAL)
        for page in range((top - size) // PAGE, top // PAGE):
            if page in self.pages:
                raise SyscallError(errno.EEXIST)
            self.pages[page] = bytearray(PAGE)
            self.prots[page] = PROT_READ | PROT_WRITE
        self.stack = (top, size, max_size)

    # --- test helpers --------------------------------------------------------------
    def _check(self, addr: int, n: int, need: int, force: bool) -> None:
        if addr < 0 or n < 0:
            raise SyscallError(errno.EFAULT)
        for page in range(addr // PAGE, (addr + n + PAGE - 1) // PAGE):
            if page not in self.pages:
                raise SyscallError(errno.EFAULT)
            if not force and not self.prots[page] & need:
                raise SyscallError(errno.EFAULT)

    def prot_at(self, addr: int) -> int | None:
        """prot of the page holding addr, None if unmapped."""
        return self.prots.get(addr // PAGE)

    def read(self, addr: int, n: int) -> bytes:
        """Bytes regardless of prot (but the pages must be mapped)."""
        self._check(addr, n, 0, True)
        return bytes(self.pages[(addr + i) // PAGE][(addr + i) % PAGE] for i in range(n))

    def u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def cstring(self, addr: int, limit: int = 1 << 16) -> bytes:
        out = bytearray()
        while len(out) < limit:
            b = self.read(addr + len(out), 1)[0]
            if b == 0:
                return bytes(out)
            out.append(b)
        raise AssertionError("unterminated string")
