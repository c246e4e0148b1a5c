"""The timer engine without a guest: hrtimer-style forwarding, the TimerService thread
(wall and CPU clocks, stop, a failing timer), struct signalfd_siginfo from siginfo_t, and
the KVM context's re-kick of a vCPU interrupted inside the ring-0 stub (PVM here never
stops a vCPU there, so a guest cannot reach that path on this machine)."""
from __future__ import annotations

import signal
import struct
import threading
import time

from kvmbox.abi import clocks as C
from kvmbox.platform.base import INTERRUPTED
from kvmbox.sentry.signalfd import signalfd_siginfo
from kvmbox.sentry.signals.frame import SIGINFO_HEAD, siginfo
from kvmbox.sentry.timers import CPU_POLL_NS, Alarm, Clock, Timer, TimerService, forward


def test_forward_moves_past_now_by_whole_intervals():
    assert forward(100, 50, 10) == (100, 0)            # not due yet
    assert forward(100, 100, 10) == (110, 1)           # exactly due: one interval
    assert forward(100, 129, 10) == (130, 3)
    assert forward(100, 130, 10) == (140, 4)           # never lands on now
    assert forward(100, 500, 0) == (100, 0)            # no interval: unchanged


def _wall() -> Clock:
    return Clock(time.monotonic_ns)


def test_service_fires_on_time_and_stops():
    svc = TimerService()
    fired = threading.Event()
    start = time.monotonic_ns()
    alarm = Alarm(_wall(), start + 30_000_000, fired.set)
    svc.arm(alarm)
    assert fired.wait(2)
    late = time.monotonic_ns() - (start + 30_000_000)
    assert 0 <= late < 500_000_000
    assert alarm.fired.is_set() and alarm.expires == 0
    thread = [th for th in threading.enumerate() if th.name == "kvmbox-timers"]
    svc.stop()
    assert thread and not thread[0].is_alive()
    svc.arm(Alarm(_wall(), 1, fired.set))             # after stop: ignored, no new thread
    assert not [th for th in threading.enumerate() if th.name == "kvmbox-timers" and th.is_alive()]


def test_disarmed_timer_never_fires():
    svc = TimerService()
    fired = threading.Event()
    alarm = Alarm(_wall(), time.monotonic_ns() + 50_000_000, fired.set)
    svc.arm(alarm)
    svc.disarm(alarm)
    assert not fired.wait(0.2)
    svc.stop()


def test_cpu_clock_is_sampled_not_spun_on():
    """A CPU clock that never reaches the expiry is looked at every CPU_POLL_NS or slower."""
    reads = []
    clock = Clock(lambda: reads.append(1) or 0, cpu=True)
    svc = TimerService()
    svc.arm(Alarm(clock, 10, lambda: None))
    time.sleep(0.1)
    svc.stop()
    assert 1 <= len(reads) <= 0.1 * 1e9 / CPU_POLL_NS + 5


def test_a_failing_timer_is_dropped_and_reported():
    errors: list[str] = []

    class Broken(Timer):
        clock = _wall()
        expires = 1

        def expire(self, now: int) -> None:
            raise RuntimeError("boom")

    svc = TimerService(on_error=errors.append)
    fired = threading.Event()
    svc.arm(Broken())
    svc.arm(Alarm(_wall(), time.monotonic_ns() + 20_000_000, fired.set))
    assert fired.wait(2)
    svc.stop()
    assert errors and "RuntimeError: boom" in errors[0]


def _ssi(info: bytes) -> tuple:
    return C.SIGNALFD_SIGINFO.unpack(info)


def test_signalfd_siginfo_layouts():
    kill = _ssi(signalfd_siginfo(siginfo(10, 0, pid=42, uid=1000)))
    assert kill[:5] == (10, 0, 0, 42, 1000)
    fault = _ssi(signalfd_siginfo(siginfo(11, 1, addr=0xdead000)))
    assert fault[2] == 1 and fault[15] == 0xdead000 and fault[3] == 0
    timer = SIGINFO_HEAD.pack(34, 0, C.SI_TIMER) + struct.pack("<iiQ", 3, 7, 0x1_0000_0005)
    t = _ssi(signalfd_siginfo(timer.ljust(128, b"\0")))
    assert (t[6], t[8], t[11], t[12]) == (3, 7, 5, 0x1_0000_0005)     # tid overrun int ptr
    chld = SIGINFO_HEAD.pack(17, 0, 1) + struct.pack("<iIiiqq", 5, 0, 9, 0, 11, 12)
    c = _ssi(signalfd_siginfo(chld.ljust(128, b"\0")))
    assert (c[3], c[10], c[13], c[14]) == (5, 9, 11, 12)              # pid status utime stime


class _FakeVcpu:
    """Returns INTERRUPTED inside the stub's handlers first, then (once re-kicked) in user code."""

    def __init__(self, handler_rip: int, user_rip: int) -> None:
        from kvmbox.kvm_ioctls import RIP
        self.regs = [0] * 32
        self.RIP = RIP
        self.calls = 0
        self.rip = (handler_rip, user_rip)
        self.kicked = threading.Event()

    def run(self):
        from kvmbox.kvm_ioctls import VcpuExit
        self.calls += 1
        if self.calls == 1:
            self.kicked.clear()
            self.regs[self.RIP] = self.rip[0]
        else:
            assert self.kicked.wait(2), "the interrupted vCPU was never kicked again"
            self.regs[self.RIP] = self.rip[1]
        return VcpuExit.INTERRUPTED

    def set_immediate_exit(self, on: bool) -> None:
        if on:
            self.kicked.set()


def test_kvm_interrupt_inside_the_stub_is_kicked_again():
    from kvmbox.platform.kvm.context import KvmContext
    ctx = KvmContext.__new__(KvmContext)
    lo = 0x7f00_0000_0000
    vcpu = _FakeVcpu(handler_rip=lo + 16, user_rip=0x401000)
    ctx.vcpu = vcpu
    ctx.regs = vcpu.regs
    ctx.platform = type("P", (), {"kick_signal": signal.SIGURG})()   # ignored by default
    ctx._configured, ctx._cr3, ctx.in_exception = True, 1, False
    ctx._handlers = (lo, lo + 4096)
    ctx._tramp_lo, ctx._syscall_exit_rip, ctx._restore_flags = 0x10_0000, 0x10_0010, True
    ctx._parked_rip, ctx._thread, ctx._guest = -1, None, (0, 0)
    ctx._interrupt = threading.Event()
    aspace = type("A", (), {"root": 1})()
    assert ctx.switch(aspace) is INTERRUPTED
    assert vcpu.calls == 2 and vcpu.regs[vcpu.RIP] == 0x401000
    assert ctx.guest_cpu_ns() > 0                      # the time in run() counts as guest time
