"""MemoryFile: guest RAM as one memfd, mapped once by the Sentry (guest-physical == file offset).

Freeing memory is fallocate(PUNCH_HOLE) (the range reads back as zeros);
`invalidate` is madvise(MADV_DONTNEED) on the Sentry's shared mapping, which
keeps the content but drops the host mapping, so KVM's mmu notifier throws
away any shadow page-table entries mapping those frames (PVM shadow paging
does not notice direct edits of guest page tables).  ctypes stays in here.
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
            raise ValueError(f"MemoryFile range [{off:#x}, +{n:#x}) outside [0, {self.size:#x})")

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

    def invalidate(self, off: int, length: int) -> None:
        """Drop the host mapping of [off, off+length) (content kept): KVM forgets shadow entries."""
        self._check(off, length)
        if length:
            self._map.madvise(mmap.MADV_DONTNEED, off, length)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.view.release()
        try:
            self._map.close()
        except BufferError:
            pass                     # someone still holds a slice; the mapping dies with it
        os.close(self.fd)
        self.fd = -1
