"""Memory syscalls: brk, mmap, munmap, mprotect, mremap, madvise (over Task.mm)."""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry


def brk(t, a) -> int:
    """Implements Linux syscall brk(2)."""
    addr = a[0]
    return t.mm.brk(addr)


def mmap(t, a) -> int:
    """Implements Linux syscall mmap(2)."""
    addr, length, prot, flags, fd, offset = a[0], a[1], u32(a[2]), u32(a[3]), s32(a[4]), a[5]
    if not flags & L.MAP_ANONYMOUS and (flags & L.MAP_TYPE) in (L.MAP_SHARED, L.MAP_PRIVATE,
                                                              L.MAP_SHARED_VALIDATE):
        fds = getattr(t, "fds", None)
        if fds is not None and length and not offset % L.PAGE_SIZE:
            fds.get(fd)                                 # EBADF before "cannot map this file"
    return t.mm.mmap(addr, length, prot, flags, fd, offset)


def munmap(t, a) -> int:
    """Implements Linux syscall munmap(2)."""
    addr, length = a[0], a[1]
    t.mm.munmap(addr, length)
    return 0


def mprotect(t, a) -> int:
    """Implements Linux syscall mprotect(2)."""
    addr, length, prot = a[0], a[1], u32(a[2])
    t.mm.mprotect(addr, length, prot)
    return 0


def mremap(t, a) -> int:
    """Implements Linux syscall mremap(2)."""
    old_addr, old_len, new_len, flags, new_addr = a[0], a[1], a[2], u32(a[3]), a[4]
    return t.mm.mremap(old_addr, old_len, new_len, flags, new_addr)


def madvise(t, a) -> int:
    """Implements Linux syscall madvise(2)."""
    addr, length, advice = a[0], a[1], s32(a[2])
    if advice < 0:
        raise SyscallError(errno.EINVAL)
    t.mm.madvise(addr, length, advice)
    return 0


ENTRIES = (
    Entry("brk", brk, SUPPORTED, "initial break = page-aligned end of bss; no randomization"),
    Entry("mmap", mmap, PARTIAL,
          "anonymous private/shared only (file mappings: ENODEV); populated eagerly up to 64 MiB; "
          "MAP_HUGETLB/MAP_LOCKED/MAP_32BIT accepted and ignored"),
    Entry("munmap", munmap, SUPPORTED, "frees the frames (punched back to the host)"),
    Entry("mprotect", mprotect, SUPPORTED, "splits VMAs; PROT_GROWSDOWN extends to the VMA start"),
    Entry("mremap", mremap, PARTIAL,
          "grow/shrink in place, MAYMOVE/FIXED move the frames without copying; no MREMAP_DONTUNMAP"),
    Entry("madvise", madvise, PARTIAL,
          "DONTNEED/FREE zero private pages, REMOVE frees shared ones, WILLNEED populates; "
          "other advice is accepted and ignored"),
)
