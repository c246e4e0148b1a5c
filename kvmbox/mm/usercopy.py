"""UserCopy: every access the Sentry makes through a guest pointer (copy_in, copy_out,
fill, read_cstring, writable_prefix), checked against the process's mappings and their
rights, populating and unsharing (copy-on-write) what it touches.  A mixin of
MemoryManager (kvmbox/mm/manager.py), whose lock, VMAs and frames it uses.

copy_in/copy_out are on every syscall's path: the lock is taken inline (no
wrapper call) and the common single-piece case skips the gather loop.
"""
from __future__ import annotations

import contextlib
import errno
from bisect import bisect_right
from collections.abc import Callable

from kvmbox.abi.mman import PROT_READ, PROT_WRITE
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm import cow
from kvmbox.mm.fault import _allows, _page_up

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.vma import Vma

PAGE = L.PAGE_SIZE
_NO_LOCK = contextlib.nullcontext()         # a private Backing's: its process's lock is enough


class UserCopy:
    """Checked guest-pointer access; see the module docstring."""

    def _segments(self, addr: int, n: int, need: int, write: bool = False) -> list[tuple[int, int]]:
        """Validate [addr, addr+n) (mapped, `need` rights), populate it; (phys, nbytes) pieces.
        `write`: the Sentry will write there, so frames shared copy-on-write are copied first."""
        end = addr + n
        if addr < 0 or n < 0 or end > L.USER_TOP:
            raise SyscallError(errno.EFAULT)
        # Fast path (the hot one: a small struct or buffer): one VMA, one populated extent.
        v = self.vmas.find(addr)
        if v is not None and end <= v.end and _allows(v.prot, need):
            b = v.backing
            first = v.pidx(addr)
            i = bisect_right(b.keys, first) - 1
            if i >= 0:
                k, phys, npages = b.extents[i]
                if k <= first and v.pidx(end - 1) < k + npages:
                    p = phys + (first - k) * PAGE
                    if not (write and self.frames.sharing and not b.shared
                            and self.frames.any_shared(p, v.pidx(end - 1) - first + 1)):
                        return [(p + (addr & (PAGE - 1)), n)]
        spans: list[tuple[Vma, int, int]] = []
        a = addr
        while a < end:
            v = self.vmas.find(a) or self._grow_stack(a)   # Linux's copy_to_user grows stacks
            if v is None or not _allows(v.prot, need):
                raise SyscallError(errno.EFAULT)
            stop = min(v.end, end)
            spans.append((v, a, stop))
            a = stop
        out: list[tuple[int, int]] = []
        for v, a, stop in spans:
            lo, hi = a & ~(PAGE - 1), _page_up(stop)
            with v.backing.lock if v.backing.shared else _NO_LOCK:
                if not self._populate(v, lo, hi):
                    raise SyscallError(errno.EFAULT)
                if write and not v.backing.shared and self.frames.sharing \
                        and not cow.unshare_and_map(self, v, lo, hi):
                    raise SyscallError(errno.EFAULT)      # no frame for the copy
                for va, phys, k in v.runs(lo, hi):
                    if phys is None:
                        raise SyscallError(errno.EFAULT)  # a file mapping's page past EOF
                    s, e = max(va, a), min(va + k * PAGE, stop)
                    out.append((phys + s - va, e - s))
        return out

    def copy_in(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        view = self.memfile.view
        with self.lock:
            segs = self._segments(addr, n, PROT_READ)
            if len(segs) == 1:
                p = segs[0][0]
                return bytes(view[p:p + n])
            return b"".join(view[p:p + k] for p, k in segs)

    def copy_out(self, addr: int, data: bytes, *, force: bool = False) -> None:
        n = len(data)
        if n == 0:
            return
        view = self.memfile.view
        with self.lock:
            if force:                              # the loader writing a read-only mapping
                for v in self.vmas.overlapping(addr, addr + n):
                    if v.backing.pinned and v.file is not None:
                        self._unshare(v)
            segs = self._segments(addr, n, 0 if force else PROT_WRITE, True)
            if len(segs) == 1:
                p = segs[0][0]
                view[p:p + n] = data
                return
            src, done = memoryview(data).cast("B"), 0
            for p, k in segs:
                view[p:p + k] = src[done:done + k]
                done += k

    def writable_prefix(self, addr: int, n: int) -> int:
        """How many bytes from `addr` (at most `n`) lie in mappings the guest may write, before
        the first hole or read-only one: what a short read(2) into a bad buffer delivers."""
        end = min(addr + n, L.USER_TOP)
        a = addr
        with self.lock:
            while a < end:
                v = self.vmas.find(a)
                if v is None or not v.prot & PROT_WRITE:
                    break
                a = v.end
        return max(0, min(a, end) - addr)

    def fill(self, addr: int, n: int, writer: Callable[[list[memoryview]], int]) -> int:
        """Let writer(views) write up to `n` bytes straight into guest memory at `addr` (a host
        preadv, say) and return what it returns; EFAULT unless all of it is mapped writable."""
        if n == 0:
            return writer([])
        view = self.memfile.view
        with self.lock:
            return writer([view[p:p + k] for p, k in self._segments(addr, n, PROT_WRITE, True)])

    def read_cstring(self, addr: int, maxlen: int = 4096) -> bytes:
        """The NUL-terminated string at `addr`, without the NUL, read a page at a time (so a
        string that ends before an unmapped page reads as on Linux): EFAULT, or ENAMETOOLONG
        when no NUL comes within `maxlen` bytes.  On every path-taking syscall: one lock, and
        a page's bytes are searched where they lie (no copy_in per page)."""
        view = self.memfile.view
        out = b""
        with self.lock:
            while len(out) < maxlen:
                k = min(maxlen - len(out), PAGE - addr % PAGE)
                segs = self._segments(addr, k, PROT_READ)
                chunk = bytes(view[segs[0][0]:segs[0][0] + k]) if len(segs) == 1 \
                    else b"".join(view[p:p + n] for p, n in segs)
                nul = chunk.find(b"\0")
                if nul >= 0:
                    return out + chunk[:nul]
                out += chunk
                addr += k
        raise SyscallError(errno.ENAMETOOLONG)
