"""Pipes and FIFOs: an in-Sentry ring of page buffers shared by a read end and a write end.

The buffer follows Linux's pipe.c: capacity is counted in 4 KiB page slots
(16 by default, F_SETPIPE_SZ rounds to a power of two), a write's odd tail is
merged into the last page when it fits, a write of at most PIPE_BUF bytes is
atomic, a read takes what is there.  With no writers a read sees EOF; with no
readers a write fails with EPIPE (the write handler raises SIGPIPE).

Blocking: a read on an empty pipe (or a write to a full one) waits on the
pipe's Condition in short slices, checking the kernel's stop between them, so
a timeout or kill always ends it (in a single-threaded guest nothing else
could ever satisfy such a wait).  poll(2) registers threading.Events in
`watchers`; every state change sets them.

Lock order: PipeBuffer.cond only (never held while calling out).
"""
from __future__ import annotations

import errno
import stat as S
import threading
import time
from collections import deque

from kvmbox.abi.fcntl import O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import (ANON_INODE_DEV, anon_ino, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM,
                                 POLLWRNORM, FileDescription)
from kvmbox.sentry.vfs.node import Attr

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel
    from kvmbox.sentry.vfs.path import Location

PAGE = 4096
PIPE_BUF = 4096
DEFAULT_SLOTS = 16
PIPE_MAX_SIZE = 1 << 20          # /proc/sys/fs/pipe-max-size
O_NONBLOCK, O_DIRECT = 0o4000, 0o40000
WAIT_SLICE = 0.05                # seconds between checks of the kernel's stop while blocked
PIPEFS_DEV = ANON_INODE_DEV - 1  # pipefs's st_dev (0xc on Linux)


def wait_slice(kernel: "Kernel | None", cond: threading.Condition, ready, deadline: float | None = None
               ) -> bool:
    """With `cond` held: wait until ready() (True) or the monotonic `deadline` passes (False);
    raises kernel.Stopped when the run is stopped (timeout or kill)."""
    while not ready():
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            cond.wait(min(left, WAIT_SLICE))
        else:
            cond.wait(WAIT_SLICE)
        if kernel is not None:
            kernel.sleep(None, 0)      # raises Stopped once the run is stopped
    return True


class PipeBuffer:
    """The shared state of one pipe or FIFO."""

    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.pages: deque[list] = deque()   # [offset in page, bytearray]; offset+len <= PAGE
        self.count = 0                      # bytes buffered
        self.slots = DEFAULT_SLOTS
        self.readers = 0
        self.writers = 0
        self.cond = threading.Condition()
        self.watchers: set[threading.Event] = set()
        now = time.time_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = now

    @property
    def capacity(self) -> int:
        return self.slots * PAGE

    def changed(self) -> None:
        """With cond held: wake blocked readers/writers and pollers."""
        self.cond.notify_all()
        for ev in self.watchers:
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

    def __init__(self, buf: PipeBuffer, flags: int, kernel: "Kernel | None" = None,
                 loc: "Location | None" = None, node=None) -> None:
        self.buf = buf
        self.flags = flags
        self.kernel = kernel
        self.location = loc
        self.node = node                   # the FIFO's node (stat), None for pipe(2)
        acc = flags & O_ACCMODE
        self.readable = acc in (O_RDONLY, O_RDWR)
        self.writable = acc in (O_WRONLY, O_RDWR)
        self._released = False
        with buf.cond:
            if self.readable:
                buf.readers += 1
            if self.writable:
                buf.writers += 1
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

    # --- bytes ------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if n == 0:
            return b""
        b = self.buf
        with b.cond:
            if not b.count:
                if not b.writers:
                    return b""
                if self.nonblocking:
                    raise SyscallError(errno.EAGAIN)
                wait_slice(self.kernel, b.cond, lambda: b.count or not b.writers)
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
            done = 0
            while True:
                if not b.readers:
                    if done:
                        break
                    raise SyscallError(errno.EPIPE)
                rest = view[done:]
                if total <= PIPE_BUF and not b.room_for(total):
                    n = 0
                else:
                    n = b.put(rest)
                if n:
                    done += n
                    b.mtime_ns = b.ctime_ns = time.time_ns()
                    b.changed()
                if done == total:
                    break
                if self.nonblocking:
                    if done:
                        break
                    raise SyscallError(errno.EAGAIN)
                need = total - done if total <= PIPE_BUF else 1
                wait_slice(self.kernel, b.cond,
                           lambda: not b.readers or (b.room_for(need) if need <= PIPE_BUF
                                                     else len(b.pages) < b.slots))
            return done

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

    def wait_for_peer(self) -> None:
        """A blocking FIFO open: wait until the other side is open too (or the run stops)."""
        b = self.buf
        with b.cond:
            if self.readable and not self.writable:
                wait_slice(self.kernel, b.cond, lambda: b.writers)
            elif self.writable and not self.readable:
                wait_slice(self.kernel, b.cond, lambda: b.readers)

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


def make_pipe(kernel: "Kernel", flags: int) -> tuple[PipeEnd, PipeEnd]:
    """pipe2(2): a new buffer and its (read, write) ends; flags: O_NONBLOCK, O_DIRECT."""
    buf = PipeBuffer(0)
    buf.ino = anon_ino()
    extra = flags & (O_NONBLOCK | O_DIRECT)
    return PipeEnd(buf, O_RDONLY | extra, kernel), PipeEnd(buf, O_WRONLY | extra, kernel)


def open_fifo(node, flags: int, loc: "Location | None") -> PipeEnd:
    """Open a FIFO node (its buffer lives in node.pipe).  Never blocks: a blocking open
    waits afterwards in the syscall layer (PipeEnd.wait_for_peer).  A non-blocking
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
    return PipeEnd(buf, flags, None, loc, node)
