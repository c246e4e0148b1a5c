"""Thread-support syscalls: set_tid_address, robust lists, rseq (refused) and futex (kvmbox/sentry/futex.py)."""
from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import structs
from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry import futex as futex_mod
from kvmbox.sentry.signals.deliver import ERESTART_RESTARTBLOCK, ERESTARTSYS
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
    target = t if pid == 0 else t.kernel.pids.task(pid)
    if target is None or target.done:
        raise SyscallError(errno.ESRCH)        # every thread of the sandbox has its ids
    t.mm.copy_out(len_ptr, structs.U64.pack(structs.ROBUST_LIST_HEAD_SIZE))
    t.mm.copy_out(head_ptr, structs.U64.pack(target.robust_list[0]))
    return 0


FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 3, 4, 5
FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI = 6, 7, 8
FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI, FUTEX_LOCK_PI2 = 11, 12, 13
_WITH_TIMEOUT = (FUTEX_WAIT, FUTEX_LOCK_PI, FUTEX_LOCK_PI2, FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI)
_CLOCKRT_OK = (FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI, FUTEX_LOCK_PI2)
# FUTEX_WAKE_OP: the operation on *uaddr2 and the comparison of its old value.
FUTEX_OP_SET, FUTEX_OP_ADD, FUTEX_OP_OR, FUTEX_OP_ANDN, FUTEX_OP_XOR = 0, 1, 2, 3, 4
FUTEX_OP_OPARG_SHIFT = 8
_OPS = {FUTEX_OP_SET: lambda old, arg: arg, FUTEX_OP_ADD: lambda old, arg: old + arg,
        FUTEX_OP_OR: lambda old, arg: old | arg, FUTEX_OP_ANDN: lambda old, arg: old & ~arg,
        FUTEX_OP_XOR: lambda old, arg: old ^ arg}
_CMPS = (lambda a, b: a == b, lambda a, b: a != b, lambda a, b: a < b,
         lambda a, b: a <= b, lambda a, b: a > b, lambda a, b: a >= b)


def _sext12(v: int) -> int:
    return v - 0x1000 if v & 0x800 else v


def _deadline(t: "Task", cmd: int, timeout: int, realtime: bool) -> float | None:
    """The wait's deadline (monotonic seconds) from the timespec at `timeout` (0: none):
    relative for FUTEX_WAIT, absolute for the others, on CLOCK_REALTIME when asked (and
    always for LOCK_PI, as Linux)."""
    if not timeout or cmd not in _WITH_TIMEOUT:
        return None
    ns = read_timespec(t, timeout)
    if cmd == FUTEX_WAIT:
        return futex_mod.deadline_from(ns, False, 0)
    clock = CLOCK_REALTIME if realtime or cmd == FUTEX_LOCK_PI else CLOCK_MONOTONIC
    return futex_mod.deadline_from(ns, True, now_ns(clock))


def _wait(t: "Task", uaddr: int, val: int, deadline: float | None, bitset: int, private: bool,
          timed: bool) -> int:
    tab = futex_mod.table(t)
    key = tab.key(t, uaddr, private)
    if futex_mod.read_word(t, uaddr) != val:
        raise SyscallError(errno.EAGAIN)
    # Interrupted: restarted (with a handler: EINTR) when there is no timeout, else EINTR.
    interrupt = ERESTART_RESTARTBLOCK if timed else ERESTARTSYS
    if not tab.wait(t, key, deadline, bitset, interrupt):
        raise SyscallError(errno.ETIMEDOUT)
    return 0


def _wake_op(t: "Task", uaddr: int, nwake: int, nwake2: int, uaddr2: int, val3: int,
             private: bool) -> int:
    op, cmp = (val3 >> 28) & 0xF, (val3 >> 24) & 0xF
    oparg, cmparg = _sext12((val3 >> 12) & 0xFFF), _sext12(val3 & 0xFFF)
    if op & FUTEX_OP_OPARG_SHIFT:
        oparg = 1 << (oparg & 31)
        op &= ~FUTEX_OP_OPARG_SHIFT
    if op not in _OPS or cmp >= len(_CMPS):
        raise SyscallError(errno.ENOSYS)
    tab = futex_mod.table(t)
    key, key2 = tab.key(t, uaddr, private), tab.key(t, uaddr2, private)
    old = futex_mod.read_word(t, uaddr2)
    futex_mod.write_word(t, uaddr2, _OPS[op](old, oparg))
    woken = tab.wake(key, nwake)
    signed_old = old - (1 << 32) if old & 0x8000_0000 else old
    if _CMPS[cmp](signed_old, cmparg):
        woken += tab.wake(key2, nwake2)
    return woken


def futex(t: "Task", a: Args) -> int:
    """Implements Linux syscall futex(2)."""
    uaddr, op, val, timeout, uaddr2, val3 = a[0], s32(a[1]), u32(a[2]), a[3], a[4], u32(a[5])
    cmd = op & FUTEX_CMD_MASK
    private = bool(op & FUTEX_PRIVATE_FLAG)
    realtime = bool(op & FUTEX_CLOCK_REALTIME)
    deadline = _deadline(t, cmd, timeout, realtime)    # timespec errors come first, as Linux
    if realtime and cmd not in _CLOCKRT_OK:
        raise SyscallError(errno.ENOSYS)
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        bitset = futex_mod.BITSET_MATCH_ANY if cmd == FUTEX_WAIT else val3
        if not bitset:
            raise SyscallError(errno.EINVAL)
        return _wait(t, uaddr, val, deadline, bitset, private, bool(timeout))
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        bitset = futex_mod.BITSET_MATCH_ANY if cmd == FUTEX_WAKE else val3
        if not bitset:
            raise SyscallError(errno.EINVAL)
        tab = futex_mod.table(t)
        return tab.wake(tab.key(t, uaddr, private), s32(val), bitset)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        nwake, nrequeue = s32(val), s32(timeout & 0xFFFF_FFFF)
        if nwake < 0 or nrequeue < 0:
            raise SyscallError(errno.EINVAL)
        tab = futex_mod.table(t)
        key, key2 = tab.key(t, uaddr, private), tab.key(t, uaddr2, private)
        if cmd == FUTEX_CMP_REQUEUE and futex_mod.read_word(t, uaddr) != val3:
            raise SyscallError(errno.EAGAIN)
        return tab.requeue(key, key2, nwake, nrequeue)
    if cmd == FUTEX_WAKE_OP:
        return _wake_op(t, uaddr, s32(val), s32(timeout & 0xFFFF_FFFF), uaddr2, val3, private)
    if cmd in (FUTEX_LOCK_PI, FUTEX_LOCK_PI2, FUTEX_TRYLOCK_PI):
        return futex_mod.lock_pi(t, uaddr, private, deadline, try_only=cmd == FUTEX_TRYLOCK_PI)
    if cmd == FUTEX_UNLOCK_PI:
        return futex_mod.unlock_pi(t, uaddr, private)
    if cmd in (FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI):
        t.kernel.notice_once("futex requeue-pi", "kvmbox: futex WAIT_REQUEUE_PI/CMP_REQUEUE_PI "
                             "(condition variables on PI mutexes) are not supported: ENOSYS")
    raise SyscallError(errno.ENOSYS)


ENTRIES = (
    Entry("set_tid_address", set_tid_address, SUPPORTED),
    Entry("set_robust_list", set_robust_list, SUPPORTED, "walked at thread exit and execve"),
    Entry("get_robust_list", get_robust_list, SUPPORTED, "any thread of the sandbox"),
    Entry("rseq", None, ERROR, "glibc falls back when rseq is unavailable", errno.ENOSYS),
    Entry("futex", futex, PARTIAL,
          "WAIT/WAKE(_BITSET), (CMP_)REQUEUE, WAKE_OP, LOCK_PI(2)/TRYLOCK_PI/UNLOCK_PI (no "
          "priority boost); private and shared keys; WAIT_REQUEUE_PI/CMP_REQUEUE_PI ENOSYS"),
)
