"""epoll (kvmbox/sentry/epoll.py and sys_epoll.py) against a fake task: what the C program
cannot show natively-vs-sandbox in one thread (wake-ups from another thread, a stopped run,
partial copy-out, interest-list cleanup) plus the wake-up keys behind edge-triggered mode."""
from __future__ import annotations

import errno
import os
import struct
import tempfile
import threading
from types import SimpleNamespace
import time

import pytest

from kvmbox.abi import signals as S
from kvmbox.errors import SyscallError
from kvmbox.sentry import epoll as EP
from kvmbox.sentry.eventfd import EventFd
from kvmbox.sentry.files import FdTable
from kvmbox.sentry.hoststream import HostStream
from kvmbox.sentry.pipe import make_pipe
from kvmbox.sentry.signals.deliver import ERESTARTNOHAND, deliverable_mask
from kvmbox.sentry.waiter import Stopped, Waker
from kvmbox.sentry.syscalls import sys_epoll as SE
from kvmbox.sentry.syscalls.table import build_table
from kvmbox.sentry.task import default_rlimits
from tests.unit.test_handlers import BASE, SIZE, A, FakeMM, fails   # memory at [BASE, BASE+SIZE)

EV = struct.Struct("<IQ")


class FakeKernel:
    def __init__(self) -> None:
        self.stopping = False          # what waiter.block checks (Kernel.stopping)


class FakeTask:
    def __init__(self) -> None:
        self.kernel = FakeKernel()
        self.mm = FakeMM()
        self.fds = FdTable()
        self.rlimits = default_rlimits(None)
        self.sigmask = 0
        self.saved_sigmask = None
        self.pending_signals: list[tuple] = []
        self.sig_lock = threading.Lock()
        self.tg = SimpleNamespace(shared_pending=[], tasks=[self])
        self.waker = Waker()
        self.blocked = False

    def signal_pending(self) -> bool:
        return bool(deliverable_mask(self))

    def stop(self) -> None:
        """What Kernel.stop does for a blocked task."""
        self.kernel.stopping = True
        self.waker.set()


@pytest.fixture
def t() -> FakeTask:
    return FakeTask()


EVP = BASE + 0x100          # where the tests put one struct epoll_event for epoll_ctl
OUT = BASE + 0x1000         # the events array epoll_wait fills


def add(t, epfd: int, fd: int, events: int, data: int, op: int = EP.EPOLL_CTL_ADD) -> None:
    t.mm.copy_out(EVP, EV.pack(events, data))
    assert SE.epoll_ctl(t, A(epfd, op, fd, EVP)) == 0


def wait(t, epfd: int, maxevents: int = 8, timeout: int = 0) -> list[tuple[int, int]]:
    n = SE.epoll_wait(t, A(epfd, OUT, maxevents, timeout))
    return [EV.unpack_from(t.mm.mem, OUT - BASE + i * EV.size) for i in range(n)]


def pipe_fds(t) -> tuple[int, int, object, object]:
    r, w = make_pipe(0)
    return t.fds.alloc(r), t.fds.alloc(w), r, w


def test_entries_register_every_epoll_call():
    names = {e.name for e in SE.ENTRIES}
    assert names == {"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
                     "epoll_pwait2"}
    build_table(SE.ENTRIES)


def test_create_flags_and_errors(t):
    fails(errno.EINVAL, SE.epoll_create, t, 0)
    fails(errno.EINVAL, SE.epoll_create1, t, 1)
    ep = SE.epoll_create1(t, A(SE.EPOLL_CLOEXEC))
    assert t.fds.get_cloexec(ep) and isinstance(t.fds.get(ep), EP.Epoll)
    f = t.fds.get(ep)
    assert f.link_name == "anon_inode:[eventpoll]" and f.flags == os.O_RDWR
    fails(errno.EINVAL, lambda t, a: f.read(1), t)


def test_level_triggered_pipe_and_data_round_trip(t):
    ep = SE.epoll_create1(t, A(0))
    r, w, rf, wf = pipe_fds(t)
    add(t, ep, r, EP.EPOLLIN, 0xFFFF_FFFF_FFFF_FFFE)
    assert wait(t, ep) == []
    wf.write(b"x")
    assert wait(t, ep) == [(EP.EPOLLIN, 0xFFFF_FFFF_FFFF_FFFE)]
    assert wait(t, ep) == [(EP.EPOLLIN, 0xFFFF_FFFF_FFFF_FFFE)]
    rf.read(1)
    assert wait(t, ep) == []


def test_blocking_wait_woken_by_another_thread(t):
    ep = SE.epoll_create1(t, A(0))
    e = EventFd(None, 0, 0)
    efd = t.fds.alloc(e)
    add(t, ep, efd, EP.EPOLLIN | EP.EPOLLET, 5)
    timer = threading.Timer(0.1, lambda: e.write(struct.pack("<Q", 3)))
    timer.start()
    t0 = time.monotonic()
    try:
        got = wait(t, ep, timeout=5000)
    finally:
        timer.join()
    assert got == [(EP.EPOLLIN, 5)]
    assert 0.05 < time.monotonic() - t0 < 2        # woken by the write, not the 5 s timeout


def test_nested_epoll_wakes_a_blocked_outer_wait(t):
    outer, inner = SE.epoll_create1(t, A(0)), SE.epoll_create1(t, A(0))
    r, w, rf, wf = pipe_fds(t)
    add(t, inner, r, EP.EPOLLIN, 1)
    add(t, outer, inner, EP.EPOLLIN, 2)
    timer = threading.Timer(0.1, lambda: wf.write(b"go"))
    timer.start()
    try:
        got = wait(t, outer, timeout=5000)
    finally:
        timer.join()
    assert got == [(EP.EPOLLIN, 2)]


def test_timeout_expires_and_a_stopped_run_ends_an_endless_wait(t):
    ep = SE.epoll_create1(t, A(0))
    r, w, rf, wf = pipe_fds(t)
    add(t, ep, r, EP.EPOLLIN, 1)
    t0 = time.monotonic()
    assert wait(t, ep, timeout=80) == []
    assert time.monotonic() - t0 >= 0.07
    threading.Timer(0.1, t.stop).start()
    with pytest.raises(Stopped):
        wait(t, ep, timeout=-1)


def test_pending_signal_gives_eintr_and_pwait_keeps_its_mask_for_delivery(t):
    ep = SE.epoll_create1(t, A(0))
    usr1 = S.sigbit(S.SIGUSR1)
    t.sigmask = usr1
    t.pending_signals.append((S.SIGUSR1, 0, 0))
    assert wait(t, ep, timeout=0) == []               # a zero timeout never sees signals
    t.mm.copy_out(BASE, struct.pack("<Q", 0))         # the wait's mask: nothing blocked
    with pytest.raises(SyscallError) as ei:
        SE.epoll_pwait(t, A(ep, OUT, 1, 1000, BASE, 8))
    assert ei.value.errno == errno.EINTR != ERESTARTNOHAND
    assert t.sigmask == 0 and t.saved_sigmask == usr1   # delivery puts usr1 back
    t.sigmask, t.saved_sigmask = usr1, None
    assert SE.epoll_pwait(t, A(ep, OUT, 1, 0, BASE, 8)) == 0
    assert t.sigmask == usr1 and t.saved_sigmask is None
    fails(errno.EINVAL, SE.epoll_pwait, t, ep, OUT, 1, 0, BASE, 4)
    fails(errno.EFAULT, SE.epoll_pwait, t, ep, OUT, 1, 0, 0xDEAD_0000, 8)


def test_wait_argument_errors(t):
    ep = SE.epoll_create1(t, A(0))
    r, w, rf, wf = pipe_fds(t)
    fails(errno.EINVAL, SE.epoll_wait, t, ep, OUT, 0, 0)
    fails(errno.EINVAL, SE.epoll_wait, t, ep, OUT, SE.EP_MAX_EVENTS + 1, 0)
    fails(errno.EFAULT, SE.epoll_wait, t, ep, 0xFFFF_8000_0000_0000, 1, 0)
    fails(errno.EFAULT, SE.epoll_wait, t, ep, SE.TASK_SIZE - 12, 2, 0)
    fails(errno.EBADF, SE.epoll_wait, t, 77, OUT, 1, 0)
    fails(errno.EINVAL, SE.epoll_wait, t, r, OUT, 1, 0)
    t.mm.copy_out(BASE, struct.pack("<qq", 0, 10**9))
    fails(errno.EINVAL, SE.epoll_pwait2, t, ep, OUT, 1, BASE, 0, 8)


def test_partial_copy_out_returns_what_fit_and_keeps_the_rest_ready(t):
    ep = SE.epoll_create1(t, A(0))
    fds = []
    for i in range(3):
        e = EventFd(None, 1, 0)
        fds.append(t.fds.alloc(e))
        add(t, ep, fds[-1], EP.EPOLLIN, i)
    last = BASE + SIZE - EV.size                      # room for one event only
    assert SE.epoll_wait(t, A(ep, last, 3, 0)) == 1
    assert EV.unpack_from(t.mm.mem, last - BASE) == (EP.EPOLLIN, 0)
    fails(errno.EFAULT, SE.epoll_wait, t, ep, 0xDEAD_0000, 1, 0)    # nothing fits: EFAULT
    assert [d for _e, d in wait(t, ep)] == [1, 2, 0]  # 1 and 2 kept their place at the head


def test_ctl_errors(t):
    ep = SE.epoll_create1(t, A(0))
    r, w, rf, wf = pipe_fds(t)
    t.mm.copy_out(EVP, EV.pack(EP.EPOLLIN, 0))
    fails(errno.EINVAL, SE.epoll_ctl, t, ep, EP.EPOLL_CTL_ADD, ep, EVP)
    fails(errno.EINVAL, SE.epoll_ctl, t, r, EP.EPOLL_CTL_ADD, w, EVP)
    fails(errno.EBADF, SE.epoll_ctl, t, ep, EP.EPOLL_CTL_ADD, 99, EVP)
    fails(errno.EFAULT, SE.epoll_ctl, t, 99, EP.EPOLL_CTL_ADD, r, 0xDEAD_0000)
    fails(errno.ENOENT, SE.epoll_ctl, t, ep, EP.EPOLL_CTL_DEL, r, 0)
    add(t, ep, r, EP.EPOLLIN, 0)
    fails(errno.EEXIST, SE.epoll_ctl, t, ep, EP.EPOLL_CTL_ADD, r, EVP)
    t.mm.copy_out(EVP, EV.pack(EP.EPOLLIN | EP.EPOLLEXCLUSIVE, 0))
    fails(errno.EINVAL, SE.epoll_ctl, t, ep, EP.EPOLL_CTL_MOD, r, EVP)
    fails(errno.EINVAL, SE.epoll_ctl, t, ep, 9, r, EVP)
    with tempfile.TemporaryFile() as tmp:               # a regular file cannot be polled: EPERM
        hs = HostStream(tmp.fileno())
        fails(errno.EPERM, SE.epoll_ctl, t, ep, EP.EPOLL_CTL_ADD, t.fds.alloc(hs), EVP)
    hr, hw = os.pipe()
    try:
        hs = HostStream(hr)              # a host pipe can
        assert EP.can_poll(hs)
        hs.release()
    finally:
        os.close(hr)
        os.close(hw)


def test_loop_and_nesting_limit(t):
    eps = [SE.epoll_create1(t, A(0)) for _ in range(7)]
    for i in range(1, 5):
        add(t, eps[i], eps[i - 1], EP.EPOLLIN, i)
    t.mm.copy_out(EVP, EV.pack(EP.EPOLLIN, 0))
    fails(errno.ELOOP, SE.epoll_ctl, t, eps[5], EP.EPOLL_CTL_ADD, eps[4], EVP)   # too deep
    fails(errno.ELOOP, SE.epoll_ctl, t, eps[0], EP.EPOLL_CTL_ADD, eps[2], EVP)   # a loop
    add(t, eps[6], eps[0], EP.EPOLLIN, 6)                 # a second parent, shallow enough


def test_closing_the_last_descriptor_leaves_the_interest_list_and_unwatches(t):
    ep = SE.epoll_create1(t, A(0))
    r, w, rf, wf = pipe_fds(t)
    add(t, ep, r, EP.EPOLLIN, 1)
    d = t.fds.alloc(rf)
    t.fds.close(r)
    wf.write(b"x")
    assert wait(t, ep) == [(EP.EPOLLIN, 1)]          # the dup keeps the file alive
    t.fds.close(d)
    assert wait(t, ep) == []
    assert not [x for x in rf.buf.watchers if isinstance(x, EP.Item)]
    add(t, ep, w, EP.EPOLLOUT, 2)
    assert any(isinstance(x, EP.Item) for x in wf.buf.watchers)
    t.fds.close(ep)                                     # the epoll's own release unwatches all
    assert not [x for x in wf.buf.watchers if isinstance(x, EP.Item)]


def test_wake_keys_follow_linux_pipe_and_eventfd():
    r, w = make_pipe(0)
    key = lambda f, a, b: EP._wake_key(f, a, b)       # noqa: E731
    # (count, readers, writers, slots, full)
    assert key(r, (0, 1, 1, 16, False), (3, 1, 1, 16, False)) == EP.EPOLLIN | EP.EPOLLRDNORM
    assert key(r, (3, 1, 1, 16, False), (2, 1, 1, 16, False)) == EP._NO_WAKE
    assert key(r, (9, 1, 1, 16, True), (8, 1, 1, 16, True)) == EP.EPOLLOUT | EP.EPOLLWRNORM
    assert key(r, (0, 1, 1, 16, False), (0, 1, 0, 16, False)) == EP._WAKE_ALL
    e = EventFd(None, 0, 0)
    assert key(e, 0, 1) == EP.EPOLLIN and key(e, 1, 0) == EP.EPOLLOUT and key(e, 1, 1) == EP.EPOLLIN


def test_fdinfo_lists_the_items(t):
    ep = SE.epoll_create1(t, A(0))
    r, w, rf, wf = pipe_fds(t)
    add(t, ep, r, EP.EPOLLIN, 0xAB)
    info = t.fds.get(ep).fdinfo()
    assert info.startswith(f"tfd: {r:8d} events: {EP.EPOLLIN | EP.EPOLLERR | EP.EPOLLHUP:8x} "
                           f"data: {0xAB:16x}  pos:0 ino:")
