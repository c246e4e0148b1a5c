"""Commitment: what a process's mappings commit, checked against its limit and charged to the
sandbox's MemoryAccount (--memory), and the debt a fork leaves.  A mixin of MemoryManager.

`committed` is the bytes of this process's private writable and shared anonymous
mappings (kvmbox.mm.vma.chargeable), checked against `limit`; RLIMIT_AS counts
everything mapped (_check_vm).  The MemoryAccount is charged `committed - _debt`.

Across fork.  A forked child inherits its parent's commitment as debt: nothing is
charged at fork, because Linux overcommits at fork and because a frame the two
share must count once.  The child pays its debt a page at a time when a page of an
inherited private mapping gets a frame of its own (a copy-on-write copy or a fresh
page: pay_debt), so its charge grows towards what an unforked process would pay,
never beyond.  A page it cannot pay for is the out-of-memory case: a fault kills
the process with SIGKILL as Linux's OOM killer would (fault.OutOfFrames), copy_out
gives EFAULT.  An uncharge (munmap, mprotect, exit) pays the debt off first.  A copy
the parent makes is covered by the parent's own commitment; the original frame then
belongs to the child alone, uncharged until the child lets it go.  So the frames the
account does not see are at most what children inherited, and the frame pool
(--memory plus tuning.DATA_SLACK) remains the hard bound behind it.
"""
from __future__ import annotations

import errno

from kvmbox.abi.resource import RLIMIT_AS
from kvmbox.errors import SyscallError
from kvmbox.mm.vma import chargeable as _chargeable

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from kvmbox.mm.account import MemoryAccount
    from kvmbox.mm.vma import VmaSet


class Commitment:
    """The charging half of a MemoryManager (which sets every attribute named here)."""

    account: "MemoryAccount | None"
    limit: int | None
    vmas: "VmaSet"
    rlimit: "Callable[[int], int]"
    _committed: int
    _debt: int

    @property
    def committed(self) -> int:
        """Bytes committed by the mappings, checked against the limit."""
        return self._committed

    @committed.setter
    def committed(self, value: int) -> None:
        delta = value - self._committed
        if delta < 0 and self._debt:
            forgiven = min(self._debt, -delta)
            self._debt -= forgiven
            delta += forgiven
        if self.account is not None:
            self.account.committed += delta
        self._committed = value

    def inherit_commitment(self, nbytes: int) -> None:
        """fork: `nbytes` committed by inherited mappings, charged to nobody yet (debt)."""
        self._committed += nbytes
        self._debt += nbytes

    def pay_debt(self, nbytes: int) -> bool:
        """Charge up to `nbytes` of the inherited debt to the MemoryAccount; False if no room."""
        n = min(nbytes, self._debt)
        if n <= 0:
            return True
        if self.account is not None:
            if not self.account.room(n):
                return False
            self.account.committed += n
        self._debt -= n
        return True

    def _check_charge(self, delta: int) -> None:
        if delta > 0 and ((self.limit is not None and self._committed + delta > self.limit)
                          or (self.account is not None and not self.account.room(delta))):
            raise SyscallError(errno.ENOMEM)

    def _check_vm(self, grow: int) -> None:
        """ENOMEM when mapping `grow` more bytes would pass RLIMIT_AS: Linux's may_expand_vm
        counts everything mapped (PROT_NONE too), not what is committed."""
        if grow > 0 and self.vmas.mapped + grow > self.rlimit(RLIMIT_AS):
            raise SyscallError(errno.ENOMEM)

    def _charge(self, delta: int) -> None:
        self._check_charge(delta)
        self.committed += delta

    def _charge_of(self, start: int, end: int, prot: int | None = None) -> int:
        """Bytes of [start, end) currently charged (or that would be with `prot`)."""
        total = 0
        for v in self.vmas.overlapping(start, end):
            if _chargeable(v.prot if prot is None else prot, v.flags):
                total += min(v.end, end) - max(v.start, start)
        return total
