"""The non-I/O handlers (identity, time, misc, signal, thread) against a fake task and memory."""
from __future__ import annotations

import errno
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from kvmbox.sentry.threadgroup import SignalHandlers
from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls import (sys_dir as D, sys_identity as I, sys_misc as M,
                                    sys_signal as S, sys_thread as TH, sys_time as TM)
from kvmbox.sentry.futex import FutexTable
from kvmbox.sentry.waiter import SentryLock
from kvmbox.sentry.pidtable import PidTable
from kvmbox.sentry.threadgroup import ChildTimes
from kvmbox.sentry.syscalls import sys_pgrp as P
from kvmbox.sentry.syscalls import sys_sched as SCH
from kvmbox.sentry.task import RLIM_INFINITY, Credentials, default_rlimits
from kvmbox.sentry.cputime import TaskCpu


from kvmbox.sentry.signals.deliver import deliverable_mask
from kvmbox.sentry.waiter import Stopped, Waker

BASE = 0x40_0000
SIZE = 0x4000
BAD = 0xDEAD_0000          # never mapped
EDGE = BASE + SIZE - 4     # 4 valid bytes, then unmapped


class FakeMM:
    """A bytearray at [BASE, BASE+SIZE); anything outside faults."""

    def __init__(self) -> None:
        self.mem = bytearray(SIZE)
        # One private anonymous mapping over the buffer (what a shared futex key looks up).
        self.vmas = SimpleNamespace(find=lambda addr: SimpleNamespace(flags=0x22)
                                    if BASE <= addr < BASE + SIZE else None)

    def _off(self, addr: int, n: int) -> int:
        if addr < BASE or addr + n > BASE + SIZE or n < 0:
            raise SyscallError(errno.EFAULT)
        return addr - BASE

    def copy_in(self, addr: int, n: int) -> bytes:
        o = self._off(addr, n)
        return bytes(self.mem[o:o + n])

    def copy_out(self, addr: int, data: bytes) -> None:
        o = self._off(addr, len(data))
        self.mem[o:o + len(data)] = data

    def read_cstring(self, addr: int, maxlen: int) -> bytes:
        o = self._off(addr, 1)
        chunk = bytes(self.mem[o:o + maxlen])
        end = chunk.find(b"\0")
        if end < 0:
            raise SyscallError(errno.ENAMETOOLONG if len(chunk) == maxlen else errno.EFAULT)
        return chunk[:end]

    def put(self, addr: int, data: bytes) -> int:
        self.copy_out(addr, data)
        return addr


class FakeKernel:
    hostname = "box"
    release = "6.8.0-kvmbox"
    version = "#1 SMP kvmbox"
    cpu_count = 2
    sentry_pid = 7
    memory_limit = 64 << 20       # what sysinfo reports as totalram

    def __init__(self) -> None:
        self.boot_monotonic_ns = time.monotonic_ns() - 5_000_000_000
        self.stopping = False          # what waiter.block checks (Kernel.stopping)
        self.pids = PidTable(None)     # no other process
        self.futexes = FutexTable()
        self.getcpu_traps = False      # the vDSO's getcpu was told to take the syscall
        self.vdso = SimpleNamespace(timekeeper=SimpleNamespace(
            trap_getcpu=lambda: setattr(self, "getcpu_traps", True)))
        self.bkl = SentryLock()
        self.platform = SimpleNamespace(allowed_cpus=lambda: frozenset({0, 1}))

    def clock_ns(self, clock: int) -> int:
        return time.clock_gettime_ns(clock)

    def notice(self, msg: str) -> None:
        pass


class FakeCtx:
    """Registers of a task stopped in a syscall (the stack far from any test address)."""

    def get_regs(self) -> dict[str, int]:
        return {"rsp": 0x7FFF_0000_0000}


class FakeTask:
    def __init__(self) -> None:
        self.kernel = FakeKernel()
        self.mm = FakeMM()
        self.tid = self.tgid = self.pgid = self.sid = 100
        self.tg = SimpleNamespace(tgid=100, pgid=100, sid=100, children_times=ChildTimes(),
                                  times=ChildTimes(), shared_pending=[], tasks=[self])
        self.ppid = 7
        self.creds = Credentials(uid=1000, gid=1001, euid=1000, egid=1001)
        self.exe_path = "/usr/bin/app"
        self.comm = b"app"           # as Task sets it from the path execve ran
        self.fs = SimpleNamespace(cwd=SimpleNamespace(path="/home/u"), umask=0o022)
        self.rlimits = default_rlimits(None)
        self.sigmask = 0
        self.sighand = SignalHandlers()
        self.sigactions = self.sighand.actions
        self.pending_signals: list[tuple[int, int, int]] = []
        self.altstack = (0, 2, 0)
        self.saved_sigmask = None
        self.fault_regs = (0, 0, 0)
        self.ctx = FakeCtx()
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.exited = None
        self.done = False
        self.sig_lock = threading.Lock()
        self.waker = Waker()
        self.blocked = False
        self.signal_waiters = None
        self.timers = None
        self.cpu = TaskCpu(None)

    def signal_pending(self) -> bool:
        return bool(deliverable_mask(self))


@pytest.fixture
def t() -> FakeTask:
    return FakeTask()


def A(*args: int) -> tuple[int, ...]:
    """Raw argument registers: negatives as the u64 the guest would pass."""
    return tuple(x & 0xFFFF_FFFF_FFFF_FFFF for x in args + (0,) * (6 - len(args)))


def fails(err: int, fn, t, *args: int) -> None:
    with pytest.raises(SyscallError) as ei:
        fn(t, A(*args))
    assert ei.value.errno == err, (errno.errorcode.get(ei.value.errno), errno.errorcode[err])


# ---- identity -------------------------------------------------------------------------

def test_ids(t):
    assert (I.getpid(t, A()), I.gettid(t, A()), I.getppid(t, A())) == (100, 100, 7)
    assert (I.getuid(t, A()), I.geteuid(t, A()), I.getgid(t, A()), I.getegid(t, A())) == \
        (1000, 1000, 1001, 1001)
    assert P.getpgid(t, A(0)) == 100 and P.getsid(t, A(0)) == 100
    fails(errno.ESRCH, P.getpgid, t, 55)
    assert I.getgroups(t, A(0, 0)) == 0
    fails(errno.EINVAL, I.getgroups, t, -1, 0)


def test_getresuid_writes_three_ids_and_faults(t):
    assert I.getresuid(t, A(BASE, BASE + 4, BASE + 8)) == 0
    assert struct.unpack("<3I", t.mm.copy_in(BASE, 12)) == (1000, 1000, 1000)
    assert I.getresgid(t, A(BASE, BASE + 4, BASE + 8)) == 0
    assert struct.unpack("<3I", t.mm.copy_in(BASE, 12)) == (1001, 1001, 1001)
    fails(errno.EFAULT, I.getresuid, t, BASE, BAD, BASE)


def test_set_ids_only_when_unchanged(t):
    assert I.setuid(t, A(1000)) == 0
    fails(errno.EPERM, I.setuid, t, 0)
    assert I.setresuid(t, A(-1, 1000, -1)) == 0
    fails(errno.EPERM, I.setresgid, t, -1, -1, 0)
    assert I.setreuid(t, A(-1, -1)) == 0
    fails(errno.EPERM, I.setregid, t, 5, -1)
    assert I.setgroups(t, A(0, 0)) == 0
    fails(errno.EPERM, I.setgroups, t, 1, BASE)
    assert I.setfsuid(t, A(0)) == 1000


def test_uname(t):
    assert I.uname(t, A(BASE)) == 0
    fields = [t.mm.copy_in(BASE + 65 * i, 65).split(b"\0")[0].decode() for i in range(6)]
    assert fields == ["Linux", "box", "6.8.0-kvmbox", "#1 SMP kvmbox", "x86_64", "(none)"]
    fails(errno.EFAULT, I.uname, t, EDGE)


# ---- time -----------------------------------------------------------------------------

def _timespec(t, addr: int) -> float:
    sec, nsec = struct.unpack("<qq", t.mm.copy_in(addr, 16))
    assert 0 <= nsec < 1_000_000_000
    return sec + nsec / 1e9


def test_clock_gettime(t):
    before = time.time()
    assert TM.clock_gettime(t, A(0, BASE)) == 0
    assert before - 0.01 <= _timespec(t, BASE) <= time.time() + 0.01
    for clock in (1, 4, 5, 6, 7, 2, 3):
        assert TM.clock_gettime(t, A(clock, BASE)) == 0
    mono = time.monotonic()
    TM.clock_gettime(t, A(1, BASE))
    assert abs(_timespec(t, BASE) - mono) < 0.05
    for bad in (-1, 10, 12, 100):
        fails(errno.EINVAL, TM.clock_gettime, t, bad, BASE)
    fails(errno.EFAULT, TM.clock_gettime, t, 0, BAD)


def test_clock_getres(t):
    assert TM.clock_getres(t, A(1, BASE)) == 0
    assert struct.unpack("<qq", t.mm.copy_in(BASE, 16)) == (0, 1)
    assert TM.clock_getres(t, A(1, 0)) == 0
    fails(errno.EINVAL, TM.clock_getres, t, 99, BASE)


def test_gettimeofday_and_time(t):
    assert TM.gettimeofday(t, A(BASE, 0)) == 0
    sec, usec = struct.unpack("<qq", t.mm.copy_in(BASE, 16))
    assert abs(sec + usec / 1e6 - time.time()) < 0.05 and 0 <= usec < 1_000_000
    assert TM.gettimeofday(t, A(0, BASE + 32)) == 0
    assert t.mm.copy_in(BASE + 32, 8) == bytes(8)
    fails(errno.EFAULT, TM.gettimeofday, t, BAD, 0)
    now = TM.time_(t, A(0))
    assert abs(now - time.time()) <= 1
    assert TM.time_(t, A(BASE)) == struct.unpack("<q", t.mm.copy_in(BASE, 8))[0]
    fails(errno.EFAULT, TM.time_, t, BAD)


def test_nanosleep_sleeps_for_the_duration(t):
    t.mm.put(BASE, struct.pack("<qq", 0, 120_000_000))
    start = time.monotonic()
    assert TM.nanosleep(t, A(BASE, 0)) == 0
    assert 0.11 <= time.monotonic() - start < 1.0


@pytest.mark.parametrize("sec,nsec", [(0, 1_000_000_000), (0, -1), (-1, 0)])
def test_nanosleep_rejects_bad_timespec(t, sec, nsec):
    t.mm.put(BASE, struct.pack("<qq", sec, nsec))
    fails(errno.EINVAL, TM.nanosleep, t, BASE, 0)


def test_nanosleep_faults_and_kill(t):
    fails(errno.EFAULT, TM.nanosleep, t, BAD, 0)
    t.mm.put(BASE, struct.pack("<qq", 100, 0))
    t.kernel.stopping = True
    start = time.monotonic()
    with pytest.raises(Stopped):
        TM.nanosleep(t, A(BASE, 0))
    assert time.monotonic() - start < 1


def test_clock_nanosleep_relative_and_absolute(t):
    t.mm.put(BASE, struct.pack("<qq", 0, 50_000_000))
    start = time.monotonic()
    assert TM.clock_nanosleep(t, A(1, 0, BASE, 0)) == 0
    assert time.monotonic() - start >= 0.05
    target = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 80_000_000
    t.mm.put(BASE, struct.pack("<qq", *divmod(target, 1_000_000_000)))
    assert TM.clock_nanosleep(t, A(1, TM.TIMER_ABSTIME, BASE, 0)) == 0
    assert time.clock_gettime_ns(time.CLOCK_MONOTONIC) >= target
    t.mm.put(BASE, struct.pack("<qq", 1, 0))                  # long past: returns at once
    start = time.monotonic()
    assert TM.clock_nanosleep(t, A(0, TM.TIMER_ABSTIME, BASE, 0)) == 0
    assert time.monotonic() - start < 0.05
    for clock in (3, 4, 5, 6, 8, 9):          # errnos observed natively (no RTC)
        fails(errno.EOPNOTSUPP, TM.clock_nanosleep, t, clock, 0, BASE, 0)
    for clock in (10, 77, -1, -2):            # -2: the caller's own thread CPU clock
        fails(errno.EINVAL, TM.clock_nanosleep, t, clock, 0, BASE, 0)
    t.mm.put(BASE, struct.pack("<qq", 0, 2_000_000_000))
    fails(errno.EINVAL, TM.clock_nanosleep, t, 1, 0, BASE, 0)


def test_times(t):
    assert TM.times(t, A(0)) > 0
    assert TM.times(t, A(BASE)) > 0
    fails(errno.EFAULT, TM.times, t, BAD)


# ---- misc -----------------------------------------------------------------------------

def test_getrandom(t):
    assert M.getrandom(t, A(BASE, 64, 0)) == 64
    assert t.mm.copy_in(BASE, 64) != bytes(64)
    assert M.getrandom(t, A(BASE, 16, M.GRND_NONBLOCK | M.GRND_INSECURE)) == 16
    assert M.getrandom(t, A(BAD, 0, 0)) == 0
    fails(errno.EINVAL, M.getrandom, t, BASE, 8, 8)
    fails(errno.EINVAL, M.getrandom, t, BASE, 8, M.GRND_RANDOM | M.GRND_INSECURE)
    fails(errno.EFAULT, M.getrandom, t, BAD, 8, 0)


def test_getrandom_caps_one_call(t, monkeypatch):
    written = []
    monkeypatch.setattr(t.mm, "copy_out", lambda addr, data: written.append(len(data)))
    assert M.getrandom(t, A(BASE, 1 << 40, 0)) == 32 << 20 == sum(written)


def _rl(t, addr: int) -> tuple[int, int]:
    return struct.unpack("<QQ", t.mm.copy_in(addr, 16))


def test_rlimits(t):
    assert M.getrlimit(t, A(7, BASE)) == 0
    assert _rl(t, BASE) == (1024, 1024)
    fails(errno.EINVAL, M.getrlimit, t, 16, BASE)
    fails(errno.EFAULT, M.getrlimit, t, 7, BAD)
    t.mm.put(BASE, struct.pack("<QQ", 256, 512))
    assert M.setrlimit(t, A(7, BASE)) == 0 and t.rlimits[7] == [256, 512]
    t.creds.cap_effective &= ~(1 << 24)                            # no CAP_SYS_RESOURCE
    t.mm.put(BASE, struct.pack("<QQ", 256, 1024))                 # raise hard: EPERM
    fails(errno.EPERM, M.setrlimit, t, 7, BASE)
    t.mm.put(BASE, struct.pack("<QQ", 600, 512))                  # soft > hard
    fails(errno.EINVAL, M.setrlimit, t, 7, BASE)
    assert t.rlimits[7] == [256, 512]
    t.creds.cap_effective |= 1 << 24                               # with it the hard limit goes up
    t.mm.put(BASE, struct.pack("<QQ", 256, 1024))
    assert M.setrlimit(t, A(7, BASE)) == 0 and t.rlimits[7] == [256, 1024]
    t.mm.put(BASE, struct.pack("<QQ", 256, (1 << 20) + 1))        # but never past fs.nr_open
    fails(errno.EPERM, M.setrlimit, t, 7, BASE)


def test_prlimit64(t):
    t.mm.put(BASE, struct.pack("<QQ", 1 << 20, RLIM_INFINITY))
    assert M.prlimit64(t, A(0, 3, BASE, BASE + 16)) == 0
    assert _rl(t, BASE + 16) == (8 << 20, RLIM_INFINITY)          # the old value
    assert t.rlimits[3] == [1 << 20, RLIM_INFINITY]
    assert M.prlimit64(t, A(100, 3, 0, BASE + 32)) == 0
    assert _rl(t, BASE + 32) == (1 << 20, RLIM_INFINITY)
    fails(errno.ESRCH, M.prlimit64, t, 555, 3, 0, BASE)
    fails(errno.EINVAL, M.prlimit64, t, 0, 99, 0, BASE)
    fails(errno.EFAULT, M.prlimit64, t, 0, 3, BAD, 0)
    t.mm.put(BASE, struct.pack("<QQ", 5, 4))
    fails(errno.EINVAL, M.prlimit64, t, 0, 3, BASE, 0)


def test_sched_affinity(t):
    assert SCH.sched_getaffinity(t, A(0, 128, BASE)) == 8
    assert t.mm.copy_in(BASE, 8) == (0b11).to_bytes(8, "little")
    fails(errno.EINVAL, SCH.sched_getaffinity, t, 0, 4, BASE)
    fails(errno.EINVAL, SCH.sched_getaffinity, t, 0, 12, BASE)
    fails(errno.ESRCH, SCH.sched_getaffinity, t, 9999, 8, BASE)
    fails(errno.EFAULT, SCH.sched_getaffinity, t, 0, 8, BAD)
    t.mm.put(BASE, (0b11).to_bytes(8, "little"))
    assert SCH.sched_setaffinity(t, A(0, 8, BASE)) == 0 and not t.kernel.getcpu_traps
    t.mm.put(BASE, (0b1).to_bytes(8, "little"))
    assert SCH.sched_setaffinity(t, A(0, 8, BASE)) == 0 and t.kernel.getcpu_traps
    t.mm.put(BASE, bytes(8))
    assert SCH.sched_getaffinity(t, A(0, 8, BASE)) == 8 and t.mm.copy_in(BASE, 8)[0] == 0b1
    t.mm.put(BASE, (0b100).to_bytes(8, "little"))                # only a CPU we lack
    fails(errno.EINVAL, SCH.sched_setaffinity, t, 0, 8, BASE)
    assert SCH.sched_yield(t, A()) == 0


def test_getcwd(t):
    assert D.getcwd(t, A(BASE, 100)) == len("/home/u") + 1
    assert t.mm.copy_in(BASE, 8) == b"/home/u\0"
    assert D.getcwd(t, A(BASE, 8)) == 8
    fails(errno.ERANGE, D.getcwd, t, BASE, 7)
    fails(errno.EFAULT, D.getcwd, t, BAD, 100)


# readlink now goes through the VFS: tests/programs/stat.c and files.c cover it.


def test_umask_getcpu_sysinfo(t):
    assert D.umask(t, A(0o7777)) == 0o022 and D.umask(t, A(0)) == 0o777
    t.mm.put(BASE, b"\xff" * 8)
    assert SCH.getcpu(t, A(BASE, BASE + 4, 0)) == 0
    cpu, node = struct.unpack("<II", t.mm.copy_in(BASE, 8))
    assert cpu in (0, 1) and node == 0                            # a CPU of the sandbox
    t.affinity = 0b10
    assert SCH.getcpu(t, A(BASE, 0, 0)) == 0 and t.mm.copy_in(BASE, 4) == b"\1\0\0\0"
    assert SCH.getcpu(t, A(0, 0, 0)) == 0
    fails(errno.EFAULT, SCH.getcpu, t, BAD, 0, 0)
    assert M.sysinfo(t, A(BASE)) == 0
    uptime, = struct.unpack_from("<q", t.mm.copy_in(BASE, 8))
    assert 4 <= uptime <= 10
    totalram, freeram = struct.unpack_from("<QQ", t.mm.copy_in(BASE + 32, 16))
    assert 0 < freeram <= totalram == 64 << 20                      # the sandbox's memory limit
    assert struct.unpack_from("<I", t.mm.copy_in(BASE + 104, 4))[0] == 1   # mem_unit
    fails(errno.EFAULT, M.sysinfo, t, EDGE)


def test_prctl_names(t):
    PR_SET_NAME, PR_GET_NAME = 15, 16
    assert M.prctl(t, A(PR_GET_NAME, BASE)) == 0
    assert t.mm.copy_in(BASE, 16) == b"app".ljust(16, b"\0")
    name = t.mm.put(BASE + 64, b"a-very-long-thread-name\0")
    assert M.prctl(t, A(PR_SET_NAME, name)) == 0
    M.prctl(t, A(PR_GET_NAME, BASE))
    assert t.mm.copy_in(BASE, 16) == b"a-very-long-thr\0"
    assert M.prctl(t, A(3)) == 1                                   # PR_GET_DUMPABLE
    fails(errno.EINVAL, M.prctl, t, 4, 2)
    assert M.prctl(t, A(38, 1)) == 0 and M.prctl(t, A(39)) == 1    # no_new_privs
    fails(errno.EINVAL, M.prctl, t, 0x7FFF)
    fails(errno.EFAULT, M.prctl, t, PR_GET_NAME, BAD)


# ---- signals --------------------------------------------------------------------------

def test_sigaction_round_trip(t):
    act = struct.pack("<QQQQ", 0x401000, 0x0400_0004, 0x402000, (1 << 14) | (1 << 1))
    t.mm.put(BASE, act)
    assert S.rt_sigaction(t, A(2, BASE, BASE + 64, 8)) == 0
    assert t.mm.copy_in(BASE + 64, 32) == bytes(32)               # old: default
    assert S.rt_sigaction(t, A(2, 0, BASE + 64, 8)) == 0
    assert t.mm.copy_in(BASE + 64, 32) == act


def test_sigaction_cleans_mask_and_unknown_flags(t):
    t.mm.put(BASE, struct.pack("<QQQQ", 1, 0x400 | 0x4, 0, (1 << 8) | (1 << 18) | (1 << 1)))
    S.rt_sigaction(t, A(10, BASE, 0, 8))
    S.rt_sigaction(t, A(10, 0, BASE + 64, 8))
    assert struct.unpack("<QQQQ", t.mm.copy_in(BASE + 64, 32)) == (1, 0x4, 0, 1 << 1)


def test_sigaction_errors(t):
    t.mm.put(BASE, bytes(32))
    for sig in (0, 65, -1):
        fails(errno.EINVAL, S.rt_sigaction, t, sig, BASE, 0, 8)
    fails(errno.EINVAL, S.rt_sigaction, t, 9, BASE, 0, 8)
    fails(errno.EINVAL, S.rt_sigaction, t, 19, BASE, 0, 8)
    assert S.rt_sigaction(t, A(9, 0, BASE + 64, 8)) == 0          # query SIGKILL is fine
    fails(errno.EINVAL, S.rt_sigaction, t, 2, BASE, 0, 4)
    fails(errno.EFAULT, S.rt_sigaction, t, 2, BAD, 0, 8)
    fails(errno.EFAULT, S.rt_sigaction, t, 2, 0, BAD, 8)


def test_sigprocmask(t):
    bit = lambda s: 1 << (s - 1)  # noqa: E731
    t.mm.put(BASE, struct.pack("<Q", bit(2) | bit(9) | bit(19) | bit(15)))
    assert S.rt_sigprocmask(t, A(0, BASE, BASE + 8, 8)) == 0
    assert t.sigmask == bit(2) | bit(15)
    assert t.mm.copy_in(BASE + 8, 8) == bytes(8)
    t.mm.put(BASE, struct.pack("<Q", bit(2)))
    S.rt_sigprocmask(t, A(1, BASE, BASE + 8, 8))
    assert t.sigmask == bit(15)
    assert struct.unpack("<Q", t.mm.copy_in(BASE + 8, 8))[0] == bit(2) | bit(15)
    t.mm.put(BASE, struct.pack("<Q", bit(10)))
    S.rt_sigprocmask(t, A(2, BASE, 0, 8))
    assert t.sigmask == bit(10)
    assert S.rt_sigprocmask(t, A(99, 0, BASE + 8, 8)) == 0          # how unchecked with no set
    fails(errno.EINVAL, S.rt_sigprocmask, t, 99, BASE, 0, 8)
    fails(errno.EINVAL, S.rt_sigprocmask, t, 0, BASE, 0, 16)
    fails(errno.EFAULT, S.rt_sigprocmask, t, 0, BAD, 0, 8)
    assert t.sigmask == bit(10)


def test_sigaltstack(t):
    assert S.sigaltstack(t, A(0, BASE)) == 0
    assert struct.unpack("<Qi4xQ", t.mm.copy_in(BASE, 24)) == (0, 2, 0)   # SS_DISABLE
    t.mm.put(BASE, struct.pack("<Qi4xQ", 0x7000_0000, 0, 65536))
    assert S.sigaltstack(t, A(BASE, 0)) == 0
    assert S.sigaltstack(t, A(0, BASE + 32)) == 0
    assert struct.unpack("<Qi4xQ", t.mm.copy_in(BASE + 32, 24)) == (0x7000_0000, 0, 65536)
    t.mm.put(BASE, struct.pack("<Qi4xQ", 0x7000_0000, 1 | -(1 << 31), 65536))  # ONSTACK|AUTODISARM
    assert S.sigaltstack(t, A(BASE, BASE + 32)) == 0
    assert S.sigaltstack(t, A(0, BASE + 32)) == 0
    assert struct.unpack("<QI4xQ", t.mm.copy_in(BASE + 32, 24)) == (0x7000_0000, 1 << 31, 65536)
    t.mm.put(BASE, struct.pack("<Qi4xQ", 0x7000_0000, 0, 100))
    fails(errno.ENOMEM, S.sigaltstack, t, BASE, 0)
    t.mm.put(BASE, struct.pack("<Qi4xQ", 0, 8, 65536))
    fails(errno.EINVAL, S.sigaltstack, t, BASE, 0)
    fails(errno.EFAULT, S.sigaltstack, t, BAD, 0)


# ---- threads --------------------------------------------------------------------------

def test_tid_address_and_robust_list(t):
    assert TH.set_tid_address(t, A(0x1234)) == 100 and t.clear_child_tid == 0x1234
    assert TH.set_robust_list(t, A(0x5000, 24)) == 0
    fails(errno.EINVAL, TH.set_robust_list, t, 0x5000, 16)
    assert TH.get_robust_list(t, A(0, BASE, BASE + 8)) == 0
    assert struct.unpack("<QQ", t.mm.copy_in(BASE, 16)) == (0x5000, 24)
    fails(errno.ESRCH, TH.get_robust_list, t, 42, BASE, BASE + 8)
    fails(errno.EFAULT, TH.get_robust_list, t, 0, BAD, BASE)


def test_futex_wait_mismatch_and_timeout(t):
    uaddr = t.mm.put(BASE, struct.pack("<I", 5))
    fails(errno.EAGAIN, TH.futex, t, uaddr, 128, 6, 0)
    ts = t.mm.put(BASE + 16, struct.pack("<qq", 0, 60_000_000))
    start = time.monotonic()
    fails(errno.ETIMEDOUT, TH.futex, t, uaddr, 128, 5, ts)
    assert time.monotonic() - start >= 0.06
    # WAIT_BITSET takes an absolute time (CLOCK_REALTIME with the flag).
    deadline = time.time_ns() + 40_000_000
    t.mm.put(ts, struct.pack("<qq", *divmod(deadline, 1_000_000_000)))
    fails(errno.ETIMEDOUT, TH.futex, t, uaddr, 9 | 128 | 256, 5, ts, 0, 0xFFFF_FFFF)
    assert time.time_ns() >= deadline


def test_futex_errors_and_wake(t):
    uaddr = t.mm.put(BASE, struct.pack("<I", 5))
    assert TH.futex(t, A(uaddr, 1, 1)) == 0
    assert TH.futex(t, A(uaddr, 10 | 128, 1, 0, 0, 1)) == 0
    fails(errno.EFAULT, TH.futex, t, BAD, 0, 5, 0)
    fails(errno.EINVAL, TH.futex, t, uaddr + 2, 0, 5, 0)
    fails(errno.EINVAL, TH.futex, t, uaddr, 9, 5, 0, 0, 0)          # bitset 0
    fails(errno.EFAULT, TH.futex, t, uaddr, 3, 5, 0)                # REQUEUE to an unmapped uaddr2
    fails(errno.ENOSYS, TH.futex, t, uaddr, 1 | 256, 1, 0)          # CLOCK_REALTIME on WAKE
    fails(errno.ENOSYS, TH.futex, t, uaddr, 0 | 256, 5, 0)          # ... and on plain WAIT
    ts = t.mm.put(BASE + 16, struct.pack("<qq", 0, 1_000_000_000))
    fails(errno.EINVAL, TH.futex, t, uaddr, 0, 5, ts)
    fails(errno.EFAULT, TH.futex, t, uaddr, 0, 5, BAD)


def test_futex_wait_forever_ends_when_the_run_stops(t):
    uaddr = t.mm.put(BASE, struct.pack("<I", 0))

    def stop():
        t.kernel.stopping = True
        t.waker.set()
    threading.Timer(0.1, stop).start()
    start = time.monotonic()
    with pytest.raises(Stopped):
        TH.futex(t, A(uaddr, 128, 0, 0))
    assert time.monotonic() - start < 5


def test_futex_wait_forever_ends_with_a_signal(t):
    """A signal sent from another thread (a timer) ends the endless wait with ERESTARTSYS."""
    from kvmbox.sentry.signals.deliver import ERESTARTSYS, queue
    uaddr = t.mm.put(BASE, struct.pack("<I", 0))

    def send():
        queue(t, 10)
        t.waker.set()
    threading.Timer(0.1, send).start()
    fails(ERESTARTSYS, TH.futex, t, uaddr, 128, 0, 0)
