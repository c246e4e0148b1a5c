"""StubProcess: one host process, forked from the stub page, holding one guest address space.

The stub holds a guest address space (the MemoryFile mapped MAP_SHARED at
guest addresses) and runs guest code under PTRACE_SYSEMU (see context.py) in
its threads (stubthread.py): one per host thread that uses the address space,
traced by that host thread (Linux takes ptrace requests only from the tracer).

Its first thread, the leader, never runs guest code.  It belongs to the stub's
**keeper**, a host thread of its own that forks the stub (so PR_SET_PDEATHSIG
ties the stub to the keeper, which lives as long as the stub) and then serves
requests for new threads: it injects clone(CLONE_VM|CLONE_THREAD|CLONE_PTRACE|
...) into the leader (the new thread starts traced by the keeper, with SIGSTOP
pending), parks the new thread on a `jmp r15` loop in the code page and detaches
it; the asking host thread then PTRACE_ATTACHes it.  A separate keeper is needed
because any host thread may need a thread at any time while the others are
running guest code or blocked in the Sentry.

The guest must not read the stub's code page, which lies above its address
range where Linux has nothing mapped.  The page is execute-only; with protection
keys a read faults (SEGV_PKUERR).  Without them (probe_readable() asks the CPU
once per platform) execute-only pages are readable, so the page is hidden
instead: it is a shared mapping of the stub's own memfd (`code_fd`), which the
Sentry truncates to nothing before guest code runs (any access is then SIGBUS
BUS_ADRERR, reported as a not-present page) and refills while any thread
injects a syscall or is being handed over (hold_code() / unhold_code(); a
thread whose guest runs meanwhile may then read the page: only on such CPUs).

The stub dies with its keeper (PR_SET_PDEATHSIG) and with the Sentry
(PTRACE_O_EXITKILL).  With pin=True each stub thread and its tracer share one
CPU (a trap round trip costs ~3x more across CPUs); tracers are spread over the
allowed CPUs (CpuBook) so threads of one process can run at once.
"""
from __future__ import annotations

import os
import queue
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


class _Request:
    """A job for the keeper and, once done, its result or exception."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None


class StubProcess:
    """A stub process, its keeper thread and its leader thread (owned by the keeper)."""

    def __init__(self, memfd: int, *, pin: bool = True, cpus: CpuBook | None = None) -> None:
        self.page = host.stub_page()
        self.gadget = self.page + stubcode.GADGET_OFF
        self.trap = self.page + stubcode.TRAP_OFF
        self.pin = pin
        self.cpus = cpus if cpus is not None else CpuBook()
        self.hide_code = False     # keep the code page empty while guest code runs
        self.hidden = False        # it is empty now
        self._code_lock = threading.Lock()
        self._code_holds = 0       # injections and hand-overs under way (the page must be there)
        self.pid = -1
        self.pidfd = -1
        self.alive = False
        self.tids: set[int] = set()        # live non-leader threads (for kill's reaping)
        self._memfd = memfd
        self.code_fd = os.memfd_create("kvmbox-stub-code", os.MFD_CLOEXEC)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self.leader: StubThread | None = None
        first = _Request(self._start)
        self._requests.put(first)
        self._keeper = threading.Thread(target=self._serve, name="kvmbox-stub-keeper", daemon=True)
        self._keeper.start()
        self._result(first)

    # --- the keeper -----------------------------------------------------------
    def _serve(self) -> None:
        while True:
            req = self._requests.get()
            if req is None:
                break
            try:
                req.result = req.fn()
            except BaseException as e:     # noqa: BLE001 - handed to the asking thread
                req.error = e
            req.done.set()
        self._reap_leader()

    def _result(self, req: _Request):
        req.done.wait()
        if req.error is not None:
            if req.fn == self._start:
                self._requests.put(None)
                self._keeper.join()
                self._close_code()
            raise req.error
        return req.result

    def on_keeper(self, fn):
        """Run fn() on the keeper thread (the leader's tracer) and return its result."""
        if not self.alive:
            raise SandboxCrash(f"kvmbox: ptrace stub {self.pid} is dead")
        req = _Request(fn)
        self._requests.put(req)
        return self._result(req)

    def _start(self) -> None:
        """On the keeper: fork the stub and wait for it to stop on its trap."""
        try:
            self._fill_code()
            self.pid = host.spawn(self._memfd, self.code_fd, stubcode.seccomp_filter(self._memfd, self.page))
        except OSError as e:
            raise PlatformUnavailable(f"kvmbox: cannot create a ptrace stub: {e.strerror}") from None
        self.alive = True
        leader = StubThread(self, self.pid)
        try:
            status = leader.wait()
            if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGTRAP:
                raise PlatformUnavailable(f"kvmbox: the ptrace stub did not start "
                                          f"({describe_status(status)})")
            leader.setup()
            self.pidfd = os.pidfd_open(self.pid)
        except BaseException:
            self._kill_and_reap()
            raise
        self.leader = leader

    def _clone(self) -> int:
        """On the keeper: make a thread, stopped and parked, detached for its new tracer."""
        tid = self.leader.syscall(C.NR_clone, CLONE_THREAD_FLAGS, 0, 0, 0, 0)
        if tid < 0:
            raise SandboxCrash(f"kvmbox: clone in the ptrace stub {self.pid} failed: "
                               f"{os.strerror(-tid)}")
        self.tids.add(tid)
        t = StubThread(self, tid)
        while True:                        # CLONE_PTRACE: it starts with SIGSTOP pending
            status = t.wait()
            if not os.WIFSTOPPED(status):
                raise t.died(status, "when made")
            if os.WSTOPSIG(status) == signal.SIGSTOP:
                break
            host.resume(C.PTRACE_CONT, tid)
        t._inj[:] = self.leader.base[:]
        t.park()
        self.hold_code()                  # until the new tracer has it stopped
        try:
            host.ptrace(C.PTRACE_DETACH, tid, 0, 0)
        except BaseException:
            self.unhold_code()
            raise
        return tid

    def new_thread(self) -> StubThread:
        """A new thread of the stub traced by the calling host thread (pinned with it)."""
        tid = self.on_keeper(self._clone)
        t = StubThread(self, tid)
        try:
            host.ptrace(C.PTRACE_ATTACH, tid, 0, 0)
            while True:
                status = t.wait()
                if not os.WIFSTOPPED(status):
                    raise t.died(status, "when attached")
                if os.WSTOPSIG(status) == signal.SIGSTOP:
                    break
                host.resume(C.PTRACE_CONT, tid)
        except OSError as e:
            raise SandboxCrash(f"kvmbox: cannot attach to ptrace stub thread {tid}: {e.strerror}") from None
        finally:
            self.unhold_code()
        t.setup()
        if self.pin:
            t.cpu = _pin_tracer(self.cpus)
            if t.cpu >= 0:
                os.sched_setaffinity(tid, {t.cpu})
        return t

    def end_thread(self, t: StubThread) -> None:
        """Make `t` exit (on its tracer) and unpin its tracer."""
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
        """The code page must be there (an injection or a hand-over is under way)."""
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
        """Does a read of the execute-only code page succeed on this CPU (no protection keys)?"""
        return self.on_keeper(self.leader.probe_readable)

    def syscall(self, nr: int, *args: int) -> int:
        """Inject host syscall `nr` through the leader (on the keeper)."""
        return self.on_keeper(lambda: self.leader.syscall(nr, *args))

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
    def _kill_and_reap(self) -> None:
        """SIGKILL the whole stub and reap every thread (any Sentry thread may wait for them)."""
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
        for tid in list(self.tids):       # a traced thread is a zombie until waited for
            try:
                while os.WIFSTOPPED(os.waitpid(tid, C.WALL)[1]):
                    pass
            except ChildProcessError:
                pass
        self.tids.clear()

    def _reap_leader(self) -> None:
        """On the keeper, as it ends: reap the leader, close the code fd."""
        self._kill_and_reap()
        if self.pid > 0:
            try:
                while os.WIFSTOPPED(os.waitpid(self.pid, C.WALL)[1]):
                    pass                  # a stop reported before the kill landed
            except ChildProcessError:
                pass
        if self.leader is not None:
            self.leader.alive = False
        self._close_code()

    def _close_code(self) -> None:
        with self._code_lock:
            if self.code_fd >= 0:
                os.close(self.code_fd)
                self.code_fd = -1

    def kill(self) -> None:
        """SIGKILL the stub, reap it and end its keeper (idempotent; any thread)."""
        if not self._keeper.is_alive():
            return
        self._kill_and_reap()
        self._requests.put(None)
        if threading.current_thread() is not self._keeper:
            self._keeper.join()
