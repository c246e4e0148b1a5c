"""File-backed mappings: what a mapping knows of its file, filling private pages, msync write-back.

Three kinds of file mapping, all built by MemoryManager.mmap(..., file=MappedFile):

  * MAP_PRIVATE (any file): a private Backing whose frames are filled from
    MapSource.fill when populated (eagerly like anonymous memory, else on
    fault).  The copy is taken when a page is populated, so later writes to
    the file are not seen (Linux shows them until the page is first written).
  * MAP_SHARED of an in-memory file (MapSource.shared_backing() is a Backing):
    the Vma's Backing IS the file's page cache (refs += 1).  Frames populated
    through the mapping go into the file's Backing, so read()/write() and every
    mapping see one copy.  Unmapping only drops the reference: the file owns the
    frames (its own reference keeps refs > 0).
  * MAP_SHARED of a host file: a Backing of its own (shared by the pieces of
    the mapping), filled like a private one.  When the mapping may write
    (`writeback` set), populated pages whose bytes differ from the file are
    written back with pwrite on msync(MS_SYNC/MS_ASYNC), munmap and exit,
    never past the file's current size.  Two separate mmaps of one host file
    do not share pages (coherence comes only through write-back).

Every Vma of a file mapping numbers its pages by file page (pgoff = offset /
PAGE), so the file offset of any page is its index times PAGE.

End of file, for all three kinds: the bytes of the last partial page past EOF
read as zeros; a page that starts at or past EOF is never populated (eager
population stops at eof_addr), so touching it faults and the fault is refused:
SIGBUS (BUS_ADRERR) as on Linux, and EFAULT for a syscall's buffer there.  The
check is made when a page is populated, against the file's size then: a file
grown after mmap makes the pages readable.  Unlike Linux, truncation does not
take back pages already populated: they stay mapped (a private copy keeps its
bytes, an in-memory file's page cache zeroes them).
"""
from __future__ import annotations

import errno
from collections.abc import Callable

from kvmbox.abi.mman import PROT_WRITE
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm.vma import Backing, Vma
from kvmbox.record import record

PAGE = L.PAGE_SIZE
MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Protocol

    from kvmbox.mm.memfile import MemoryFile

    class MapSource(Protocol):
        """What a file offers to mmap (docs/vfs.md); FileDescription.mmap_source() returns one."""
        size: int

        def shared_backing(self) -> Backing | None: ...

        def fill(self, offset: int, n: int) -> bytes: ...


@record(eq=False)
class MappedFile:
    """One file as a mapping sees it: its bytes, its identity, what the open allows."""
    source: "MapSource"
    path: str                     # canonical guest path, for /proc/<pid>/maps
    dev: int = 0
    ino: int = 0
    may_write: bool = True        # MAP_SHARED may be (or become) writable: O_RDWR on a writable mount
    writeback: Callable[[int, bytes], object] | None = None   # host MAP_SHARED: pwrite(offset, data)
    direct: bool = False          # set by mmap: the Vma's Backing is the file's own page cache


def check_prot(file: MappedFile, prot: int, shared: bool) -> None:
    """EACCES for a writable shared mapping the open does not allow (mmap and mprotect)."""
    if shared and prot & PROT_WRITE and not file.may_write:
        raise SyscallError(errno.EACCES)


def backing_for(file: MappedFile, shared: bool, prot: int = 0) -> Backing:
    """The Backing a new mapping views: the file's page cache (MAP_SHARED of an in-memory
    file, or a read-only MAP_PRIVATE of a file that cannot change: one more reference),
    else a fresh one of its own."""
    if not shared and not prot & PROT_WRITE:
        cache = file.source.private_cache()
        if cache is not None:
            cache.hold()
            return cache
    if shared:
        cache = file.source.shared_backing()
        if cache is not None:
            cache.hold()
            file.direct = True
            return cache
    return Backing(shared=shared)


def eof_addr(v: Vma) -> int:
    """The first address of `v` whose page starts at or past the end of what it maps: the
    file's end, or a shared anonymous object's size (v.end when none does, or for private
    anonymous memory; v.start when all do).  An unreadable size counts as no end."""
    if v.file is None:
        if v.backing.npages is None:
            return v.end
        size = v.backing.npages * PAGE
    else:
        try:
            size = v.file.source.size
        except (SyscallError, OSError):
            return v.end
    limit = v.start + ((size + PAGE - 1) // PAGE - v.pgoff) * PAGE
    return min(v.end, max(v.start, limit))


def fill_frames(memfile: "MemoryFile", v: Vma, pidx: int, phys: int, npages: int) -> None:
    """Copy the file bytes of pages [pidx, pidx+npages) into fresh (zeroed) frames at `phys`."""
    assert v.file is not None
    n = npages * PAGE
    memfile.check_range(phys, n)
    try:
        v.file.source.fill_into(pidx * PAGE, memfile.view[phys:phys + n])
    except (SyscallError, OSError):
        pass                                     # unreadable now: zero pages, as past EOF


def write_back(memfile: "MemoryFile", v: Vma, a: int, b: int) -> None:
    """Write the changed populated pages of [a, b) in `v` back to its host file (best effort)."""
    f = v.file
    if f is None or f.writeback is None:
        return
    size = f.source.size
    for va, phys, n in v.runs(a, b):
        if phys is None:
            continue
        off = v.pidx(va) * PAGE
        if off >= size:
            continue
        k = min(n * PAGE, size - off)
        mine = memfile.read(phys, k)
        try:
            if f.source.fill(off, k) == mine:
                continue
            f.writeback(off, mine)
        except (SyscallError, OSError):
            continue                            # the host file went away: nothing to keep in sync


def msync_flags_ok(flags: int) -> bool:
    return not flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) \
        and (flags & (MS_ASYNC | MS_SYNC)) != (MS_ASYNC | MS_SYNC)
