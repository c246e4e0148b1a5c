"""File locks of the whole sandbox: POSIX record locks, OFD locks and flock(2) locks.

The Kernel keeps one LockTable (`kernel.file_locks`).  Locks are held against a file's
lock key (FileDescription.lock_key(): its VFS node, as Linux keeps them on the inode), each
as a Record (owner, type, [start, end], pid):

  - POSIX record locks (F_SETLK, F_SETLKW): the owner is the caller's fd table, which is
    what Linux uses (current->files; see posix_owner).  So one process's locks never
    conflict with each other, a fork child (a new table) owns none of its parent's, and
    they go when the owner closes any descriptor of the file (FdTable.close ->
    close_posix) or when its table is released at exit (FdTable.release -> release_owner).
  - OFD locks (F_OFD_SETLK, F_OFD_SETLKW): the owner is the open file description, shared
    by dup and fork; they go at its last close (FdTable -> release_description).
  - flock(2) locks: whole-file, also owned by the description, kept in a list of their
    own: they never meet POSIX or OFD locks, while those two meet each other.

Two range records conflict when their owners differ, their ranges overlap and one is a
write lock.  One owner's records never overlap: a new lock merges with adjacent or
overlapping records of its type and splits those of another type, as Linux's
posix_lock_inode does.  Records are grouped by owner (in the order owners first locked the
file), by start within an owner, so F_GETLK reports the lock Linux would report.

Waiting (F_SETLKW, F_OFD_SETLKW, flock without LOCK_NB) is waiter.block() on the file's
WaitQueue, which every change of the file's locks notifies; the waiter then tries again.
It ends with ERESTARTSYS on a signal (EINTR, or a restart under SA_RESTART, as Linux does
for these calls) and with Stopped on kill or timeout.  A POSIX request that would wait
for a lock whose owner itself waits, along a chain, for a lock of the requester fails
with EDEADLK instead (Linux's posix_locks_deadlock: only waits behind POSIX locks are
followed; OFD requests are never refused).

An owner (fd table or description) that took a lock gets `lock_table` set to this table,
which is how FdTable finds it at close and release.

Lock order: LockTable._lock, then a WaitQueue's own lock (notify is called under the first).
"""
from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from kvmbox.abi.flock import F_UNLCK, F_WRLCK, OFFSET_MAX
from kvmbox.errors import SyscallError
from kvmbox.sentry.signals.deliver import ERESTARTSYS
from kvmbox.sentry.waiter import WaitQueue, block

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

MAX_DEADLK_ITERATIONS = 10       # links of a wait chain Linux follows before giving up


def posix_owner(t: "Task") -> object:
    """What owns the caller's POSIX record locks: its fd table, as Linux's current->files.
    One per process (a fork child gets its own), shared only by CLONE_FILES."""
    return t.fds


def holder_pid(t: "Task") -> int:
    """The pid F_GETLK reports for a lock the caller takes: its process id."""
    return t.tgid


class Record:
    """One lock, or a request: `owner` holds bytes [start, end] (end OFFSET_MAX: to the end
    of the file, however long) as F_RDLCK or F_WRLCK (F_UNLCK only in a request).  `ofd`:
    an OFD lock (F_GETLK reports pid -1 for it); `pid` the locker's process id."""

    __slots__ = ("owner", "type", "start", "end", "pid", "ofd")

    def __init__(self, owner: object, type_: int, start: int, end: int, pid: int = 0,
                 ofd: bool = False) -> None:
        self.owner = owner
        self.type = type_
        self.start = start
        self.end = end
        self.pid = pid
        self.ofd = ofd

    def overlaps(self, other: "Record") -> bool:
        return self.start <= other.end and other.start <= self.end

    def blocks(self, req: "Record") -> bool:
        """Does this lock keep `req` (another owner's) from being granted?"""
        return (self.owner is not req.owner and self.overlaps(req)
                and (self.type == F_WRLCK or req.type == F_WRLCK))

    def piece(self, start: int, end: int) -> "Record":
        return Record(self.owner, self.type, start, end, self.pid, self.ofd)

    def span(self) -> tuple[int, int, int]:
        return self.type, self.start, self.end


class FileLocks:
    """The locks of one file: range locks (POSIX and OFD), flock locks, and the tasks
    waiting for a change (`waiters` counts them: the entry stays while they wait)."""

    __slots__ = ("ranges", "flocks", "queue", "waiters")

    def __init__(self) -> None:
        self.ranges: list[Record] = []
        self.flocks: list[Record] = []
        self.queue = WaitQueue()
        self.waiters = 0

    def idle(self) -> bool:
        return not (self.ranges or self.flocks or self.waiters)


def first_conflict(ranges: list[Record], req: Record) -> Record | None:
    """The first lock in `ranges` that blocks `req`, as F_GETLK reports it."""
    for r in ranges:
        if r.blocks(req):
            return r
    return None


def merge(own: list[Record], req: Record) -> list[Record]:
    """One owner's records (sorted by start, never overlapping) with `req` applied: F_UNLCK
    removes its range, a lock replaces what it covers and joins adjacent or overlapping
    records of its type; records of another type it covers in part are cut."""
    out: list[Record] = []
    start, end = req.start, req.end
    for r in own:
        if r.type == req.type:
            if r.end < start - 1 or r.start - 1 > end:
                out.append(r)
            else:                                        # joins the new lock
                start, end = min(start, r.start), max(end, r.end)
        elif r.end < req.start or r.start > req.end:
            out.append(r)
        else:
            if r.start < req.start:
                out.append(r.piece(r.start, req.start - 1))
            if r.end > req.end:
                out.append(r.piece(req.end + 1, r.end))
    if req.type != F_UNLCK:
        out.append(Record(req.owner, req.type, start, end, req.pid, req.ofd))
    out.sort(key=lambda r: r.start)
    return out


def apply(ranges: list[Record], req: Record) -> bool:
    """Set `req` in `ranges` (its owner's records replaced in place); True if it changed."""
    own: list[Record] = []
    others: list[Record] = []
    at = None
    for r in ranges:
        if r.owner is req.owner:
            if at is None:
                at = len(others)
            own.append(r)
        else:
            others.append(r)
    new = merge(own, req)
    if [r.span() for r in new] == [r.span() for r in own]:
        return False
    if at is None:
        at = len(others)
    ranges[:] = others[:at] + new + others[at:]
    return True


class LockTable:
    """Every file lock of one sandbox, by lock key; see the module note."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[object, FileLocks] = {}
        # owner -> (its file, its request) while it waits behind a POSIX lock (EDEADLK chains)
        self._waiting: dict[object, tuple[FileLocks, Record]] = {}

    # --- queries ------------------------------------------------------------------------
    def test(self, key: object, req: Record) -> Record | None:
        """F_GETLK: the first lock that would block `req`.  For an F_UNLCK request (which
        recent Linux accepts from F_OFD_GETLK) the first lock its own owner holds there."""
        with self._lock:
            fl = self._files.get(key)
            if fl is None:
                return None
            if req.type == F_UNLCK:
                return next((r for r in fl.ranges if r.owner is req.owner and r.overlaps(req)),
                            None)
            return first_conflict(fl.ranges, req)

    def holds(self, key: object) -> list[tuple[object, int, int, int]]:
        """(owner, type, start, end) of every range lock on `key`, in the table's order."""
        with self._lock:
            fl = self._files.get(key)
            return [(r.owner, *r.span()) for r in fl.ranges] if fl is not None else []

    # --- setting locks ------------------------------------------------------------------
    def set_range(self, t: "Task", key: object, req: Record, wait: bool) -> None:
        """F_SETLK / F_SETLKW (and the OFD pair): apply `req`; EAGAIN when another owner's
        lock blocks it, or (wait) sleep until it can be granted; EDEADLK for a POSIX cycle."""
        def attempt() -> bool:
            with self._lock:
                fl = self._files.get(key)
                if req.type != F_UNLCK and fl is not None:
                    blocker = first_conflict(fl.ranges, req)
                    if blocker is not None:
                        if not wait:
                            raise SyscallError(errno.EAGAIN)
                        if not req.ofd and self._closes_cycle(req.owner, blocker):
                            raise SyscallError(errno.EDEADLK)
                        if blocker.ofd:
                            self._stop_waiting(req)
                        else:
                            self._waiting[req.owner] = (fl, req)
                        return False
                self._stop_waiting(req)
                if fl is None:
                    if req.type == F_UNLCK:
                        return True
                    fl = self._files[key] = FileLocks()
                if apply(fl.ranges, req):
                    fl.queue.notify()
                if req.type != F_UNLCK:
                    req.owner.lock_table = self            # type: ignore[attr-defined]
                self._forget_if_idle(key, fl)
                return True

        if not attempt():
            self._wait(t, key, attempt, req)

    def flock(self, t: "Task", key: object, f: "FileDescription", ltype: int, wait: bool,
              pid: int) -> None:
        """flock(2) on description `f`: a different lock it holds is dropped first (so a
        conversion that fails leaves none, as on Linux); EWOULDBLOCK on a conflict, or
        (wait) sleep until the lock can be granted."""
        def attempt() -> bool:
            with self._lock:
                fl = self._files.get(key)
                mine = None if fl is None else next((r for r in fl.flocks if r.owner is f), None)
                if fl is not None and mine is not None:
                    if mine.type == ltype:
                        return True
                    fl.flocks.remove(mine)          # dropped before the new one is tried
                    fl.queue.notify()
                if ltype == F_UNLCK:
                    if fl is not None:
                        self._forget_if_idle(key, fl)
                    return True
                if fl is not None and any(F_WRLCK in (r.type, ltype) for r in fl.flocks):
                    if not wait:
                        raise SyscallError(errno.EWOULDBLOCK)
                    return False
                if fl is None:
                    fl = self._files[key] = FileLocks()
                fl.flocks.append(Record(f, ltype, 0, OFFSET_MAX, pid))
                f.lock_table = self
                return True

        if not attempt():
            self._wait(t, key, attempt, None)

    # --- releasing ----------------------------------------------------------------------
    def close_posix(self, owner: object, f: "FileDescription") -> None:
        """`owner` closed a descriptor of f's file: its POSIX locks on the file go, whichever
        descriptor took them."""
        key = f.lock_key()
        with self._lock:
            fl = self._files.get(key)
            if fl is not None:
                self._drop(key, fl, owner)

    def release_owner(self, owner: object) -> None:
        """`owner` (an fd table) is gone, its process exited: all its POSIX locks go."""
        with self._lock:
            for key, fl in list(self._files.items()):
                self._drop(key, fl, owner)

    def release_description(self, f: "FileDescription") -> None:
        """The last descriptor of `f` closed: its OFD and flock locks go."""
        key = f.lock_key()
        with self._lock:
            fl = self._files.get(key)
            if fl is not None:
                self._drop(key, fl, f)

    # --- inside ---------------------------------------------------------------------------
    def _drop(self, key: object, fl: FileLocks, owner: object) -> None:
        ranges = [r for r in fl.ranges if r.owner is not owner]
        flocks = [r for r in fl.flocks if r.owner is not owner]
        if len(ranges) != len(fl.ranges) or len(flocks) != len(fl.flocks):
            fl.ranges, fl.flocks = ranges, flocks
            fl.queue.notify()
        self._forget_if_idle(key, fl)

    def _forget_if_idle(self, key: object, fl: FileLocks) -> None:
        if fl.idle() and self._files.get(key) is fl:
            del self._files[key]

    def _stop_waiting(self, req: Record | None) -> None:
        if req is not None:
            w = self._waiting.get(req.owner)
            if w is not None and w[1] is req:
                del self._waiting[req.owner]

    def _closes_cycle(self, owner: object, blocker: Record) -> bool:
        """Would `owner` waiting for `blocker` close a cycle of waits: does blocker's owner
        wait (behind POSIX locks, link after link) for a lock `owner` holds?"""
        for _ in range(MAX_DEADLK_ITERATIONS + 1):
            w = self._waiting.get(blocker.owner)
            if w is None:
                return False
            fl, want = w
            nxt = first_conflict(fl.ranges, want)
            if nxt is None:
                return False
            if nxt.owner is owner:
                return True
            blocker = nxt
        return False

    def _wait(self, t: "Task", key: object, attempt: Callable[[], bool],
              req: Record | None) -> None:
        """Sleep until attempt() grants the lock; a signal ends it (ERESTARTSYS), a stop
        raises Stopped; attempt's own errors (EDEADLK) end it too."""
        with self._lock:
            fl = self._files.get(key)
            if fl is None:
                fl = self._files[key] = FileLocks()
            fl.waiters += 1
        try:
            block(t, attempt, sources=[fl.queue], interrupt=ERESTARTSYS)
        finally:
            with self._lock:
                fl.waiters -= 1
                self._stop_waiting(req)
                self._forget_if_idle(key, fl)
