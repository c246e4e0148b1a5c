"""Scheduling syscalls: CPU affinity, yield, getcpu, policies and priorities, membarrier.

The guest's CPUs are the host CPUs the sandbox may use (Platform.allowed_cpus),
numbered 0..n-1 (docs/machine.md).  Each thread keeps its own affinity mask
(`Task.affinity`, a bit per guest CPU; a new thread or process inherits its
creator's), which sched_getaffinity reads back and getcpu respects; the host
scheduler does not see it (the Sentry's host threads keep their own).
Policies and priorities are recorded per thread and read back, as the host
would show them; they change nothing in how the host schedules the guest.

membarrier: every thread of the process that runs guest code is interrupted
and waited for until it has left guest code (a KVM exit and a ptrace stop are
both serializing), which is what MEMBARRIER_CMD_PRIVATE_EXPEDITED promises;
the GLOBAL commands do the same for every process of the sandbox.  Commands,
registrations and errors are Linux 6.x's (QUERY reports all ten).  Registrations
belong to the address space (MemoryManager.membarrier_registered), as Linux's
mm->membarrier_state: a forked child inherits them, execve starts with none.
"""
from __future__ import annotations

import errno
import os
import time
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import structs
from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
SCHED_RESET_ON_FORK = 0x40000000
_RT = (SCHED_FIFO, SCHED_RR)
RR_INTERVAL_NS = 100_000_000             # sched_rr_timeslice_ms: 100 ms

MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL = 1 << 0
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2
MEMBARRIER_CMD_PRIVATE_EXPEDITED = 1 << 3
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 1 << 4
MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 5
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 6
MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ = 1 << 7
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ = 1 << 8
MEMBARRIER_CMD_GET_REGISTRATIONS = 1 << 9
MEMBARRIER_CMD_FLAG_CPU = 1 << 0
_SUPPORTED_CMDS = (1 << 10) - 1          # QUERY reports all ten, as Linux 6.x does
_REGISTER = {MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: MEMBARRIER_CMD_GLOBAL_EXPEDITED,
             MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: MEMBARRIER_CMD_PRIVATE_EXPEDITED,
             MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE,
             MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ: MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ}
_NEEDS = {v: k for k, v in _REGISTER.items() if v != MEMBARRIER_CMD_GLOBAL_EXPEDITED}
_PRIVATE_FLAVOURS = (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
                     | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ)


# --- affinity --------------------------------------------------------------------------
def _cpumask_size(t: "Task") -> int:
    """Bytes in the kernel's cpumask: whole longs covering cpu_count bits."""
    return (t.kernel.cpu_count + 63) // 64 * 8


def _all_cpus(t: "Task") -> int:
    return (1 << t.kernel.cpu_count) - 1


def affinity(t: "Task") -> int:
    """The thread's affinity mask (a bit per guest CPU)."""
    mask = getattr(t, "affinity", 0)
    return mask if mask else _all_cpus(t)


def _thread(t: "Task", pid: int) -> "Task":
    """The thread `pid` names (0: the caller); any thread of the sandbox, else ESRCH (a
    negative pid too: the affinity calls do not check it first, as the others do)."""
    if pid == 0:
        return t
    target = t.kernel.pids.task(pid) if pid > 0 else None
    if target is None or target.done:
        raise SyscallError(errno.ESRCH)
    return target


def sched_getaffinity(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_getaffinity(2)."""
    pid, size, mask = s32(a[0]), u32(a[1]), a[2]
    if size * 8 < t.kernel.cpu_count or size & 7:
        raise SyscallError(errno.EINVAL)
    target = _thread(t, pid)
    n = min(size, _cpumask_size(t))
    t.mm.copy_out(mask, affinity(target).to_bytes(n, "little"))
    return n


def sched_setaffinity(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_setaffinity(2)."""
    pid, size, mask = s32(a[0]), u32(a[1]), a[2]
    data = t.mm.copy_in(mask, min(size, _cpumask_size(t)))
    target = _thread(t, pid)
    new = int.from_bytes(data, "little") & _all_cpus(t)
    if not new:
        raise SyscallError(errno.EINVAL)        # no CPU of the sandbox in the set
    if new != _all_cpus(t):
        t.kernel.vdso.timekeeper.trap_getcpu()  # the vDSO's constant CPU 0 may be wrong now
    target.affinity = new
    return 0


def sched_yield(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_yield(2)."""
    bkl = t.kernel.bkl
    if not bkl.owned():
        os.sched_yield()
        return 0
    bkl.release()                              # let another thread's handler in first
    try:
        os.sched_yield()
    finally:
        bkl.acquire()
    return 0


def getcpu(t: "Task", a: Args) -> int:
    """Implements Linux syscall getcpu(2)."""
    cpu_addr, node_addr = a[0], a[1]
    if cpu_addr:
        t.mm.copy_out(cpu_addr, structs.U32.pack(current_cpu(t)))
    if node_addr:
        t.mm.copy_out(node_addr, structs.U32.pack(0))
    return 0


def current_cpu(t: "Task") -> int:
    """The guest CPU the thread runs on: the host CPU its host thread is on, in the guest's
    numbering, if the thread's mask allows it; else the lowest CPU the mask allows."""
    cpus = sorted(t.kernel.platform.allowed_cpus())
    mask = affinity(t)
    try:
        here = cpus.index(os.sched_getcpu()) if hasattr(os, "sched_getcpu") else -1
    except ValueError:
        here = -1
    if here >= 0 and mask >> here & 1:
        return here
    return (mask & -mask).bit_length() - 1


# --- policies and priorities -------------------------------------------------------------
def _policy(t: "Task") -> tuple[int, int]:
    return getattr(t, "sched_policy", (SCHED_OTHER, 0))


def _check_param(t: "Task", policy: int, prio: int) -> None:
    if policy not in (SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE):
        raise SyscallError(errno.EINVAL)
    if (policy in _RT) != (1 <= prio <= 99) and not (policy not in _RT and prio == 0):
        raise SyscallError(errno.EINVAL)
    if policy in _RT and t.creds.euid != 0:
        raise SyscallError(errno.EPERM)         # real-time needs CAP_SYS_NICE (RLIMIT_RTPRIO 0)


def sched_setscheduler(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_setscheduler(2)."""
    pid, policy, param = s32(a[0]), s32(a[1]), a[2]
    if pid < 0 or not param:
        raise SyscallError(errno.EINVAL)
    prio = s32(structs.U32.unpack(t.mm.copy_in(param, 4))[0])
    target = _thread(t, pid)
    policy &= ~SCHED_RESET_ON_FORK
    _check_param(t, policy, prio)
    target.sched_policy = (policy, prio)
    return 0


def sched_getscheduler(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_getscheduler(2)."""
    pid = s32(a[0])
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    return _policy(_thread(t, pid))[0]


def sched_setparam(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_setparam(2)."""
    pid, param = s32(a[0]), a[1]
    if pid < 0 or not param:
        raise SyscallError(errno.EINVAL)
    prio = s32(structs.U32.unpack(t.mm.copy_in(param, 4))[0])
    target = _thread(t, pid)
    policy = _policy(target)[0]
    _check_param(t, policy, prio)
    target.sched_policy = (policy, prio)
    return 0


def sched_getparam(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_getparam(2)."""
    pid, param = s32(a[0]), a[1]
    if pid < 0 or not param:
        raise SyscallError(errno.EINVAL)
    target = _thread(t, pid)
    t.mm.copy_out(param, structs.U32.pack(_policy(target)[1]))
    return 0


def sched_get_priority_max(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_get_priority_max(2)."""
    policy = s32(a[0])
    if policy in _RT:
        return 99
    if policy in (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE):
        return 0
    raise SyscallError(errno.EINVAL)


def sched_get_priority_min(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_get_priority_min(2)."""
    policy = s32(a[0])
    if policy in _RT:
        return 1
    if policy in (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE):
        return 0
    raise SyscallError(errno.EINVAL)


def sched_rr_get_interval(t: "Task", a: Args) -> int:
    """Implements Linux syscall sched_rr_get_interval(2)."""
    pid, ts = s32(a[0]), a[1]
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    target = _thread(t, pid)
    ns = RR_INTERVAL_NS if _policy(target)[0] == SCHED_RR else 0
    t.mm.copy_out(ts, structs.TIMESPEC.pack(*divmod(ns, 1_000_000_000)))
    return 0


# --- membarrier --------------------------------------------------------------------------
def _barrier(t: "Task", tasks) -> None:
    """Every one of `tasks` (but t) that runs guest code leaves it once: interrupted, then
    waited for until it has trapped into the Sentry (a KVM exit and a ptrace stop are both
    serializing).  Tasks sleeping in the Sentry are past a barrier already."""
    others = [o for o in tasks if o is not t and not o.done and not o.blocked]
    for o in others:
        o.ctx.interrupt()
    deadline = time.monotonic() + 2.0
    bkl = t.kernel.bkl
    while others and time.monotonic() < deadline:
        others = [o for o in others if o.ctx.in_guest()]
        if others:
            bkl.release()
            try:
                time.sleep(0.0002)
            finally:
                bkl.acquire()


def membarrier(t: "Task", a: Args) -> int:
    """Implements Linux syscall membarrier(2)."""
    cmd, flags = s32(a[0]), u32(a[1])
    if flags & ~MEMBARRIER_CMD_FLAG_CPU or (flags and cmd != MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ):
        raise SyscallError(errno.EINVAL)
    mm = t.mm
    regs = mm.membarrier_registered
    if cmd == MEMBARRIER_CMD_QUERY:
        return _SUPPORTED_CMDS
    if cmd == MEMBARRIER_CMD_GET_REGISTRATIONS:
        if regs & _PRIVATE_FLAVOURS:      # Linux marks these private-expedited too (but PRIVATE_
            regs |= MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED   # EXPEDITED itself still gives EPERM)
        return regs
    if cmd in _REGISTER:
        mm.membarrier_registered = regs | cmd
        return 0
    if cmd in (MEMBARRIER_CMD_GLOBAL, MEMBARRIER_CMD_GLOBAL_EXPEDITED):
        _barrier(t, t.kernel.pids.live_tasks())
        return 0
    if cmd in _NEEDS:
        if not regs & _NEEDS[cmd]:
            raise SyscallError(errno.EPERM)
        # The RSEQ flavour also restarts rseq critical sections; with rseq refused (ENOSYS)
        # there are none, so it is the plain barrier.
        _barrier(t, t.tg.live_threads())
        return 0
    raise SyscallError(errno.EINVAL)


ENTRIES = (
    Entry("sched_getaffinity", sched_getaffinity, SUPPORTED, "per thread; the sandbox's CPUs"),
    Entry("sched_setaffinity", sched_setaffinity, PARTIAL, "per thread, a subset of the sandbox's "
          "CPUs; recorded and read back (the host scheduler does not see it)"),
    Entry("sched_yield", sched_yield, SUPPORTED),
    Entry("getcpu", getcpu, SUPPORTED, "the host CPU the thread's host thread is on, within its "
          "affinity; node 0"),
    Entry("sched_setscheduler", sched_setscheduler, PARTIAL, "recorded per thread (real-time "
          "policies need euid 0); the host does not see it"),
    Entry("sched_getscheduler", sched_getscheduler, SUPPORTED),
    Entry("sched_setparam", sched_setparam, PARTIAL, "recorded per thread"),
    Entry("sched_getparam", sched_getparam, SUPPORTED),
    Entry("sched_get_priority_max", sched_get_priority_max, SUPPORTED),
    Entry("sched_get_priority_min", sched_get_priority_min, SUPPORTED),
    Entry("sched_rr_get_interval", sched_rr_get_interval, SUPPORTED, "100 ms for SCHED_RR, else 0"),
    Entry("membarrier", membarrier, SUPPORTED, "every command: the threads concerned are taken out "
          "of guest code once; the RSEQ one is a plain barrier (rseq is refused, so no sections)"),
)
