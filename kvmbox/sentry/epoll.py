"""epoll instances: an interest list of (open file, fd number) items and a ready list, after
Linux's fs/eventpoll.c.

Readiness comes from FileDescription.poll (sys_poll._ready, which asks the host
for the Sentry's own standard streams).  Files that announce changes (pipes,
eventfds, other epolls: `watch`) get each of their items registered as a
watcher: the file calls Item.set() on every state change with its own lock
held, which is Linux's ep_poll_callback.  The callback filters the change by a
wake-up key (what Linux's pipe and eventfd code pass to wake_up_poll: a pipe
write wakes EPOLLIN, a read of a full pipe EPOLLOUT, a read that leaves the
pipe not full wakes nobody, opening/closing an end wakes everything; an eventfd
write EPOLLIN, a read EPOLLOUT), derived from the file's state before and after
the change, and queues the item in `woken`.  The next scan moves woken items to
the ready list; epoll_wait then re-polls the ready items in order, as
ep_send_events does: level-triggered items that reported go back to the tail,
edge-triggered ones leave the list until a new wake-up, EPOLLONESHOT ones are
disabled until EPOLL_CTL_MOD.  So edge-triggered pipes and eventfds behave as
on Linux, event order included.

Files that announce nothing (the host streams, BytesInput/CaptureOutput, the
few pollable device and proc files) are polled at every scan instead: level-
triggered exactly, edge-triggered approximated as "a requested bit that was not
set at the previous scan".  A nested epoll is both watched and polled.

An item goes away with its file: Linux removes it when the file's last
descriptor closes (epoll(7) Q6).  The Sentry notices lazily: an item whose
description no fd table names any more (its `fd_refs`, kept by FdTable,
reached 0) is dropped at the next epoll_ctl, scan or poll of the instance.

Lock order: Epoll.lock, then a nested epoll's lock, then a file's own lock
(PipeBuffer.cond, EventFd.cond).  Callbacks run under the file's lock and never
take an Epoll.lock: they append to the `woken` deque and set waiters' events
under the WaitQueue's leaf lock.
"""
from __future__ import annotations

import errno
import os
import select as _select
import struct
import threading
import time
from collections import deque

from kvmbox.abi.fcntl import O_RDWR
from kvmbox.errors import SyscallError
from kvmbox.sentry.eventfd import EventFd
from kvmbox.sentry.files import (ANON_INODE_DEV, BytesInput, CaptureOutput, FileDescription,
                                 StreamAlias, anon_ino)
from kvmbox.sentry.hoststream import HostStream
from kvmbox.sentry.pipe import PipeEnd
from kvmbox.sentry.syscalls.sys_poll import _ready
from kvmbox.sentry.vfs.node import Attr
from kvmbox.sentry.waiter import WaitQueue

EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x2, 0x4, 0x8, 0x10
EPOLLRDNORM, EPOLLWRNORM, EPOLLRDHUP = 0x40, 0x100, 0x2000
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
EXCLUSIVE_OK_BITS = EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EP_MAX_NESTS = 4                 # Linux's limit on epoll-in-epoll depth
EVENT = struct.Struct("<IQ")     # struct epoll_event, packed on x86-64
_WAKE_ALL = 0                    # a wake-up without a key reaches every item
_NO_WAKE = -1


def _signature(f: FileDescription):
    """What the wake-up key is derived from (read under the file's lock)."""
    if isinstance(f, PipeEnd):
        b = f.buf
        return (b.count, b.readers, b.writers, b.slots, len(b.pages) >= b.slots)
    if isinstance(f, EventFd):
        return f.count
    return None


def _wake_key(f: FileDescription, old, new) -> int:
    """The key Linux would pass to wake_up_poll for the change old -> new, or _NO_WAKE."""
    if old is None or new is None:
        return EPOLLIN | EPOLLRDNORM if isinstance(f, Epoll) else _WAKE_ALL
    if isinstance(f, PipeEnd):
        if old[1:4] != new[1:4]:
            return _WAKE_ALL                        # an end opened or closed, a resize
        if new[0] > old[0]:
            return EPOLLIN | EPOLLRDNORM            # pipe_write wakes readers on every write
        if new[0] < old[0]:
            return EPOLLOUT | EPOLLWRNORM if old[4] else _NO_WAKE   # pipe_read: only if was_full
        return _WAKE_ALL
    if new < old:                                   # eventfd: a read
        return EPOLLOUT
    return EPOLLIN                                  # a write (even of 0)


def alive(f: FileDescription) -> bool:
    """Whether some fd table still names `f` (epoll items die with the last descriptor)."""
    return f.fd_refs > 0


def can_poll(f: FileDescription) -> bool:
    """Whether Linux's file_can_poll() holds for `f` (else epoll_ctl gives EPERM)."""
    if isinstance(f, (Epoll, PipeEnd, EventFd, BytesInput, CaptureOutput, StreamAlias)) \
            or hasattr(f, "watch"):
        return True
    if isinstance(f, HostStream):
        if f.fd < 0:
            return False
        try:
            with _select.epoll() as probe:        # the host knows what its file can do
                probe.register(f.fd, _select.EPOLLIN)
        except PermissionError:
            return False
        except OSError:
            pass
        return True
    from kvmbox.sentry.fsimpl.devfs import DeviceFile, RandomFile
    from kvmbox.sentry.fsimpl.procfs import SnapshotFile
    if isinstance(f, DeviceFile):             # only /dev/random polls; null, zero, full, urandom don't
        return isinstance(f, RandomFile) and os.minor(f.node.rdev) == 8
    if isinstance(f, SnapshotFile):           # /proc/sys/* and the mount tables poll; the rest doesn't
        path = f.location.path if f.location is not None else ""
        return path.startswith("/proc/sys/") or path.rsplit("/", 1)[-1] in (
            "mounts", "mountinfo", "mountstats")
    return type(f).poll is not FileDescription.poll


class Item:
    """One entry of an interest list: Linux's struct epitem."""

    __slots__ = ("ep", "file", "fd", "events", "data", "linked", "watched", "polled", "last", "sig",
                 "removed")

    def __init__(self, ep: "Epoll", f: FileDescription, fd: int, events: int, data: int) -> None:
        self.ep, self.file, self.fd = ep, f, fd
        self.events, self.data = events, data
        self.linked = False              # on ep.ready
        self.watched = hasattr(f, "watch")
        # host-backed sockets (hostinet.py) watch but cannot announce host-side changes
        self.polled = not self.watched or isinstance(f, Epoll) or getattr(f, "host_polled", False)
        self.last = 0                    # readiness at the previous scan (polled edge-triggered items)
        self.sig = None
        self.removed = False

    def set(self) -> None:
        """The file changed (called with the file's lock held): ep_poll_callback."""
        new = _signature(self.file)
        key = _wake_key(self.file, self.sig, new)
        self.sig = new
        events = self.events
        if self.removed or key == _NO_WAKE or not events & ~PRIVATE_BITS:
            return
        if key and not key & events:
            return
        self.ep.wake(self)


class Epoll(FileDescription):
    """One epoll instance (shared by every descriptor dup'd from it)."""

    readable = True
    writable = True
    mode = 0o600                        # an anonymous inode: permission bits only
    flags = O_RDWR
    link_name = "anon_inode:[eventpoll]"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.items: dict[tuple[int, int], Item] = {}     # (id(file), fd) -> item; the item holds the file
        self.ready: dict[Item, None] = {}                # the ready list, in order
        self.woken: deque[Item] = deque()                # callbacks' queue, drained under lock
        self.waiters = WaitQueue()       # task Wakers and the items of epolls nesting this one
        self.parents: dict["Epoll", int] = {}            # epolls whose interest lists name this one
        self._ino = anon_ino()
        self._released = False

    # --- the file ------------------------------------------------------------------------
    def attr(self) -> Attr:
        now = time.time_ns()
        return Attr(dev=ANON_INODE_DEV, ino=self._ino, mode=self.mode, nlink=1, uid=os.getuid(),
                    gid=os.getgid(), size=0, atime_ns=now, mtime_ns=now, ctime_ns=now)

    def read(self, n: int) -> bytes:
        raise SyscallError(errno.EINVAL)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EINVAL)

    def seek(self, offset: int, whence: int) -> int:
        return 0                                         # noop_llseek

    def poll(self, events: int) -> int:
        """Readable when some ready item really has events (ep_eventpoll_poll); never writable."""
        with self.lock:
            self._scan()
            for it in list(self.ready):
                if self._poll_item(it):
                    return EPOLLIN | EPOLLRDNORM
                self._unlink(it)
        return 0

    def watch(self, ev) -> None:
        self.waiters.watch(ev)

    def unwatch(self, ev) -> None:
        self.waiters.unwatch(ev)

    def wake(self, item: Item) -> None:
        """Queue `item` for the ready list and wake waiters and nesting epolls (no Epoll.lock)."""
        self.woken.append(item)
        self.wake_watchers()

    def wake_watchers(self) -> None:
        self.waiters.notify()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with self.lock:
            for it in list(self.items.values()):
                self._remove(it)

    def fdinfo(self) -> str:
        """The tfd lines Linux's ep_show_fdinfo prints."""
        out = []
        with self.lock:
            self._purge()
            for it in self.items.values():
                try:
                    pos = it.file.seek(0, 1)
                except SyscallError:
                    pos = 0
                a = it.file.attr()
                sdev = (os.major(a.dev) << 20) | os.minor(a.dev)
                out.append(f"tfd: {it.fd:8d} events: {it.events:8x} data: {it.data:16x}  pos:{pos} "
                           f"ino:{a.ino:x} sdev:{sdev:x}\n")
        return "".join(out)

    def host_streams(self, seen: set | None = None) -> list[tuple[HostStream, int]]:
        """The host streams in this interest list and nested ones, with the events watched
        (a wait polls their fds)."""
        seen = set() if seen is None else seen
        seen.add(id(self))
        out: list[tuple[HostStream, int]] = []
        for it in list(self.items.values()):
            f = it.file
            if isinstance(f, HostStream) or getattr(f, "host_polled", False):
                out.append((f, it.events & 0xFFFF))
            elif isinstance(f, Epoll) and id(f) not in seen:
                out += f.host_streams(seen)
        return out

    # --- the lists (with self.lock held) -----------------------------------------------------
    def _link(self, it: Item) -> None:
        if not it.linked and not it.removed:
            it.linked = True
            self.ready[it] = None

    def _unlink(self, it: Item) -> None:
        if it.linked:
            it.linked = False
            self.ready.pop(it, None)

    def _poll_item(self, it: Item) -> int:
        events = it.events
        f = it.file
        if isinstance(f, Epoll):
            r = f.poll(EPOLLIN)
        else:
            r = _ready(f, (events & 0xFFFF) | EPOLLERR | EPOLLHUP)
        return r & events & ~PRIVATE_BITS

    def _remove(self, it: Item) -> None:
        self.items.pop((id(it.file), it.fd), None)
        it.removed = True
        self._unlink(it)
        if it.watched:
            it.file.unwatch(it)
        if isinstance(it.file, Epoll):
            child = it.file
            n = child.parents.get(self, 0) - 1
            if n > 0:
                child.parents[self] = n
            else:
                child.parents.pop(self, None)

    def _purge(self) -> None:
        for it in [it for it in self.items.values() if not alive(it.file)]:
            self._remove(it)

    def _scan(self) -> None:
        """Bring the ready list up to date: dead items out, woken and ready polled items in."""
        self._purge()
        woken = self.woken
        while woken:
            self._link(woken.popleft())
        for it in list(self.items.values()):
            if not it.polled:
                continue
            r = self._poll_item(it)
            if it.events & EPOLLET:
                edge, it.last = r & ~it.last, r
                if edge:
                    self._link(it)
            elif r:
                self._link(it)

    # --- epoll_ctl ---------------------------------------------------------------------------
    def ctl(self, op: int, f: FileDescription, fd: int, events: int, data: int) -> None:
        """EPOLL_CTL_ADD/MOD/DEL once the handler checked the descriptors (EBADF, EPERM, EINVAL)."""
        with self.lock:
            self._purge()
            if op == EPOLL_CTL_ADD and isinstance(f, Epoll) and self._would_loop(f):
                raise SyscallError(errno.ELOOP)
            it = self.items.get((id(f), fd))
            if op == EPOLL_CTL_ADD:
                if it is not None:
                    raise SyscallError(errno.EEXIST)
                self._insert(f, fd, events | EPOLLERR | EPOLLHUP, data)
            elif op == EPOLL_CTL_DEL:
                if it is None:
                    raise SyscallError(errno.ENOENT)
                self._remove(it)
            elif op == EPOLL_CTL_MOD:
                if it is None:
                    raise SyscallError(errno.ENOENT)
                if it.events & EPOLLEXCLUSIVE:
                    raise SyscallError(errno.EINVAL)
                self._modify(it, events | EPOLLERR | EPOLLHUP, data)
            else:
                raise SyscallError(errno.EINVAL)

    def _insert(self, f: FileDescription, fd: int, events: int, data: int) -> None:
        it = Item(self, f, fd, events, data)
        self.items[(id(f), fd)] = it
        if isinstance(f, Epoll):
            f.parents[self] = f.parents.get(self, 0) + 1
        if it.watched:
            f.watch(it)
            it.sig = _signature(f)
        self._rearm(it)

    def _modify(self, it: Item, events: int, data: int) -> None:
        it.events, it.data = events, data
        self._rearm(it)

    def _rearm(self, it: Item) -> None:
        """ep_insert/ep_modify: a file ready now goes on the ready list."""
        r = self._poll_item(it)
        it.last = r
        if r and not it.linked:
            self._link(it)
            self.wake_watchers()

    def _would_loop(self, target: "Epoll") -> bool:
        """ep_loop_check: adding `target` would close a loop or nest deeper than EP_MAX_NESTS."""
        memo: dict[int, int] = {}

        def down(ep: "Epoll", depth: int) -> int:
            if id(ep) in memo:
                return memo[id(ep)]
            result = 0
            for it in list(ep.items.values()):
                child = it.file
                if not isinstance(child, Epoll) or not alive(child):
                    continue
                if child is self or depth > EP_MAX_NESTS:
                    result = EP_MAX_NESTS + 1
                else:
                    result = max(result, down(child, depth + 1) + 1)
                if result > EP_MAX_NESTS:
                    break
            memo[id(ep)] = result
            return result

        def up(ep: "Epoll", depth: int) -> int:
            if depth > EP_MAX_NESTS:
                return depth
            return max((up(p, depth + 1) + 1 for p in list(ep.parents) if alive(p)), default=0)

        depth = down(target, 0)
        return depth > EP_MAX_NESTS or depth + 1 + up(self, 0) > EP_MAX_NESTS

    # --- epoll_wait --------------------------------------------------------------------------
    def harvest(self, maxevents: int, put) -> int:
        """ep_send_events: report up to `maxevents` ready items through put(i, events, data)
        (False when the guest buffer faults).  Returns the count, or -EFAULT when the first
        copy failed; unreported items keep their place at the head of the ready list."""
        with self.lock:
            self._scan()
            tx = list(self.ready)
            self.ready.clear()
            for it in tx:
                it.linked = False
            again: list[Item] = []
            res = 0
            i = 0
            while i < len(tx) and res < maxevents:
                it = tx[i]
                revents = self._poll_item(it)
                if not revents:
                    i += 1
                    continue
                if not put(res, revents, it.data):
                    if not res:
                        res = -errno.EFAULT
                    break
                i += 1
                res += 1
                if it.events & EPOLLONESHOT:
                    it.events &= PRIVATE_BITS
                elif not it.events & EPOLLET:
                    again.append(it)
            for it in tx[i:] + again:
                self._link(it)
            return res
