"""Miscellaneous process syscalls: randomness, resource limits, priorities, prctl, sysinfo (scheduling: sys_sched.py)."""
from __future__ import annotations

import errno
import os
import time as _time
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import structs
from kvmbox.abi.signals import NSIG
from kvmbox.errors import SyscallError
from kvmbox.abi.capability import CAP_SYS_RESOURCE
from kvmbox.sentry import caps
from kvmbox.sentry.rlimits import NR_OPEN, RLIMIT_NOFILE
from kvmbox.sentry.syscalls import sys_caps
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.task import TASK_COMM_LEN

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4
GETRANDOM_MAX = 32 << 20          # one call returns at most this many bytes
_CHUNK = 1 << 20
RLIM_NLIMITS = 16
RLIMIT_CPU = 0
# prctl options handled.
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_NAME, PR_GET_NAME, PR_GET_SECCOMP = 15, 16, 21
PR_GET_TIMERSLACK, PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 30, 36, 37
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
DEFAULT_TIMERSLACK_NS = 50_000


def getrandom(t: "Task", a: Args) -> int:
    """Implements Linux syscall getrandom(2)."""
    buf, count, flags = a[0], a[1], u32(a[2])
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE):
        raise SyscallError(errno.EINVAL)
    if flags & (GRND_RANDOM | GRND_INSECURE) == GRND_RANDOM | GRND_INSECURE:
        raise SyscallError(errno.EINVAL)
    count = min(count, GETRANDOM_MAX)
    done = 0
    while done < count:
        n = min(_CHUNK, count - done)
        try:
            t.mm.copy_out(buf + done, os.urandom(n))
        except SyscallError:
            if done == 0:
                raise
            break             # like Linux: a fault after some bytes returns the short count
        done += n
    return done


def _check_resource(resource: int) -> None:
    if not 0 <= resource < RLIM_NLIMITS:
        raise SyscallError(errno.EINVAL)


def _set_rlimit(t: "Task", resource: int, soft: int, hard: int) -> None:
    """Apply a new limit with Linux's checks (a hard limit goes up only with CAP_SYS_RESOURCE)."""
    if soft > hard:
        raise SyscallError(errno.EINVAL)
    if hard > t.rlimits[resource][1] and not caps.capable(t.creds, CAP_SYS_RESOURCE):
        raise SyscallError(errno.EPERM)
    if resource == RLIMIT_NOFILE and hard > NR_OPEN:
        raise SyscallError(errno.EPERM)
    t.rlimits[resource] = [soft, hard]
    if resource == RLIMIT_CPU:
        from kvmbox.sentry.posixtimers import timers_of
        timers_of(t).rlimit_changed()        # SIGXCPU / SIGKILL on the new limits


def prlimit64(t: "Task", a: Args) -> int:
    """Implements Linux syscall prlimit64(2)."""
    pid, resource, new, old = s32(a[0]), u32(a[1]), a[2], a[3]
    new_limit = structs.RLIMIT.unpack(t.mm.copy_in(new, structs.RLIMIT.size)) if new else None
    target = t
    if pid not in (0, t.tgid):
        other = t.kernel.pids.task(pid) if pid > 0 else None
        if other is None or other.killed or other.done:
            raise SyscallError(errno.ESRCH)
        target = other                    # a thread of the sandbox (same credentials)
    _check_resource(resource)
    before = tuple(target.rlimits[resource])
    if new_limit is not None:
        _set_rlimit(target, resource, *new_limit)
    if old:
        t.mm.copy_out(old, structs.RLIMIT.pack(*before))
    return 0


def getrlimit(t: "Task", a: Args) -> int:
    """Implements Linux syscall getrlimit(2)."""
    resource, rlim = u32(a[0]), a[1]
    _check_resource(resource)
    t.mm.copy_out(rlim, structs.RLIMIT.pack(*t.rlimits[resource]))
    return 0


def setrlimit(t: "Task", a: Args) -> int:
    """Implements Linux syscall setrlimit(2)."""
    resource, rlim = u32(a[0]), a[1]
    soft, hard = structs.RLIMIT.unpack(t.mm.copy_in(rlim, structs.RLIMIT.size))
    _check_resource(resource)
    _set_rlimit(t, resource, soft, hard)
    return 0


PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2


def _prio_target(t: "Task", which: int, who: int) -> None:
    """The one task there is must be the one named (ESRCH otherwise)."""
    if which == PRIO_PROCESS:
        ok = who in (0, t.tgid)
    elif which == PRIO_PGRP:
        ok = who in (0, t.pgid)
    elif which == PRIO_USER:
        ok = who in (0, t.creds.uid)
    else:
        raise SyscallError(errno.EINVAL)
    if not ok:
        raise SyscallError(errno.ESRCH)


def getpriority(t: "Task", a: Args) -> int:
    """Implements Linux syscall getpriority(2)."""
    _prio_target(t, s32(a[0]), s32(a[1]))
    return 20 - t.nice                   # the raw call returns 40..1; libc turns it into the nice value


def setpriority(t: "Task", a: Args) -> int:
    """Implements Linux syscall setpriority(2)."""
    _prio_target(t, s32(a[0]), s32(a[1]))
    nice = min(max(s32(a[2]), -20), 19)
    if nice < t.nice and t.creds.euid != 0:
        raise SyscallError(errno.EACCES)  # raising priority needs CAP_SYS_NICE (RLIMIT_NICE 0)
    t.nice = nice
    return 0


def _total_ram(t: "Task") -> int:
    limit = t.kernel.memory_limit     # the sandbox's memory limit when it has one
    host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(limit, host) if limit else host


def sysinfo(t: "Task", a: Args) -> int:
    """Implements Linux syscall sysinfo(2)."""
    info = a[0]
    uptime = max(0, _time.monotonic_ns() - t.kernel.boot_monotonic_ns) // 1_000_000_000
    total = _total_ram(t)
    data = structs.SYSINFO.pack(uptime, 0, 0, 0, total, total // 2, 0, 0, 0, 0, 1, 0, 0, 0, 1)
    t.mm.copy_out(info, data)
    return 0


def _prctl_set_name(t: "Task", addr: int) -> int:
    try:
        name = t.mm.read_cstring(addr, TASK_COMM_LEN)
    except SyscallError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        name = t.mm.copy_in(addr, TASK_COMM_LEN - 1)
    t.comm = bytes(name[:TASK_COMM_LEN - 1])
    return 0


def prctl(t: "Task", a: Args) -> int:
    """Implements Linux syscall prctl(2)."""
    option, arg2, arg3, arg4, arg5 = s32(a[0]), a[1], a[2], a[3], a[4]
    if option == PR_SET_NAME:
        return _prctl_set_name(t, arg2)
    if option == PR_GET_NAME:
        t.mm.copy_out(arg2, t.comm.ljust(TASK_COMM_LEN, b"\0"))
        return 0
    if option == PR_GET_DUMPABLE:
        return getattr(t, "dumpable", 1)
    if option == PR_SET_DUMPABLE:
        if arg2 not in (0, 1):
            raise SyscallError(errno.EINVAL)
        t.dumpable = arg2
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= arg2 <= NSIG:
            raise SyscallError(errno.EINVAL)
        t.pdeathsig = arg2
        return 0
    if option == PR_GET_PDEATHSIG:
        t.mm.copy_out(arg2, structs.S32.pack(t.pdeathsig))
        return 0
    if option == PR_SET_NO_NEW_PRIVS:
        if arg2 != 1 or arg3 or arg4 or arg5:
            raise SyscallError(errno.EINVAL)
        t.no_new_privs = 1
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        if arg2 or arg3 or arg4 or arg5:
            raise SyscallError(errno.EINVAL)
        return getattr(t, "no_new_privs", 0)
    if option == PR_GET_SECCOMP:
        return 0
    if option in sys_caps.PRCTL_OPTIONS:
        return sys_caps.cap_prctl(t, option, arg2, arg3, arg4, arg5)
    if option == PR_GET_TIMERSLACK:
        return DEFAULT_TIMERSLACK_NS
    if option == PR_SET_CHILD_SUBREAPER:
        t.tg.subreaper = bool(arg2)
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        t.mm.copy_out(arg2, structs.S32.pack(int(t.tg.subreaper)))
        return 0
    raise SyscallError(errno.EINVAL)


ENTRIES = (
    Entry("getrandom", getrandom, SUPPORTED, "host os.urandom; at most 32 MiB per call"),
    Entry("prlimit64", prlimit64, PARTIAL, "any process of the sandbox; enforced: CPU, FSIZE, STACK, "
          "NOFILE, AS; the rest are recorded"),
    Entry("getrlimit", getrlimit, SUPPORTED),
    Entry("setrlimit", setrlimit, PARTIAL, "as prlimit64"),
    Entry("getpriority", getpriority, SUPPORTED, "the one task's nice value"),
    Entry("setpriority", setpriority, PARTIAL, "recorded (and shown in /proc); the host scheduler "
          "does not see it"),
    Entry("sysinfo", sysinfo, PARTIAL, "plausible values: no load, half the memory free"),
    Entry("prctl", prctl, PARTIAL, "names, dumpable, pdeathsig, child subreaper, no_new_privs, "
          "subreaper (recorded), capability bounding/ambient sets, keepcaps; others EINVAL"),
)
