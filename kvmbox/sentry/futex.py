"""Futexes: the Kernel's table of waiters, keyed as Linux keys them, and the exit-time work.

Keys (Linux's get_futex_key):
- a private futex (FUTEX_PRIVATE_FLAG), or any futex in a private mapping:
  (the MemoryManager, the address);
- a futex in a MAP_SHARED mapping without the private flag: (the mapped file's
  identity, its byte offset) for a file (a `sem_open` semaphore in /dev/shm),
  or (the shared anonymous object, its byte offset), so processes that map
  the same page at different addresses meet on one key.

Every operation runs under the Sentry lock (kvmbox/sentry/runloop.py), so
"read the word, compare, queue" is atomic against every other futex call, as
Linux's hash-bucket lock makes it; guest code of other threads may change the
word meanwhile, which is what the futex protocol expects.  A waiter sleeps in
waiter.block() with the Sentry lock released, so a kill, a timeout or a signal
ends its wait at once; a wake marks the waiter and sets its task's Waker.
`_lock` guards the table against the one caller outside the Sentry lock that
may come (none today; it is a leaf lock: nothing is called while it is held).

PI futexes (LOCK_PI, LOCK_PI2, TRYLOCK_PI, UNLOCK_PI) keep Linux's protocol in
the futex word (owner tid, FUTEX_WAITERS, FUTEX_OWNER_DIED) and hand the lock
to the first waiter at unlock; priorities are not inherited (the Sentry has no
scheduler to boost), which a program cannot observe except by timing.
"""
from __future__ import annotations

import errno
import threading
import time

from kvmbox.abi import mman
from kvmbox.abi.structs import U32, U64
from kvmbox.errors import SyscallError
from kvmbox.guest_stub.layout import PAGE_SIZE
from kvmbox.record import field, record
from kvmbox.sentry.waiter import block

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x8000_0000, 0x4000_0000, 0x3FFF_FFFF
BITSET_MATCH_ANY = 0xFFFF_FFFF
ROBUST_LIST_LIMIT = 2048          # Linux's bound on a robust list walk (a loop cannot hang it)
_U32_MAX = 0xFFFF_FFFF


@record(eq=False)
class Waiter:
    """One task sleeping on a key."""
    task: "Task"
    key: tuple
    bitset: int = BITSET_MATCH_ANY
    pi: bool = False
    woken: bool = False           # a wake chose it (or, PI: the lock was handed to it)


@record
class FutexTable:
    """key -> the waiters queued on it, oldest first."""
    queues: dict[tuple, list[Waiter]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- keys ------------------------------------------------------------------------
    def key(self, t: "Task", uaddr: int, private: bool) -> tuple:
        """The key of the futex word at `uaddr` (EINVAL unaligned, EFAULT unmapped)."""
        if uaddr % 4:
            raise SyscallError(errno.EINVAL)
        mm = t.mm
        if not private:
            vma = mm.vmas.find(uaddr) if uaddr < (1 << 47) else None
            if vma is None:
                raise SyscallError(errno.EFAULT)
            if vma.flags & mman.MAP_SHARED:
                index = vma.pgoff + (uaddr - vma.start) // PAGE_SIZE
                offset = index * PAGE_SIZE + uaddr % PAGE_SIZE
                if vma.file is not None:
                    return ("file", vma.dev, vma.ino, offset)
                return ("anon", vma.backing, offset)
        return ("mm", mm, uaddr)

    # --- queues ----------------------------------------------------------------------
    def _queue(self, w: Waiter) -> None:
        with self._lock:
            self.queues.setdefault(w.key, []).append(w)

    def _dequeue(self, w: Waiter) -> None:
        with self._lock:
            q = self.queues.get(w.key)
            if q is not None and w in q:
                q.remove(w)
                if not q:
                    del self.queues[w.key]

    def waiters(self, key: tuple) -> list[Waiter]:
        with self._lock:
            return list(self.queues.get(key, ()))

    def wait(self, t: "Task", key: tuple, deadline: float | None, bitset: int, interrupt: int,
             pi: bool = False) -> bool:
        """Queue t on `key` and sleep until woken (True), the deadline (False), a signal
        (SyscallError(interrupt)) or a kill."""
        w = Waiter(t, key, bitset, pi)
        self._queue(w)
        try:
            return block(t, lambda: w.woken, deadline=deadline, interrupt=interrupt)
        finally:
            if not w.woken:
                self._dequeue(w)

    def wake(self, key: tuple, n: int, bitset: int = BITSET_MATCH_ANY, *, at_least_one: bool = True) -> int:
        """Wake up to n non-PI waiters of `key` whose bitset matches (FUTEX_WAKE wakes one
        even when n <= 0, as Linux's loop does; a requeue's wake count is exact); how many."""
        woken = []
        limit = max(n, 1) if at_least_one else n
        with self._lock:
            q = self.queues.get(key)
            if q and limit > 0:
                for w in list(q):
                    if w.pi or not w.bitset & bitset:
                        continue
                    q.remove(w)
                    woken.append(w)
                    if len(woken) >= limit:
                        break
                if not q:
                    del self.queues[key]
        for w in woken:
            w.woken = True
            w.task.waker.set()
        return len(woken)

    def requeue(self, key: tuple, key2: tuple, nwake: int, nrequeue: int) -> int:
        """Wake nwake waiters of key and move up to nrequeue others to key2."""
        done = self.wake(key, nwake, at_least_one=False)
        moved = 0
        with self._lock:
            q = self.queues.get(key)
            while q and moved < nrequeue:
                w = q.pop(0)
                w.key = key2
                self.queues.setdefault(key2, []).append(w)
                moved += 1
            if q is not None and not q:
                del self.queues[key]
        return done + moved


def table(t: "Task") -> FutexTable:
    return t.kernel.futexes


def read_word(t: "Task", uaddr: int) -> int:
    return U32.unpack(t.mm.copy_in(uaddr, 4))[0]


def write_word(t: "Task", uaddr: int, value: int) -> None:
    t.mm.copy_out(uaddr, U32.pack(value & _U32_MAX))


# --- PI futexes --------------------------------------------------------------------
def lock_pi(t: "Task", uaddr: int, private: bool, deadline: float | None, *, try_only: bool) -> int:
    """FUTEX_LOCK_PI / FUTEX_TRYLOCK_PI: take the lock in the word, or sleep until the
    owner hands it over at unlock."""
    from kvmbox.sentry.signals.deliver import ERESTARTNOINTR
    tab = table(t)
    key = tab.key(t, uaddr, private)
    while True:
        word = read_word(t, uaddr)
        owner = word & FUTEX_TID_MASK
        if owner == 0:
            waiters = any(w.pi for w in tab.waiters(key))
            write_word(t, uaddr, t.tid | (word & FUTEX_OWNER_DIED) | (FUTEX_WAITERS if waiters else 0))
            return 0
        if owner == t.tid:
            raise SyscallError(errno.EDEADLK)
        if try_only:
            raise SyscallError(errno.EAGAIN)
        holder = t.kernel.pids.task(owner)
        if holder is None or holder.done:
            raise SyscallError(errno.ESRCH)     # the owner is gone and did not release it
        if not word & FUTEX_WAITERS:
            write_word(t, uaddr, word | FUTEX_WAITERS)
        if not tab.wait(t, key, deadline, BITSET_MATCH_ANY, ERESTARTNOINTR, pi=True):
            raise SyscallError(errno.ETIMEDOUT)
        if read_word(t, uaddr) & FUTEX_TID_MASK == t.tid:
            return 0                             # handed over by unlock_pi


def unlock_pi(t: "Task", uaddr: int, private: bool) -> int:
    """FUTEX_UNLOCK_PI: give the lock to the first waiter (its tid in the word), or free it."""
    tab = table(t)
    key = tab.key(t, uaddr, private)
    word = read_word(t, uaddr)
    if word & FUTEX_TID_MASK != t.tid:
        raise SyscallError(errno.EPERM)
    with tab._lock:
        q = tab.queues.get(key, [])
        pis = [w for w in q if w.pi]
        nxt = pis[0] if pis else None
        if nxt is not None:
            q.remove(nxt)
            if not q:
                del tab.queues[key]
    if nxt is None:
        write_word(t, uaddr, 0)
        return 0
    write_word(t, uaddr, nxt.task.tid | (FUTEX_WAITERS if len(pis) > 1 else 0))
    nxt.woken = True
    nxt.task.waker.set()
    return 0


# --- a thread leaving its memory -------------------------------------------------------
def exit_mm_release(t: "Task") -> None:
    """At thread exit and execve (Linux's mm_release): the robust list's futexes owned by t
    are marked FUTEX_OWNER_DIED and a waiter of each is woken; then 0 is written at
    clear_child_tid and one waiter there (pthread_join) woken.  Hostile lists and
    addresses are ignored, as Linux ignores faults here."""
    try:
        _exit_robust_list(t)
    except SyscallError:
        pass
    t.robust_list = (0, 0)
    ptr, t.clear_child_tid = t.clear_child_tid, 0
    if ptr:
        try:
            write_word(t, ptr, 0)
            tab = table(t)
            tab.wake(tab.key(t, ptr, False), 1)
        except SyscallError:
            pass


def _exit_robust_list(t: "Task") -> None:
    head, _length = t.robust_list
    if not head:
        return
    raw = t.mm.copy_in(head, 24)
    nxt, offset, pending = U64.unpack_from(raw, 0)[0], U64.unpack_from(raw, 8)[0], U64.unpack_from(raw, 16)[0]
    if offset >= 1 << 63:
        offset -= 1 << 64                         # futex_offset is a signed long
    entry, entry_pi = nxt & ~1, nxt & 1
    pending_entry, pending_pi = pending & ~1, pending & 1
    for _ in range(ROBUST_LIST_LIMIT):
        if entry == head:
            break
        following = U64.unpack(t.mm.copy_in(entry, 8))[0]
        if entry != pending_entry:
            _futex_death(t, (entry + offset) & (1 << 64) - 1, bool(entry_pi), False)
        entry, entry_pi = following & ~1, following & 1
    if pending_entry:
        _futex_death(t, (pending_entry + offset) & (1 << 64) - 1, bool(pending_pi), True)


def _futex_death(t: "Task", uaddr: int, pi: bool, pending: bool) -> None:
    """handle_futex_death: the dying owner's robust futex is marked and a waiter woken."""
    if uaddr % 4:
        return
    try:
        word = read_word(t, uaddr)
        tab = table(t)
        key = tab.key(t, uaddr, False)
    except SyscallError:
        return
    if pending and not pi and word == 0:
        tab.wake(key, 1)                          # it died between unlock and wake
        return
    if word & FUTEX_TID_MASK != t.tid:
        return
    write_word(t, uaddr, (word & FUTEX_WAITERS) | FUTEX_OWNER_DIED)
    if pi:
        for w in tab.waiters(key):                # PI waiters retry the now-free lock
            if w.pi:
                tab._dequeue(w)
                w.woken = True
                w.task.waker.set()
                break
    elif word & FUTEX_WAITERS:
        tab.wake(key, 1)


def deadline_from(timeout_ns: int | None, absolute: bool, clock_now_ns: int) -> float | None:
    """A monotonic-seconds deadline for block() from a futex timeout (relative, or absolute
    on the clock whose reading is clock_now_ns)."""
    if timeout_ns is None:
        return None
    left = timeout_ns - clock_now_ns if absolute else timeout_ns
    return time.monotonic() + max(left, 0) / 1e9
