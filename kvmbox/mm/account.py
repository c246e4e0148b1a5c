"""MemoryAccount: one sandbox's memory limit (--memory), shared by everything that holds
memory for the guest.

Two kinds of holders draw on it: what the guest's processes commit (each
MemoryManager's private writable and shared anonymous mappings) and what its
in-memory file systems hold (tmpfs, /dev/shm and the overlay's upper layer: file
pages and metadata; kvmbox/sentry/vfs/fsspace.py).  A commit past the limit is
ENOMEM, a file-system write past it ENOSPC, so a guest cannot grow the Sentry
beyond --memory through either, and the frames the MemoryFile has room for are
never promised twice.  Plain counters: the callers hold their own locks.
"""
from __future__ import annotations


class MemoryAccount:
    """Bytes committed by processes and held by file systems against `limit` (None: no limit)."""

    __slots__ = ("limit", "committed", "files")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.committed = 0          # the MemoryManagers' commit charges, summed
        self.files = 0              # the in-memory file systems' pages and metadata, summed

    def room(self, n: int) -> bool:
        """Can `n` more bytes be charged?"""
        return self.limit is None or self.committed + self.files + n <= self.limit

    @property
    def free(self) -> int:
        """Bytes still chargeable (0 when full; a large number when unlimited)."""
        if self.limit is None:
            return 1 << 62
        return max(0, self.limit - self.committed - self.files)
