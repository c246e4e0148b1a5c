"""Thread-support syscalls: set_tid_address, robust lists, rseq (refused) and single-thread futex."""
from __future__ import annotations

import errno
import time
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import structs
from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.signals.deliver import ERESTARTSYS
from kvmbox.sentry.waiter import block
from kvmbox.sentry.syscalls.sys_time import (CLOCK_MONOTONIC, CLOCK_REALTIME, now_ns,
                                             read_timespec)
from kvmbox.sentry.syscalls.table import ERROR, PARTIAL, SUPPORTED, Entry

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 0, 1, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_CMD_MASK = ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)


def set_tid_address(t: "Task", a: Args) -> int:
    """Implements Linux syscall set_tid_address(2)."""
    tidptr = a[0]
    t.clear_child_tid = tidptr
    return t.tid


def set_robust_list(t: "Task", a: Args) -> int:
    """Implements Linux syscall set_robust_list(2)."""
    head, length = a[0], a[1]
    if length != structs.ROBUST_LIST_HEAD_SIZE:
        raise SyscallError(errno.EINVAL)
    t.robust_list = (head, length)
    return 0


def get_robust_list(t: "Task", a: Args) -> int:
    """Implements Linux syscall get_robust_list(2)."""
    pid, head_ptr, len_ptr = s32(a[0]), a[1], a[2]
    if pid not in (0, t.tid):
        raise SyscallError(errno.ESRCH)
    t.mm.copy_out(len_ptr, structs.U64.pack(structs.ROBUST_LIST_HEAD_SIZE))
    t.mm.copy_out(head_ptr, structs.U64.pack(t.robust_list[0]))
    return 0


def _futex_wait(t: "Task", uaddr: int, val: int, timeout: int, bitset_abs: bool,
                clock: int) -> int:
    """Wait while *uaddr == val.  With no other thread to wake us, only the timeout ends it."""
    remaining = None
    if timeout:
        ns = read_timespec(t, timeout)
        remaining = ns - now_ns(clock) if bitset_abs else ns
    (current,) = structs.U32.unpack(t.mm.copy_in(uaddr, 4))
    if current != val:
        raise SyscallError(errno.EAGAIN)
    # Nothing can wake it (one thread): it ends by its timeout, a signal or a stop.
    if remaining is None:
        block(t, _never, interrupt=ERESTARTSYS)
    elif remaining > 0:
        block(t, _never, deadline=time.monotonic() + remaining / 1e9, interrupt=errno.EINTR)
    raise SyscallError(errno.ETIMEDOUT)


def _never() -> bool:
    return False


def futex(t: "Task", a: Args) -> int:
    """Implements Linux syscall futex(2)."""
    uaddr, op, val, timeout, _uaddr2, val3 = a[0], s32(a[1]), u32(a[2]), a[3], a[4], u32(a[5])
    cmd = op & FUTEX_CMD_MASK
    if op & FUTEX_CLOCK_REALTIME and cmd != FUTEX_WAIT_BITSET:
        raise SyscallError(errno.ENOSYS)
    if cmd not in (FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET):
        raise SyscallError(errno.ENOSYS)
    if cmd in (FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET) and val3 == 0:
        raise SyscallError(errno.EINVAL)
    if uaddr & 3:
        raise SyscallError(errno.EINVAL)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        return 0                           # nobody else can be waiting yet
    clock = CLOCK_REALTIME if op & FUTEX_CLOCK_REALTIME else CLOCK_MONOTONIC
    return _futex_wait(t, uaddr, val, timeout, cmd == FUTEX_WAIT_BITSET, clock)


ENTRIES = (
    Entry("set_tid_address", set_tid_address, SUPPORTED),
    Entry("set_robust_list", set_robust_list, PARTIAL, "recorded; walked at thread exit later"),
    Entry("get_robust_list", get_robust_list, PARTIAL, "own thread only"),
    Entry("rseq", None, ERROR, "glibc falls back when rseq is unavailable", errno.ENOSYS),
    Entry("futex", futex, PARTIAL,
          "single thread: WAIT/WAIT_BITSET (EAGAIN, timeout) and WAKE (0 woken); others ENOSYS"),
)
