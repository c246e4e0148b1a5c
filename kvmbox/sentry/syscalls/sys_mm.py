"""Memory syscalls: brk, mmap (anonymous and of files), munmap, mprotect, mremap, madvise, msync,
mincore, and get_mempolicy for the one NUMA node the sandbox has."""
from __future__ import annotations

import errno
import os

from kvmbox.abi import mman
from kvmbox.abi.mman import PROT_WRITE
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm.mapfile import MappedFile
from kvmbox.sentry.vfs import perm
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry


def brk(t, a) -> int:
    """Implements Linux syscall brk(2)."""
    addr = a[0]
    return t.mm.brk(addr)


def mapped_file(f, prot: int, shared: bool) -> MappedFile:
    """What a mapping of the open file `f` needs, after the access checks mmap(2) makes.

    EACCES: not open for reading, or MAP_SHARED with PROT_WRITE of a file not open
    for writing; ENODEV: nothing to map (directories, pipes, sockets ...).
    """
    acc = f.flags & os.O_ACCMODE
    if not f.readable or acc == os.O_WRONLY:
        raise SyscallError(errno.EACCES)
    loc = f.location
    may_write = acc == os.O_RDWR and f.writable and not (loc is not None and perm.is_readonly(loc))
    if shared and prot & PROT_WRITE and not may_write:
        raise SyscallError(errno.EACCES)
    source = f.mmap_source()
    attr = f.attr()
    # A host file's shared pages are the mapping's own: written back through the source.
    writeback = source.write if shared and may_write and source.shared_backing() is None else None
    return MappedFile(source, loc.path if loc is not None else "", attr.dev, attr.ino,
                      may_write, writeback)


def mmap(t, a) -> int:
    """Implements Linux syscall mmap(2)."""
    addr, length, prot, flags, fd, offset = a[0], a[1], u32(a[2]), u32(a[3]), s32(a[4]), a[5]
    kind = flags & mman.MAP_TYPE
    if flags & mman.MAP_ANONYMOUS or kind not in (mman.MAP_SHARED, mman.MAP_PRIVATE, mman.MAP_SHARED_VALIDATE) \
            or not length or offset % L.PAGE_SIZE:
        return t.mm.mmap(addr, length, prot, flags, fd, offset)     # anonymous, or its EINVAL
    f = t.fds.get(fd)                                               # EBADF
    file = mapped_file(f, prot, kind != mman.MAP_PRIVATE)
    return t.mm.mmap(addr, length, prot, flags, fd, offset, file=file)


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


def msync(t, a) -> int:
    """Implements Linux syscall msync(2)."""
    addr, length, flags = a[0], a[1], s32(a[2])
    t.mm.msync(addr, length, flags)
    return 0


def mincore(t, a) -> int:
    """Implements Linux syscall mincore(2)."""
    addr, length, vec = a[0], a[1], a[2]
    t.mm.copy_out(vec, t.mm.mincore(addr, length))
    return 0


def madvise(t, a) -> int:
    """Implements Linux syscall madvise(2)."""
    addr, length, advice = a[0], a[1], s32(a[2])
    if advice < 0:
        raise SyscallError(errno.EINVAL)
    t.mm.madvise(addr, length, advice)
    return 0


MPOL_DEFAULT = 0                                   # the only policy a task here has
MPOL_F_NODE, MPOL_F_ADDR, MPOL_F_MEMS_ALLOWED = 1, 2, 4
NR_NODE_IDS = 1                                    # one memory node: node 0


def get_mempolicy(t, a) -> int:
    """Implements Linux syscall get_mempolicy(2)."""
    modep, nmask, maxnode, addr, flags = a[0], a[1], a[2], a[3], a[4]
    if nmask and maxnode < NR_NODE_IDS:
        raise SyscallError(errno.EINVAL)
    if flags & ~(MPOL_F_NODE | MPOL_F_ADDR | MPOL_F_MEMS_ALLOWED):
        raise SyscallError(errno.EINVAL)
    nodes = 0                                      # MPOL_DEFAULT reports an empty node mask
    if flags & MPOL_F_MEMS_ALLOWED:
        if flags & (MPOL_F_NODE | MPOL_F_ADDR):
            raise SyscallError(errno.EINVAL)
        nodes = 1                                  # node 0 is allowed
    elif flags & MPOL_F_ADDR:
        if t.mm.vmas.find(addr) is None:
            raise SyscallError(errno.EFAULT)
    elif addr:
        raise SyscallError(errno.EINVAL)           # an address only with MPOL_F_ADDR
    elif flags & MPOL_F_NODE:
        raise SyscallError(errno.EINVAL)           # only an interleave policy has a "next node"
    mode = MPOL_DEFAULT                            # with MPOL_F_NODE|MPOL_F_ADDR: node 0
    if modep:
        t.mm.copy_out(modep, mode.to_bytes(4, "little"))
    if nmask:
        # copy_nodes_to_user(): ALIGN(maxnode - 1, 64) bits, EINVAL past a page
        nbytes = ((maxnode - 1 + 63) // 64) * 8
        if nbytes > L.PAGE_SIZE:
            raise SyscallError(errno.EINVAL)
        if nbytes:
            t.mm.copy_out(nmask, nodes.to_bytes(nbytes, "little"))
    return 0


ENTRIES = (
    Entry("brk", brk, SUPPORTED, "initial break = page-aligned end of bss; no randomization"),
    Entry("mmap", mmap, PARTIAL,
          "populated eagerly up to 64 MiB; MAP_PRIVATE of a file copies pages when populated "
          "(SIGBUS on pages wholly past EOF); MAP_SHARED of in-memory files shares the page cache, "
          "of host files writes back on msync/munmap/exit; "
          "MAP_HUGETLB/MAP_LOCKED/MAP_32BIT accepted and ignored"),
    Entry("munmap", munmap, SUPPORTED, "frees the frames (punched back to the host)"),
    Entry("mprotect", mprotect, SUPPORTED, "splits VMAs; PROT_GROWSDOWN extends to the VMA start"),
    Entry("mremap", mremap, PARTIAL,
          "grow/shrink in place, MAYMOVE/FIXED move the frames without copying; no MREMAP_DONTUNMAP"),
    Entry("msync", msync, PARTIAL,
          "MS_SYNC/MS_ASYNC write back changed pages of shared host-file mappings; "
          "in-memory files need nothing; MS_INVALIDATE ignored"),
    Entry("mincore", mincore, PARTIAL, "a page is resident when the Sentry has populated it"),
    Entry("get_mempolicy", get_mempolicy, SUPPORTED, "one node (0); every range has MPOL_DEFAULT"),
    Entry("madvise", madvise, PARTIAL,
          "DONTNEED/FREE zero private pages, REMOVE frees shared ones, WILLNEED populates; "
          "other advice is accepted and ignored"),
)
