"""Handlers that make processes: fork, vfork, clone, clone3 (all through sentry/clone.py)."""
from __future__ import annotations

import errno
import struct

from kvmbox.errors import SyscallError
from kvmbox.sentry import clone as C
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]
SIGCHLD = 17
# struct clone_args: flags pidfd child_tid parent_tid exit_signal stack stack_size tls
# set_tid set_tid_size cgroup (u64 each); CLONE_ARGS_SIZE_VER0 is the first 8.
_CLONE_ARGS = struct.Struct("<11Q")
CLONE_ARGS_SIZE_VER0, CLONE_ARGS_SIZE_VER2 = 64, 88


def fork(t: "Task", a: Args) -> int:
    """Implements Linux syscall fork(2)."""
    return C.clone(t, 0, exit_signal=SIGCHLD)


def vfork(t: "Task", a: Args) -> int:
    """Implements Linux syscall vfork(2)."""
    return C.clone(t, C.CLONE_VM | C.CLONE_VFORK, exit_signal=SIGCHLD)


def clone(t: "Task", a: Args) -> int:
    """Implements Linux syscall clone(2)."""
    flags, stack, parent_tid, child_tid, tls = a[0], a[1], a[2], a[3], a[4]   # x86-64 order
    flags &= 0xFFFF_FFFF
    if flags & C.CLONE_PIDFD:
        raise SyscallError(errno.EINVAL)        # pidfds are not supported
    return C.clone(t, flags & ~C.CSIGNAL, exit_signal=flags & C.CSIGNAL, stack=stack, tls=tls,
                   parent_tid=parent_tid, child_tid=child_tid)


def clone3(t: "Task", a: Args) -> int:
    """Implements Linux syscall clone3(2)."""
    addr, size = a[0], a[1]
    if size < CLONE_ARGS_SIZE_VER0 or size > 4096:
        raise SyscallError(errno.EINVAL)
    raw = t.mm.copy_in(addr, size)
    if size > _CLONE_ARGS.size and any(raw[_CLONE_ARGS.size:]):
        raise SyscallError(errno.E2BIG)          # unknown trailing fields must be zero
    raw = raw[:_CLONE_ARGS.size].ljust(_CLONE_ARGS.size, b"\0")
    (flags, _pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
     set_tid_size, _cgroup) = _CLONE_ARGS.unpack(raw)
    if exit_signal & ~C.CSIGNAL or flags & C.CSIGNAL:
        raise SyscallError(errno.EINVAL)
    if flags & (C.CLONE_THREAD | C.CLONE_PARENT) and exit_signal:
        raise SyscallError(errno.EINVAL)
    if set_tid or set_tid_size:
        raise SyscallError(errno.EPERM)          # choosing pids needs CAP_SYS_ADMIN in the pid ns
    if flags & (C.CLONE_PIDFD | C.CLONE_INTO_CGROUP):
        raise SyscallError(errno.EINVAL)
    if (stack == 0) != (stack_size == 0):
        raise SyscallError(errno.EINVAL)
    if flags & C.CLONE_CLEAR_SIGHAND and flags & C.CLONE_SIGHAND:
        raise SyscallError(errno.EINVAL)
    top = stack + stack_size if stack else 0     # clone3 gives the lowest address and a size
    return C.clone(t, flags, exit_signal=exit_signal, stack=top, tls=tls,
                   parent_tid=parent_tid, child_tid=child_tid)


ENTRIES = (
    Entry("fork", fork, SUPPORTED, "copy-on-write memory; the child runs on a host thread of its own"),
    Entry("vfork", vfork, SUPPORTED, "the child runs on the parent's host thread until it execs or exits"),
    Entry("clone", clone, PARTIAL, "processes and threads (each on a host thread and a vCPU or "
          "stub thread of its own); namespaces EPERM; CLONE_PIDFD EINVAL"),
    Entry("clone3", clone3, PARTIAL, "as clone; set_tid EPERM; CLONE_INTO_CGROUP EINVAL"),
)
