"""StubProcess: one host process, forked from the stub page, holding one guest address space.

The stub holds a guest address space (the MemoryFile mapped MAP_SHARED at
guest addresses) and runs guest code under PTRACE_SYSEMU (see context.py) in
its threads (stubthread.py): one per host thread that uses the address space,
traced by that host thread (Linux takes ptrace requests only from the tracer).

The host thread that makes the stub traces its first thread, the leader.  A
thread for another host thread comes from the **spare**: an untraced thread of
the stub parked in pause(2) inside the gadget (no CPU, no code fetched while it
waits).  The host thread that wants a thread PTRACE_ATTACHes the spare (the
SIGSTOP interrupts pause; the syscall is not restarted), then has it clone
(CLONE_VM|CLONE_THREAD|CLONE_PTRACE|...: the clone starts traced by the same
host thread, SIGSTOP pending) the next spare, which it parks the same way:
registers at the gadget with rax = pause, PTRACE_SYSCALL to the syscall-entry
stop (past the last instruction fetch), PTRACE_DETACH.  So any host thread can
get a thread at any time without the others' help, whatever they are doing.

A thread that is no longer wanted exits (an injected exit(2)); the leader
instead is parked like a spare, untraced, after clearing its PR_SET_PDEATHSIG
(which would kill the whole stub when its creating host thread ends): the
process must live on for the other threads.

The guest must not read the stub's code page, which lies above its address
range where Linux has nothing mapped.  The page is execute-only; with protection
keys a read faults (SEGV_PKUERR).  Without them (probe_readable() asks the CPU
once per platform) execute-only pages are readable, so the page is hidden
instead: it is a shared mapping of the stub's own memfd (`code_fd`), which the
Sentry truncates to nothing before guest code runs (any access is then SIGBUS
BUS_ADRERR, reported as a not-present page) and refills while any thread
injects a syscall (hold_code() / unhold_code(); a thread whose guest runs
meanwhile may then read the page: only on such CPUs).

The stub dies with its creating host thread until then (PR_SET_PDEATHSIG) and
with the Sentry (PTRACE_O_EXITKILL on every traced thread).  With pin=True each
stub thread and its tracer share one CPU (a trap round trip costs ~3x more
across CPUs); tracers are spread over the allowed CPUs (CpuBook) so threads of
one process can run at once.
"""
from __future__ import annotations

import os
import signal
import threading

from kvmbox.errors import PlatformUnavailable, SandboxCrash
from kvmbox.guest_stub import layout as L
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace import host, stubcode
from kvmbox.platform.ptrace.stubthread import StubThread, describe_status

# clone(2) flags of a stub thread (the seccomp filter accepts exactly these).
CLONE_THREAD_FLAGS = C.CLONE_THREAD_FLAGS


class CpuBook:
    """How many pinned tracer threads each CPU has: a new tracer goes to the least used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._load: dict[int, int] = {}

    def claim(self, allowed: frozenset[int] | set[int], current: int) -> int:
        with self._lock:
            cpus = sorted(allowed, key=lambda c: (self._load.get(c, 0), c != current))
            cpu = cpus[0] if cpus else current
            self._load[cpu] = self._load.get(cpu, 0) + 1
            return cpu

    def release(self, cpu: int) -> None:
        with self._lock:
            self._load[cpu] = max(self._load.get(cpu, 0) - 1, 0)


_pins = threading.local()     # per tracer thread: [pinned stub threads, affinity before, cpu]


def _pin_tracer(book: CpuBook) -> int:
    """Pin the calling (tracer) thread to a CPU (the least used by other tracers); returns it
    (-1: not pinned).

    A stop wakes the tracer; unpinned, the scheduler often wakes it on the other
    CPU and every trap becomes a cross-CPU round trip.  Undone by _unpin_tracer
    when the thread's last stub thread goes.
    """
    cpu = host.current_cpu()
    if cpu < 0:
        return -1
    state = getattr(_pins, "state", None)
    try:
        if state is None or state[0] == 0:
            before = os.sched_getaffinity(0)
            cpu = book.claim(before, cpu)
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:
                book.release(cpu)
                raise
            _pins.state = [1, before, cpu, book]
        else:
            state[0] += 1
            cpu = state[2]
    except OSError:
        return -1
    return cpu


def thread_affinity() -> frozenset[int]:
    """The calling thread's CPU affinity as it was before _pin_tracer narrowed it."""
    state = getattr(_pins, "state", None)
    if state is not None and state[0]:
        return frozenset(state[1])
    return frozenset(os.sched_getaffinity(0))


def _unpin_tracer() -> None:
    state = getattr(_pins, "state", None)
    if state is None or state[0] == 0:
        return
    state[0] -= 1
    if state[0] == 0:
        state[3].release(state[2])
        try:
            os.sched_setaffinity(0, state[1])
        except OSError:
            pass


class StubProcess:
    """A stub process: its leader (traced by the thread that made it) and its spare."""

    def __init__(self, memfd: int, *, pin: bool = True, cpus: CpuBook | None = None) -> None:
        self.page = host.stub_page()
        self.gadget = self.page + stubcode.GADGET_OFF
        self.trap = self.page + stubcode.TRAP_OFF
        self.pin = pin
        self.cpus = cpus if cpus is not None else CpuBook()
        self.hide_code = False     # keep the code page empty while guest code runs
        self.hidden = False        # it is empty now
        self._code_lock = threading.Lock()
        self._code_holds = 0       # injections under way (the page must be there)
        self.pid = -1
        self.pidfd = -1
        self.alive = False
        self.tids: set[int] = set()        # its threads but the leader (for kill's reaping)
        self.members: set[StubThread] = set()   # the StubThreads still holding resources
        self.spare = -1                    # the parked untraced thread the next taker attaches
        self.code_fd = os.memfd_create("kvmbox-stub-code", os.MFD_CLOEXEC)
        try:
            self._fill_code()
            self.pid = host.spawn(memfd, self.code_fd, stubcode.seccomp_filter(memfd, self.page))
        except OSError as e:
            self._close_code()
            raise PlatformUnavailable(f"kvmbox: cannot create a ptrace stub: {e.strerror}") from None
        self.alive = True
        self.leader = leader = StubThread(self, self.pid)
        try:
            status = leader.wait()
            if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGTRAP:
                raise PlatformUnavailable(f"kvmbox: the ptrace stub did not start "
                                          f"({describe_status(status)})")
            leader.setup()
            self.base = leader.base
            self.pidfd = os.pidfd_open(self.pid)
        except BaseException:
            self.kill()
            raise

    # --- threads ------------------------------------------------------------------
    def first_thread(self) -> StubThread:
        """The leader, for the host thread that made the stub; the first spare is made now."""
        t = self.leader
        self.spare = self._make_spare(t)
        self._pin(t)
        return t

    def new_thread(self) -> StubThread:
        """The spare, attached by the calling host thread (pinned with it); a new spare is made."""
        tid, self.spare = self.spare, -1
        if tid < 0:
            raise SandboxCrash(f"kvmbox: ptrace stub {self.pid} has no spare thread")
        t = StubThread(self, tid)
        try:
            host.ptrace(C.PTRACE_ATTACH, tid, 0, 0)
        except OSError as e:
            raise SandboxCrash(f"kvmbox: cannot attach to ptrace stub thread {tid}: {e.strerror}") from None
        self._stop(t, signal.SIGSTOP, "when attached")
        t.setup(self.base)
        self.spare = self._make_spare(t)
        self._pin(t)
        return t

    def _pin(self, t: StubThread) -> None:
        if self.pin:
            t.cpu = _pin_tracer(self.cpus)
            if t.cpu >= 0:
                try:
                    os.sched_setaffinity(t.tid, {t.cpu})
                except OSError:
                    pass

    def _stop(self, t: StubThread, want: int, doing: str) -> None:
        """Resume `t` until it reports a stop for signal `want` (others are swallowed)."""
        while True:
            status = t.wait()
            if not os.WIFSTOPPED(status):
                raise t.died(status, doing)
            if os.WSTOPSIG(status) & 0x7F == want:
                return
            host.resume(C.PTRACE_CONT, t.tid)

    def _make_spare(self, t: StubThread) -> int:
        """Have `t` (traced by the caller) clone a thread, park it, detach it; returns its tid."""
        tid = t.syscall(C.NR_clone, CLONE_THREAD_FLAGS, 0, 0, 0, 0)
        if tid < 0:
            raise SandboxCrash(f"kvmbox: clone in the ptrace stub {self.pid} failed: {os.strerror(-tid)}")
        self.tids.add(tid)
        spare = StubThread(self, tid)
        self._stop(spare, signal.SIGSTOP, "when made")     # CLONE_PTRACE: SIGSTOP comes first
        spare._inj[:] = self.base[:]
        self.park(spare)
        return tid

    def park(self, t: StubThread) -> None:
        """Leave `t` untraced, blocked in pause(2) at the gadget: set it up to make the call,
        run it to the syscall-entry stop (no instruction is fetched after it), detach."""
        t.set_call(C.NR_pause)
        self.hold_code()
        try:
            host.resume(C.PTRACE_SYSCALL, t.tid)
            self._stop(t, signal.SIGTRAP, "when parked")
            host.ptrace(C.PTRACE_DETACH, t.tid, 0, 0)
        finally:
            self.unhold_code()
        t.forget()

    def end_thread(self, t: StubThread) -> None:
        """`t` (traced by the caller) is no longer wanted: it exits, or, the leader, is parked
        without its parent-death signal; its tracer is unpinned."""
        if t is self.leader:
            if t.alive and self.alive:
                # The stub must not die when the leader's tracer ends: other host threads
                # may use the address space now or later.
                try:
                    t.syscall(C.NR_prctl, C.PR_SET_PDEATHSIG, 0)
                    host.ptrace(C.PTRACE_SETOPTIONS, t.tid, 0, C.PTRACE_O_TRACESYSGOOD)
                    self.park(t)
                except (OSError, SandboxCrash):
                    t.alive = False
        else:
            t.exit()
            self.tids.discard(t.tid)
        if t.cpu >= 0:
            _unpin_tracer()
            t.cpu = -1

    # --- the code page: execute-only, or emptied while the guest runs -------
    def _fill_code(self) -> None:
        os.ftruncate(self.code_fd, L.PAGE_SIZE)
        os.pwrite(self.code_fd, stubcode.STUB_CODE, 0)

    def hold_code(self) -> None:
        """The code page must be there (an injection is under way)."""
        with self._code_lock:
            self._code_holds += 1
            if self.hidden:
                self._fill_code()
                self.hidden = False

    def unhold_code(self) -> None:
        with self._code_lock:
            self._code_holds -= 1

    def hide(self) -> None:
        """Empty the code page (guest code is about to run) unless a thread needs it now."""
        with self._code_lock:
            if not self._code_holds and not self.hidden and self.code_fd >= 0:
                os.ftruncate(self.code_fd, 0)
                self.hidden = True

    def probe_readable(self) -> bool:
        """Does a read of the execute-only code page succeed on this CPU (no protection keys)?
        On the leader's tracer, before the leader runs guest code."""
        return self.leader.probe_readable()

    def syscall(self, nr: int, *args: int) -> int:
        """Inject host syscall `nr` through the leader (on its tracer)."""
        return self.leader.syscall(nr, *args)

    def mapped_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        """The stub's mappings overlapping [start, end), clipped, from /proc/PID/maps."""
        out = []
        with open(f"/proc/{self.pid}/maps") as f:
            for line in f:
                lo_s, hi_s = line.split(" ", 1)[0].split("-")
                lo, hi = max(int(lo_s, 16), start), min(int(hi_s, 16), end)
                if lo < hi:
                    out.append((lo, hi))
        return out

    # --- the end ----------------------------------------------------------------
    def _close_code(self) -> None:
        with self._code_lock:
            if self.code_fd >= 0:
                os.close(self.code_fd)
                self.code_fd = -1

    def kill(self) -> None:
        """SIGKILL the whole stub and reap every thread (any Sentry thread may wait for them:
        the stub is a child of the Sentry process); idempotent."""
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except OSError:
                pass
            os.close(self.pidfd)
            self.pidfd = -1
        elif self.alive and self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        self.alive = False
        for tid in [*self.tids, self.pid]:     # a traced thread is a zombie until waited for
            if tid <= 0:
                continue
            try:
                while os.WIFSTOPPED(os.waitpid(tid, C.WALL)[1]):
                    pass                        # a stop reported before the kill landed
            except ChildProcessError:
                pass
        self.tids.clear()
        for t in list(self.members):
            t.forget()
        self.pid = -1
        self._close_code()
