"""FsSpace: what the sandbox's in-memory file systems may hold, charged to its memory limit.

Every tmpfs of a Kernel (/tmp, /dev/shm, /sys, the root overlay's upper layer)
shares one FsSpace, built from the sandbox's memory limit, as a tmpfs mounted
with size= and nr_inodes= would be (docs/vfs.md "Memory of in-memory files"):

- **blocks**: pages of file contents (PageData frames) and symlink targets longer
  than SHORT_SYMLINK_LEN (kept in a page, as Linux's shmem_symlink does);
  `max_pages` of them, ENOSPC past it.  The frames themselves come from the same
  pool as the guest's memory, so statfs's free count is never more than the pool
  has left.
- **inode space**: BOGO_INODE_SIZE bytes for every inode and every extra hard link,
  plus extended attributes at their size (as Linux 6.6+ tmpfs charges its
  "ispace"); `max_inodes` inodes' worth, ENOSPC past it.  It bounds the Sentry's
  own memory for names, nodes and short symlink targets.

Blocks are also charged to the sandbox's MemoryAccount (kvmbox/mm/account.py), which
the processes' committed memory draws on too: --memory bounds file pages and
programs together, so a guest cannot hold more than --memory of guest memory
through either (a full /dev/shm leaves less to mmap, and the reverse).  Inode space
is the Sentry's own memory, not guest frames, and is bounded apart by the inode
limit (at most --memory/8 of it), so that statfs's block counts move as a tmpfs's do.

Counters only; the file systems charge before they allocate and give back when
an object goes.  Not thread-safe beyond the GIL, as the rest of the VFS.
"""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.sentry.vfs.node import StatFs

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.account import MemoryAccount
    from kvmbox.mm.frames import FrameAllocator

PAGE = 4096
BOGO_INODE_SIZE = 1024         # mm/shmem.c: what an inode (or an extra link) costs of the inode space
SHORT_SYMLINK_LEN = 128        # longer symlink targets live in a page of data
RAM_PER_INODE = 2 * PAGE       # Linux's default nr_inodes: half the RAM pages


class FsSpace:
    """Blocks and inode space of the in-memory file systems of one sandbox."""

    __slots__ = ("max_pages", "pages", "max_inodes", "ispace", "frames", "account")

    def __init__(self, size: int, max_inodes: int, frames: "FrameAllocator | None" = None,
                 account: "MemoryAccount | None" = None) -> None:
        self.max_pages = max(size // PAGE, 0)
        self.pages = 0
        self.max_inodes = max(max_inodes, 1)
        self.ispace = 0                     # bytes of inode space in use
        self.frames = frames                # the guest's frame pool (statfs's free blocks)
        self.account = account              # the sandbox's --memory, shared with its programs

    @classmethod
    def for_memory(cls, limit: int | None, frames: "FrameAllocator",
                   account: "MemoryAccount | None" = None) -> "FsSpace":
        """The space of a sandbox with memory limit `limit` (bytes; None: the whole frame
        pool): that many bytes of blocks, and an inode per RAM_PER_INODE of it, charged
        to `account` as well."""
        size = limit if limit else (frames.used_pages + frames.free_pages) * PAGE
        return cls(size, size // RAM_PER_INODE, frames, account)

    def _fits(self, nbytes: int) -> bool:
        return self.account is None or self.account.room(nbytes)

    def _bill(self, nbytes: int) -> None:
        if self.account is not None:
            self.account.files = max(self.account.files + nbytes, 0)

    @classmethod
    def unbounded(cls) -> "FsSpace":
        """No limit worth the name (unit tests, stand-alone PageData)."""
        return cls(1 << 62, 1 << 40)

    # --- blocks --------------------------------------------------------------------------
    def room_pages(self) -> int:
        room = self.max_pages - self.pages
        if self.account is not None:
            room = min(room, self.account.free // PAGE)
        return room

    def take_pages(self, n: int) -> None:
        """Charge `n` pages; ENOSPC (nothing charged) when they do not fit."""
        if n > self.max_pages - self.pages or not self._fits(n * PAGE):
            raise SyscallError(errno.ENOSPC)
        self.pages += n
        self._bill(n * PAGE)

    def adjust_pages(self, n: int) -> None:
        """Count `n` pages (may be negative) made or freed behind the file system's back
        (a shared mapping filled holes of a file): no limit applies, they exist already."""
        before = self.pages
        self.pages = max(self.pages + n, 0)
        self._bill((self.pages - before) * PAGE)

    # --- inode space (also the xattr store's budget: charge / credit) -----------------------
    def charge(self, n: int) -> None:
        """Charge `n` bytes of inode space; ENOSPC when they do not fit."""
        if self.ispace + n > self.max_inodes * BOGO_INODE_SIZE:
            raise SyscallError(errno.ENOSPC)
        self.ispace += n

    def credit(self, n: int) -> None:
        self.ispace = max(self.ispace - n, 0)

    def take_inode(self) -> None:
        self.charge(BOGO_INODE_SIZE)

    def give_inode(self) -> None:
        self.credit(BOGO_INODE_SIZE)

    # --- what statfs and /proc/mounts report --------------------------------------------------
    def statfs(self, f_type: int) -> StatFs:
        free = self.room_pages()
        if self.frames is not None:
            free = min(free, self.frames.free_pages)
        free = max(free, 0)
        ffree = max(self.max_inodes - -(-self.ispace // BOGO_INODE_SIZE), 0)
        return StatFs(f_type=f_type, blocks=self.max_pages, bfree=free, bavail=free,
                      files=self.max_inodes, ffree=ffree)

    def options(self) -> str:
        return f"size={self.max_pages * (PAGE // 1024)}k,nr_inodes={self.max_inodes}"
