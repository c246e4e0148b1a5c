"""PageData: the bytes of an in-memory file held in MemoryFile frames (the page cache mmap shares).

A PageData is a shared, refcounted Backing (kvmbox.mm.vma) plus the file size.
Holders of the PageData (the file while it has a name, each open file
description) are counted in `holders`; together they own one reference of the
Backing.  Each MAP_SHARED Vma viewing the Backing owns another (the
MemoryManager adds and drops those).  Whoever drops the Backing's last
reference frees the frames, so a deleted file stays readable while open or
mapped, as on Linux.

Holes (pages never written) read as zeros and cost nothing; frames come from
the platform's FrameAllocator.  Every page is charged to the file system's
FsSpace first (vfs/space.py): a write that finds no room, or no free frame,
writes what fits and then gives ENOSPC, as a full tmpfs does.  Pages a shared
mapping filled (the MemoryManager adds them to the Backing itself) are counted
at the file's next write, truncate or close.  The charge, and the inode space
the file holds (`ispace`), go back when the last holder lets go.

Truncation frees the frames past the new end of file only when the Backing
has a single reference (no mapping views it).  Otherwise a mapping
may hold those frames in its page tables, so they are zeroed and kept instead:
a later extension of the file reads zeros, the mapping's frames stay valid
(Linux would unmap them and raise SIGBUS on access: an approximation), and
they are freed with the last reference.
"""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.mm.vma import PAGE, Backing
from kvmbox.sentry.vfs.space import FsSpace

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.frames import FrameAllocator
    from kvmbox.mm.memfile import MemoryFile

MAX_FILE_SIZE = 1 << 44          # far beyond any guest memory; EFBIG past it
SEEK_DATA, SEEK_HOLE = 3, 4


class MapSource:
    """What a file offers to mmap: a page cache to share, or bytes to copy (docs/vfs.md)."""

    size: int = 0

    def shared_backing(self) -> Backing | None:
        """In-memory files: the page cache itself (MAP_SHARED views it); None otherwise."""
        return None

    def fill(self, offset: int, n: int) -> bytes:
        """`n` bytes at `offset` for a private copy; short (possibly empty) at end of file."""
        raise SyscallError(errno.ENODEV)

    def private_cache(self) -> Backing | None:
        """A file that cannot change (a read-only host tree): its page cache, shared by every
        read-only MAP_PRIVATE mapping of it in the sandbox (frames pinned, owned by the file
        system, copied out only when a mapping is made writable); None otherwise."""
        return None

    def fill_into(self, offset: int, dest: memoryview) -> None:
        """Copy the bytes at `offset` into `dest` (fresh zeroed frames; past EOF stays zero)."""
        data = self.fill(offset, len(dest))
        dest[:len(data)] = data

    def write(self, offset: int, data: bytes) -> int:
        """Write-back of a writable MAP_SHARED host mapping (msync, munmap)."""
        raise SyscallError(errno.EACCES)


class PageData:
    """File contents in MemoryFile frames: a shared Backing and a size."""

    __slots__ = ("memfile", "frames", "backing", "size", "holders", "space", "charged", "ispace")

    def __init__(self, memfile: "MemoryFile", frames: "FrameAllocator",
                 space: FsSpace | None = None, ispace: int = 0) -> None:
        self.memfile = memfile
        self.frames = frames
        self.backing = Backing(shared=True)   # refs = 1: the holders' reference
        self.size = 0
        self.holders = 1                      # the creator's (the file's name)
        self.space = space if space is not None else FsSpace.unbounded()
        self.charged = 0                      # pages charged to `space`
        self.ispace = ispace                  # inode space (bytes) the file holds in `space`

    # --- references ---------------------------------------------------------------
    def acquire(self) -> None:
        """One more holder (an open file description)."""
        self.holders += 1

    def release(self) -> None:
        """One holder fewer; the last one drops the holders' Backing reference and gives
        the space back (a mapping may keep the frames a while: they are no file's now)."""
        self.holders -= 1
        if self.holders == 0:
            self.space.adjust_pages(-self.charged)
            self.space.credit(self.ispace)
            self.charged = self.ispace = 0
            b = self.backing
            if b.let_go():
                for _, phys, n in b.take(-(1 << 62), 1 << 62):
                    self.frames.free(phys, n)
        else:
            self._recount()

    def _recount(self) -> None:
        """Charge the pages a shared mapping added (or count those it no longer holds)."""
        pages = self.backing.pages
        if pages != self.charged:
            self.space.adjust_pages(pages - self.charged)
            self.charged = pages

    # --- bytes ----------------------------------------------------------------------
    def read(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (short at end of file; holes read as zeros)."""
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        end = min(offset + n, self.size)
        if end <= offset:
            return b""
        view = self.memfile.view
        parts: list[bytes] = []
        for pidx, phys, npages in self.backing.runs(offset // PAGE, (end + PAGE - 1) // PAGE):
            lo = max(offset, pidx * PAGE)
            hi = min(end, (pidx + npages) * PAGE)
            if phys is None:
                parts.append(bytes(hi - lo))
            else:
                base = phys - pidx * PAGE
                parts.append(view[base + lo:base + hi].tobytes())
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write(self, offset: int, data: bytes) -> int:
        """Write `data` at `offset`, allocating frames for holes and growing the size."""
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        n = len(data)
        if not n:
            return 0
        end = offset + n
        if end > MAX_FILE_SIZE:
            raise SyscallError(errno.EFBIG)
        if self.backing.refs > 1:
            self._recount()
        p0, p1 = offset // PAGE, (end + PAGE - 1) // PAGE
        filled = self._populate(p0, p1)
        if filled < p1:                       # full: write the pages that got frames
            end = min(end, filled * PAGE)
            if end <= offset:
                raise SyscallError(errno.ENOSPC)
            n = end - offset
            p1 = filled
        view = self.memfile.view
        src = memoryview(data)
        for pidx, phys, npages in self.backing.runs(p0, p1):
            lo = max(offset, pidx * PAGE)
            hi = min(end, (pidx + npages) * PAGE)
            base = phys - pidx * PAGE
            view[base + lo:base + hi] = src[lo - offset:hi - offset]
        if end > self.size:
            self.size = end
        return n

    def _populate(self, p0: int, p1: int) -> int:
        """Give the holes in pages [p0, p1) frames (they read as zeros), in order, as far as
        the space and the frame pool allow; the page index up to which all pages have one."""
        for pidx, phys, npages in list(self.backing.runs(p0, p1)):
            if phys is None:
                got = self._fill_hole(pidx, npages)
                if got < npages:
                    return pidx + got
        return p1

    def _fill_hole(self, pidx: int, npages: int) -> int:
        """Frames for the first pages of the hole at `pidx`; how many it got (all of them,
        or what the space has room for and the frame pool can give)."""
        got, want = 0, npages
        while True:
            want = min(want, npages - got, self.space.room_pages())
            if want <= 0:
                return got
            try:
                extents = self.frames.alloc(want)
            except SyscallError:              # guest memory is full: try for less
                want //= 2
                continue
            self.space.take_pages(want)
            self.charged += want
            for fphys, fn in extents:
                self.backing.add(pidx + got, fphys, fn)
                got += fn

    def truncate(self, size: int) -> None:
        """Set the size; bytes past it are gone (and read as zeros if the file grows again)."""
        if size < 0:
            raise SyscallError(errno.EINVAL)
        if size > MAX_FILE_SIZE:
            raise SyscallError(errno.EFBIG)
        if size < self.size:
            b = self.backing
            self._recount()
            # Zero the tail of the last partial page.
            if size % PAGE:
                phys = b.lookup(size // PAGE)
                if phys is not None:
                    off = phys + size % PAGE
                    self.memfile.write(off, bytes(PAGE - size % PAGE))
            first = (size + PAGE - 1) // PAGE
            if b.refs <= 1:
                for _, phys, n in b.take(first, 1 << 62):
                    self.frames.free(phys, n)
                    self.space.adjust_pages(-n)
                    self.charged -= n
            else:   # a mapping may hold these frames: keep them, zeroed
                for _, phys, n in b.runs(first, (self.size + PAGE - 1) // PAGE):
                    if phys is not None:
                        self.memfile.write(phys, bytes(n * PAGE))
        self.size = size

    def allocate(self, offset: int, length: int, keep_size: bool = False) -> None:
        """fallocate(mode 0 / KEEP_SIZE): make frames for [offset, offset+length)."""
        if offset < 0 or length <= 0:
            raise SyscallError(errno.EINVAL)
        end = offset + length
        if end > MAX_FILE_SIZE:
            raise SyscallError(errno.EFBIG)
        if self.backing.refs > 1:
            self._recount()
        p0, p1 = offset // PAGE, (end + PAGE - 1) // PAGE
        holes = sum(n for _, phys, n in self.backing.runs(p0, p1) if phys is None)
        if holes > self.space.room_pages() or self._populate(p0, p1) < p1:
            raise SyscallError(errno.ENOSPC)  # as tmpfs: checked before anything is allocated
        if not keep_size and end > self.size:
            self.size = end

    def seek_data(self, offset: int, whence: int) -> int:
        """lseek SEEK_DATA / SEEK_HOLE over populated pages (ENXIO at or past EOF)."""
        if offset < 0 or offset >= self.size:
            raise SyscallError(errno.ENXIO)
        p1 = (self.size + PAGE - 1) // PAGE
        for pidx, phys, npages in self.backing.runs(offset // PAGE, p1):
            if (phys is not None) == (whence == SEEK_DATA):
                return min(max(offset, pidx * PAGE), self.size)
        if whence == SEEK_HOLE:
            return self.size
        raise SyscallError(errno.ENXIO)

    @property
    def blocks(self) -> int:
        """st_blocks: 512-byte units of frames held."""
        return self.backing.pages * (PAGE // 512)

    def sync(self) -> None:
        """fsync: the bytes already live in the MemoryFile; nothing to flush."""

    def map_source(self) -> "PageMapSource":
        return PageMapSource(self)


class PageMapSource(MapSource):
    """mmap of an in-memory file: MAP_SHARED views the page cache, MAP_PRIVATE copies from it.

    The source is a holder of the PageData while it lives (a private mapping may
    still fill pages after the file is closed and unlinked)."""

    __slots__ = ("data",)

    def __init__(self, data: PageData) -> None:
        data.acquire()
        self.data = data

    def __del__(self) -> None:
        self.data.release()

    @property
    def size(self) -> int:   # type: ignore[override]
        return self.data.size

    def shared_backing(self) -> Backing:
        return self.data.backing

    def fill(self, offset: int, n: int) -> bytes:
        return self.data.read(offset, n)
