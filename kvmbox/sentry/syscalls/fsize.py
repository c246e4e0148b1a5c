"""RLIMIT_FSIZE, enforced as Linux does on regular files of every file system.

Linux's generic_write_check_limits: a write, pwrite or copy starting at or past
the soft limit fails with EFBIG and sends SIGXFSZ (whose default action ends the
process with a core dump); one crossing it is cut short at the limit, without a
signal.  inode_newsize_ok: truncate, ftruncate and fallocate growing a file past
the limit fail the same way (fallocate with FALLOC_FL_KEEP_SIZE only on tmpfs, as
shmem_fallocate checks; disk file systems do not).  Pipes, devices and /proc files
are not limited (FileDescription.write_position None).
"""
from __future__ import annotations

import errno

from kvmbox.abi.signals import SIGXFSZ
from kvmbox.errors import SyscallError
from kvmbox.sentry.task import RLIM_INFINITY

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

RLIMIT_FSIZE = 1


def _too_big(t: "Task") -> SyscallError:
    t.queue_signal(SIGXFSZ)
    return SyscallError(errno.EFBIG)


def write_room(t: "Task", f: "FileDescription", offset: int | None, count: int) -> int:
    """How many of `count` bytes a write at `offset` (None: the file position, or the end
    under O_APPEND) may move: `count` cut short at the limit; EFBIG and SIGXFSZ when the
    write starts at or past it.  A write of nothing is never limited."""
    limit = t.rlimits[RLIMIT_FSIZE][0]
    if count <= 0 or limit >= RLIM_INFINITY:
        return count
    pos = f.write_position(offset)
    if pos is None:
        return count
    if pos >= limit:
        raise _too_big(t)
    return min(count, limit - pos)


def check_growth(t: "Task", old_size: int, new_size: int) -> None:
    """truncate/fallocate: EFBIG and SIGXFSZ when a file would grow past the limit."""
    limit = t.rlimits[RLIMIT_FSIZE][0]
    if new_size > old_size and limit < RLIM_INFINITY and new_size > limit:
        raise _too_big(t)


def check_allocate(t: "Task", f: "FileDescription", keep_size: bool, end: int) -> None:
    """fallocate up to offset `end`: check_growth, and with FALLOC_FL_KEEP_SIZE only for
    a tmpfs file (the overlay's upper layer stands for a disk file system, as /tmp is)."""
    if keep_size:
        node = getattr(f, "node", None)
        if node is None or node.fs.fstype != "tmpfs":
            return
    check_growth(t, f.attr().size, end)
