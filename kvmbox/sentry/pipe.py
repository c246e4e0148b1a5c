"""Pipes and FIFOs: an in-Sentry ring of page buffers shared by a read end and a write end.

The buffer follows Linux's pipe.c: capacity is counted in 4 KiB page slots
(16 by default, F_SETPIPE_SZ rounds to a power of two), a write's odd tail is
merged into the last page when it fits, a write of at most PIPE_BUF bytes is
atomic, a read takes what is there.  With no writers a read sees EOF; with no
readers a write fails with EPIPE (the write handler raises SIGPIPE).

Blocking: an end never blocks.  A read of an empty pipe (or a write to a full
one) raises EAGAIN; for a blocking descriptor the syscall layer then waits on
the buffer's `watchers` until poll() says the end is ready, and tries again
(kvmbox/sentry/waiter.py; kvmbox/sentry/syscalls/blocking.py), so a signal, a
timeout or a kill ends any wait at once.  Every state change sets the
watchers (task Wakers, epoll's and poll's).  A blocking FIFO open waits the
same way for its peer (`open_wait`), as Linux's fifo_open does on the
reader/writer open counters.

Lock order: PipeBuffer.cond only (its watchers' set() take no other lock).
"""
from __future__ import annotations

import errno
import stat as S
import threading
import time
from collections import deque

from kvmbox.abi.fcntl import O_ACCMODE, O_DIRECT, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY
from kvmbox.abi.poll import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import ANON_INODE_DEV, anon_ino, FileDescription
from kvmbox.sentry.vfs.node import Attr

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.vfs.path import Location

PAGE = 4096
PIPE_BUF = 4096
DEFAULT_SLOTS = 16
PIPE_MAX_SIZE = 1 << 20          # /proc/sys/fs/pipe-max-size
PIPEFS_DEV = ANON_INODE_DEV - 1  # pipefs's st_dev (0xc on Linux)


class PipeBuffer:
    """The shared state of one pipe or FIFO."""

    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.pages: deque[list] = deque()   # [offset in page, bytearray]; offset+len <= PAGE
        self.count = 0                      # bytes buffered
        self.slots = DEFAULT_SLOTS
        self.readers = 0
        self.writers = 0
        self.r_counter = 0                  # opens for reading ever (a blocking FIFO open waits
        self.w_counter = 0                  # for the other counter to move, as Linux's fifo_open)
        self.cond = threading.Condition()
        self.watchers: set = set()          # objects with set(): task Wakers, poll/epoll events
        now = time.time_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = now

    @property
    def capacity(self) -> int:
        return self.slots * PAGE

    def changed(self) -> None:
        """With cond held: wake blocked readers/writers and pollers."""
        for ev in list(self.watchers):
            ev.set()

    # --- with cond held ---------------------------------------------------------------
    def take(self, n: int) -> bytes:
        out = bytearray()
        pages = self.pages
        while pages and len(out) < n:
            page = pages[0]
            k = min(n - len(out), len(page[1]))
            out += page[1][:k]
            del page[1][:k]
            page[0] += k
            if not page[1]:
                pages.popleft()
        self.count -= len(out)
        return bytes(out)

    def put_back(self, data: bytes) -> None:
        """Bytes a reader could not deliver go back to the front."""
        if data:
            self.pages.appendleft([0, bytearray(data)])
            self.count += len(data)

    def room_for(self, n: int) -> bool:
        """Whether an atomic write of n (<= PIPE_BUF) bytes fits now."""
        if self.pages and n:
            off, buf = self.pages[-1]
            if off + len(buf) + n <= PAGE:
                return True
        return len(self.pages) < self.slots

    def put(self, data: memoryview) -> int:
        """Write as much of `data` as fits, Linux's way: the odd tail merged into the last
        page first, then whole fresh pages.  Returns the bytes taken."""
        done = 0
        chars = len(data) & (PAGE - 1)
        if chars and self.pages:
            off, buf = self.pages[-1]
            if off + len(buf) + chars <= PAGE:
                buf += data[:chars]
                done = chars
        while done < len(data) and len(self.pages) < self.slots:
            k = min(PAGE, len(data) - done)
            self.pages.append([0, bytearray(data[done:done + k])])
            done += k
        self.count += done
        return done

    def set_slots(self, slots: int) -> None:
        if slots < len(self.pages):
            raise SyscallError(errno.EBUSY)
        self.slots = slots
        self.changed()


class PipeEnd(FileDescription):
    """One open end of a pipe or FIFO (O_RDWR opens of a FIFO are both)."""

    mode = S.S_IFIFO | 0o600

    def __init__(self, buf: PipeBuffer, flags: int, loc: "Location | None" = None,
                 node=None) -> None:
        self.buf = buf
        self.flags = flags
        self.location = loc
        self.node = node                   # the FIFO's node (stat), None for pipe(2)
        acc = flags & O_ACCMODE
        self.readable = acc in (O_RDONLY, O_RDWR)
        self.writable = acc in (O_WRONLY, O_RDWR)
        self._released = False
        with buf.cond:
            if self.readable:
                buf.readers += 1
                buf.r_counter += 1
            if self.writable:
                buf.writers += 1
                buf.w_counter += 1
            buf.changed()

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & O_NONBLOCK)

    def attr(self) -> Attr:
        if self.node is not None:
            return self.node.attr()
        b = self.buf
        return Attr(dev=PIPEFS_DEV, ino=b.ino, mode=self.mode, nlink=1, uid=_uid(), gid=_gid(),
                    size=0, blksize=PAGE, atime_ns=b.atime_ns, mtime_ns=b.mtime_ns,
                    ctime_ns=b.ctime_ns)

    def lock_key(self) -> object:
        """File locks are kept against the FIFO's node, or a pipe's one inode (its buffer):
        both ends of a pipe meet the same locks."""
        return self.node if self.node is not None else self.buf

    # --- bytes ------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        """What is buffered (up to n), b"" at EOF (no writers), else EAGAIN (never blocks)."""
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if n == 0:
            return b""
        b = self.buf
        with b.cond:
            if not b.count:
                if not b.writers:
                    return b""
                raise SyscallError(errno.EAGAIN)
            data = b.take(n)
            if data:
                b.atime_ns = time.time_ns()
                b.changed()
            return data

    def unread(self, data: bytes) -> None:
        with self.buf.cond:
            self.buf.put_back(data)
            self.buf.changed()

    def write(self, data: bytes) -> int:
        """Take what fits now (all of a write of at most PIPE_BUF bytes, or none of it);
        EAGAIN when nothing fits, EPIPE with no readers (never blocks)."""
        if not self.writable:
            raise SyscallError(errno.EBADF)
        b = self.buf
        view = memoryview(data)
        total = len(view)
        with b.cond:
            if not b.readers:
                raise SyscallError(errno.EPIPE)
            if total == 0:
                return 0
            if total <= PIPE_BUF and not b.room_for(total):
                raise SyscallError(errno.EAGAIN)
            n = b.put(view)
            if not n:
                raise SyscallError(errno.EAGAIN)
            b.mtime_ns = b.ctime_ns = time.time_ns()
            b.changed()
            return n

    # --- the rest ---------------------------------------------------------------------
    def poll(self, events: int) -> int:
        b = self.buf
        r = 0
        with b.cond:
            if self.readable:
                if b.count:
                    r |= POLLIN | POLLRDNORM
                if not b.writers:
                    r |= POLLHUP
            if self.writable:
                if len(b.pages) < b.slots:         # Linux: a free page slot, not merge room
                    r |= POLLOUT | POLLWRNORM
                if not b.readers:
                    r |= POLLERR
        return r & (events | POLLERR | POLLHUP)

    def readable_bytes(self) -> int:
        with self.buf.cond:
            return self.buf.count

    def watch(self, ev: threading.Event) -> None:
        with self.buf.cond:
            self.buf.watchers.add(ev)

    def unwatch(self, ev: threading.Event) -> None:
        with self.buf.cond:
            self.buf.watchers.discard(ev)

    def pipe_size(self) -> int:
        return self.buf.capacity

    def set_pipe_size(self, size: int, privileged: bool) -> int:
        if size < 0 or size > 1 << 31:
            raise SyscallError(errno.EINVAL)
        pages = max(1, (size + PAGE - 1) // PAGE)
        slots = 1 << (pages - 1).bit_length()
        if slots * PAGE > PIPE_MAX_SIZE and not privileged:
            raise SyscallError(errno.EPERM)
        with self.buf.cond:
            self.buf.set_slots(slots)
        return slots * PAGE

    def open_wait(self):
        """What a blocking open of this FIFO end waits for, as a predicate (None: nothing).
        A reader waits until some writer has opened (now or since), a writer for a reader;
        an O_RDWR open never waits (Linux's fifo_open on the r/w counters)."""
        if self.node is None or self.nonblocking or (self.readable and self.writable):
            return None
        b = self.buf
        with b.cond:
            if self.readable:
                if b.writers:
                    return None
                start = b.w_counter
                return lambda: b.w_counter != start
            if b.readers:
                return None
            start = b.r_counter
            return lambda: b.r_counter != start

    def reopen(self, flags: int) -> "PipeEnd":
        """open(2) of /proc/self/fd/N naming this pipe: another end of the same pipe, as
        Linux's fifo_open on a pipefs inode (EINVAL for access mode 3; unlike a FIFO's,
        it neither waits for a peer nor gives ENXIO without one)."""
        if flags & O_ACCMODE == 3:
            raise SyscallError(errno.EINVAL)
        return PipeEnd(self.buf, flags, None, self.node)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        b = self.buf
        with b.cond:
            if self.readable:
                b.readers -= 1
            if self.writable:
                b.writers -= 1
            if not b.readers and not b.writers and self.node is not None:
                b.pages.clear()             # a FIFO's data goes with its last opener
                b.count = 0
            b.changed()


def _uid() -> int:
    import os
    return os.getuid()


def _gid() -> int:
    import os
    return os.getgid()


def make_pipe(flags: int) -> tuple[PipeEnd, PipeEnd]:
    """pipe2(2): a new buffer and its (read, write) ends; flags: O_NONBLOCK, O_DIRECT."""
    buf = PipeBuffer(0)
    buf.ino = anon_ino()
    extra = flags & (O_NONBLOCK | O_DIRECT)
    return PipeEnd(buf, O_RDONLY | extra), PipeEnd(buf, O_WRONLY | extra)


def open_fifo(node, flags: int, loc: "Location | None") -> PipeEnd:
    """Open a FIFO node (its buffer lives in node.pipe).  Never blocks: a blocking open
    waits afterwards in the syscall layer (PipeEnd.open_wait).  A non-blocking
    write-only open with no reader gives ENXIO."""
    buf = getattr(node, "pipe", None)
    if buf is None:
        buf = PipeBuffer(node.ino)
        node.pipe = buf
    acc = flags & O_ACCMODE
    if acc == 3:
        raise SyscallError(errno.EINVAL)
    if acc == O_WRONLY and flags & O_NONBLOCK:
        with buf.cond:
            if not buf.readers:
                raise SyscallError(errno.ENXIO)
    return PipeEnd(buf, flags, loc, node)
