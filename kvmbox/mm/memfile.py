"""Guest RAM, mapped once by the Sentry (guest-physical == offset): a memfd or anonymous memory.

MemoryFile is one memfd: the ptrace platform maps it into its stub processes.
Freeing memory is fallocate(PUNCH_HOLE) (the range reads back as zeros);
`invalidate` is madvise(MADV_DONTNEED) on the Sentry's shared mapping, which
keeps the content but drops the host mapping, so KVM's mmu notifier throws
away any shadow page-table entries mapping those frames (PVM shadow paging
does not notice direct edits of guest page tables).

AnonMemory is the KVM platform's guest RAM: private anonymous memory, 2 MiB
aligned and madvise(MADV_HUGEPAGE), because shmem (memfd) THP is `never` on
these hosts and anonymous THP is `madvise`.  With a huge host page behind the
frames, PVM's shadow faults on first touch cost a fraction of a memfd's (about
1.5 µs a page against 12: docs/pvm.md, "Guest RAM and huge pages").  MADV_DONTNEED would lose a
private page's content, so `invalidate` is an mprotect that adds PROT_EXEC and
takes it away again, which runs the same mmu notifier and keeps both the data
and write access; freeing is MADV_DONTNEED
(reads back as zeros).  ctypes stays in here.
"""
from __future__ import annotations

import ctypes
import mmap
import os

# fallocate(2) mode bits (linux/falloc.h).
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(None, use_errno=True)   # the process's own libc (no find_library: it spawns tools)
_fallocate = _libc.fallocate
_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_fallocate.restype = ctypes.c_int
_mprotect = _libc.mprotect
_mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_mprotect.restype = ctypes.c_int

HUGE_PAGE = 2 << 20              # x86-64 PMD size: a 2 MiB guest leaf and a host THP
_MAP_NORESERVE = 0x4000          # mmap(2): no commit charge, as a memfd has none
_THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def _size_memfd(fd: int, size: int) -> None:
    """ftruncate the memfd to `size` beyond the process's soft RLIMIT_FSIZE, which is the
    guest's to meet (the Sentry enforces it on the guest's files), not guest RAM's: the soft
    limit is raised to the hard one for this one call.  Past the hard limit: KvmboxError."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY or soft >= size:
        os.ftruncate(fd, size)
        return
    if hard != resource.RLIM_INFINITY and hard < size:
        from kvmbox.errors import KvmboxError
        raise KvmboxError(f"kvmbox: the file-size limit (ulimit -f, hard {hard} bytes) is below "
                          f"the sandbox's memory ({size} bytes); raise it or lower --memory")
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    try:
        os.ftruncate(fd, size)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


class MemoryFile:
    """Guest RAM: one memfd of `size` bytes (one KVM memslot), mapped MAP_SHARED read-write."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % mmap.PAGESIZE:
            raise ValueError(f"MemoryFile size must be a positive multiple of the page size: {size}")
        self.size = size
        self.fd = os.memfd_create("kvmbox-guest", os.MFD_CLOEXEC)
        try:
            _size_memfd(self.fd, size)
            self._map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        anchor = ctypes.c_char.from_buffer(self._map)
        self.host_address: int = ctypes.addressof(anchor)
        del anchor
        self.view: memoryview = memoryview(self._map)

    def _check(self, off: int, n: int) -> None:
        if off < 0 or n < 0 or off + n > self.size:
            raise ValueError(f"{type(self).__name__} range [{off:#x}, +{n:#x}) outside [0, {self.size:#x})")

    def check_range(self, off: int, n: int) -> None:
        """ValueError unless [off, off+n) lies inside the file (for direct use of `view`)."""
        self._check(off, n)

    def read(self, off: int, n: int) -> bytes:
        self._check(off, n)
        return self.view[off:off + n].tobytes()

    def write(self, off: int, data: bytes) -> None:
        self._check(off, len(data))
        self.view[off:off + len(data)] = data

    def punch(self, off: int, length: int) -> None:
        """Give [off, off+length) back to the host; it reads as zeros afterwards."""
        self._check(off, length)
        if length and _fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, off, length):
            err = ctypes.get_errno()
            raise OSError(err, f"fallocate(PUNCH_HOLE): {os.strerror(err)}")

    def recycle(self, off: int, length: int) -> None:
        """Make freed frames [off, off+length) ready for reuse: zeros, no shadow entries.
        A memfd just punches them (its host pages cost a fault each either way)."""
        self.punch(off, length)

    def invalidate(self, off: int, length: int) -> None:
        """Drop the host mapping of [off, off+length) (content kept): KVM forgets shadow entries."""
        self._check(off, length)
        if length:
            self._map.madvise(mmap.MADV_DONTNEED, off, length)

    def _unmap(self) -> None:
        """Release the Sentry's view and mapping of guest RAM."""
        self.view.release()
        try:
            self._map.close()
        except BufferError:
            pass                     # someone still holds a slice; the mapping dies with it

    def close(self) -> None:
        if self.fd < 0:
            return
        self._unmap()
        os.close(self.fd)
        self.fd = -1


def _thp_usable() -> bool:
    """Does this host give anonymous memory huge pages on MADV_HUGEPAGE ([always] or [madvise])?"""
    try:
        with open(_THP_ENABLED) as f:
            mode = f.read()
    except OSError:
        return False
    return "[never]" not in mode


class AnonMemory(MemoryFile):
    """Guest RAM for the KVM platform: `size` bytes of private anonymous memory, 2 MiB aligned,
    transparent huge pages asked for.  A MemoryFile without an fd (nothing else maps it)."""

    fd = -1                                  # nothing to share with another process

    def __init__(self, size: int) -> None:   # noqa: super().__init__ would make a memfd
        if size <= 0 or size % mmap.PAGESIZE:
            raise ValueError(f"AnonMemory size must be a positive multiple of the page size: {size}")
        self.size = size
        # Python's mmap cannot ask for an alignment: map 2 MiB more and start at the first
        # 2 MiB boundary inside (the slack is never touched, so it costs no memory).
        self._map = mmap.mmap(-1, size + HUGE_PAGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        anchor = ctypes.c_char.from_buffer(self._map)
        base = ctypes.addressof(anchor)
        del anchor
        self._pad = -base % HUGE_PAGE
        self.host_address: int = base + self._pad
        # A host fork (subprocess in the embedding program) must not copy-on-write guest RAM:
        # the parent's next write would break COW under the vCPUs.
        self._map.madvise(mmap.MADV_DONTFORK, self._pad, size)
        self.huge = _thp_usable()
        if self.huge:
            try:
                self._map.madvise(mmap.MADV_HUGEPAGE, self._pad, size)
            except OSError:
                self.huge = False
        self.view: memoryview = memoryview(self._map)[self._pad:self._pad + size]

    def punch(self, off: int, length: int) -> None:
        """Give [off, off+length) back to the host; it reads as zeros afterwards."""
        self._check(off, length)
        if length:
            self._map.madvise(mmap.MADV_DONTNEED, self._pad + off, length)

    def recycle(self, off: int, length: int) -> None:
        """Make freed frames [off, off+length) ready for reuse, keeping their host pages:
        KVM forgets its shadow entries (invalidate), then the bytes are zeroed in place.
        Unlike punch, the next guest touch of such a frame finds its host page present
        and costs only the shadow fault, not a host fault and a page clear as well."""
        self.invalidate(off, length)
        if length:
            ctypes.memset(self.host_address + off, 0, length)

    def invalidate(self, off: int, length: int) -> None:
        """Make KVM forget its shadow entries for [off, off+length), content kept.

        Linux runs the mmu notifier for any protection change of present pages, so the range
        goes to read-write-execute and back.  Never through read-only: another vCPU, or another
        Sentry thread, may write these frames meanwhile (shared memory, the page cache), and a
        read-only window would fail that vCPU's KVM_RUN with EFAULT or crash the Sentry."""
        self._check(off, length)
        if not length:
            return
        addr = self.host_address + off
        rw = mmap.PROT_READ | mmap.PROT_WRITE
        if _mprotect(addr, length, rw | mmap.PROT_EXEC) or _mprotect(addr, length, rw):
            err = ctypes.get_errno()
            raise OSError(err, f"mprotect (invalidate): {os.strerror(err)}")

    def close(self) -> None:
        if self._map is None:
            return
        self._unmap()
        self._map = None
