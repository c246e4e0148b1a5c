"""eventfd: a 64-bit counter read and written as 8-byte values (EFD_SEMAPHORE, EFD_NONBLOCK).

A read of a zero counter, or a write that would pass 2^64-2, raises EAGAIN;
for a blocking descriptor the syscall layer waits on its WaitQueue and retries
(kvmbox/sentry/waiter.py), as for pipes.
"""
from __future__ import annotations

import errno
import os
import struct
import threading
import time

from kvmbox.abi.fcntl import O_RDWR
from kvmbox.abi.poll import POLLERR, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import ANON_INODE_DEV, anon_ino, FileDescription
from kvmbox.sentry.vfs.node import Attr
from kvmbox.sentry.waiter import WaitQueue

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel

EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC = 1, 0o4000, 0o2000000
ULLONG_MAX = (1 << 64) - 1
COUNTER_MAX = ULLONG_MAX - 1
U64 = struct.Struct("<Q")


class EventFd(FileDescription):
    """One eventfd object (shared by every descriptor dup'd from it)."""

    readable = True
    writable = True
    mode = 0o600                     # an anonymous inode: permission bits only
    link_name = "anon_inode:[eventfd]"

    def __init__(self, kernel: "Kernel | None", initval: int, flags: int) -> None:
        self.kernel = kernel
        self.count = initval
        self.semaphore = bool(flags & EFD_SEMAPHORE)
        self.flags = O_RDWR | (flags & EFD_NONBLOCK)
        self.cond = threading.Lock()
        self.waiters = WaitQueue()         # task Wakers, poll/epoll events
        self._ino = anon_ino()
        self.id = 0                        # /proc fdinfo's eventfd-id: the lowest free number
        if kernel is not None:
            used = kernel.eventfd_ids
            while self.id in used:
                self.id += 1
            used.add(self.id)

    def attr(self) -> Attr:
        now = time.time_ns()
        return Attr(dev=ANON_INODE_DEV, ino=self._ino, mode=self.mode, nlink=1, uid=os.getuid(),
                    gid=os.getgid(), size=0, atime_ns=now, mtime_ns=now, ctime_ns=now)

    def _changed(self) -> None:
        self.waiters.notify()

    def read(self, n: int) -> bytes:
        if n < 8:
            raise SyscallError(errno.EINVAL)
        with self.cond:
            if not self.count:
                raise SyscallError(errno.EAGAIN)
            value = 1 if self.semaphore else self.count
            self.count -= value
            self._changed()
            return U64.pack(value)

    def unread(self, data: bytes) -> None:
        with self.cond:
            self.count += U64.unpack(data[:8])[0]
            self._changed()

    def write(self, data: bytes) -> int:
        if len(data) < 8:
            raise SyscallError(errno.EINVAL)
        value = U64.unpack(data[:8])[0]
        if value == ULLONG_MAX:
            raise SyscallError(errno.EINVAL)
        with self.cond:
            if self.count + value > COUNTER_MAX:
                raise SyscallError(errno.EAGAIN)
            self.count += value
            self._changed()
        return 8

    def poll(self, events: int) -> int:
        with self.cond:
            r = 0
            if self.count:
                r |= POLLIN | POLLRDNORM
            if self.count < COUNTER_MAX:
                r |= POLLOUT | POLLWRNORM
            if self.count == ULLONG_MAX:
                r |= POLLERR
            return r

    def watch(self, ev) -> None:
        self.waiters.watch(ev)

    def unwatch(self, ev) -> None:
        self.waiters.unwatch(ev)

    def release(self) -> None:
        if self.kernel is not None:
            self.kernel.eventfd_ids.discard(self.id)

    def fdinfo(self) -> str:
        return (f"eventfd-count: {self.count:16x}\neventfd-id: {self.id}\n"
                f"eventfd-semaphore: {int(self.semaphore)}\n")
