"""The sandbox's lock table (kvmbox/sentry/locks.py) between owners that stand for separate
processes: what tests/programs/locks.c cannot show in one process until fork arrives
(tests/programs/locks_fork.c): a wait woken by another owner's unlock, close or exit,
EDEADLK for POSIX wait cycles, and the hooks in FdTable (close, release, last close)."""
from __future__ import annotations

import errno
import threading
import time

import pytest

from kvmbox.abi.flock import F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import FdTable, FileDescription
from kvmbox.sentry.locks import LockTable, Record, posix_owner
from kvmbox.sentry.signals.deliver import ERESTARTSYS
from kvmbox.sentry.waiter import Stopped, Waker

WAITED = 0.2          # how long a wait is shown to last before it is ended


class FakeTask:
    """What waiter.block needs of a task, and a process's fd table."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.fds = FdTable()
        self.tgid = 1
        self.waker = Waker()
        self.blocked = False
        self.pending = False

    def signal_pending(self) -> bool:
        return self.pending


class Kernel:
    def __init__(self) -> None:
        self.stopping = False
        self.file_locks = LockTable()


class File(FileDescription):
    """An open file of `node`."""

    readable = writable = True

    def __init__(self, node: object) -> None:
        self.node = node


@pytest.fixture
def kernel() -> Kernel:
    return Kernel()


def posix(t: FakeTask, ltype: int, start: int, end: int = OFFSET_MAX) -> Record:
    return Record(posix_owner(t), ltype, start, end, t.tgid)


def in_thread(fn) -> tuple[threading.Thread, list]:
    """Run fn() in a thread; the list gets its result or the exception it raised."""
    out: list = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:          # noqa: BLE001 - handed to the test
            out.append(e)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


def still_waiting(th: threading.Thread) -> bool:
    th.join(WAITED)
    return th.is_alive()


def test_ranges_split_and_merge(kernel):
    a = FakeTask(kernel)
    table, key = kernel.file_locks, object()
    for ltype, start, end in [(F_WRLCK, 0, 99), (F_UNLCK, 40, 59), (F_RDLCK, 20, 29),
                              (F_WRLCK, 40, 59), (F_WRLCK, 100, 109)]:
        table.set_range(a, key, posix(a, ltype, start, end), wait=False)
    assert [h[1:] for h in table.holds(key)] == [(F_WRLCK, 0, 19), (F_RDLCK, 20, 29),
                                                 (F_WRLCK, 30, 109)]
    table.set_range(a, key, posix(a, F_UNLCK, 0), wait=False)
    assert table.holds(key) == [] and not table._files      # nothing kept for an idle file


def test_owners_keep_the_order_they_first_locked_in(kernel):
    a, b = FakeTask(kernel), FakeTask(kernel)
    table, key = kernel.file_locks, object()
    table.set_range(a, key, posix(a, F_RDLCK, 50, 59), wait=False)
    table.set_range(b, key, posix(b, F_RDLCK, 0, 9), wait=False)
    table.set_range(a, key, posix(a, F_RDLCK, 0, 9), wait=False)
    assert [(h[0], h[2]) for h in table.holds(key)] == [(a.fds, 0), (a.fds, 50), (b.fds, 0)]
    hit = table.test(key, Record(object(), F_WRLCK, 0, OFFSET_MAX))
    assert (hit.owner, hit.start) == (a.fds, 0)


def test_wait_ends_when_the_other_process_unlocks(kernel):
    a, b = FakeTask(kernel), FakeTask(kernel)
    table, key = kernel.file_locks, object()
    table.set_range(a, key, posix(a, F_WRLCK, 0, 9), wait=False)
    with pytest.raises(SyscallError) as ei:
        table.set_range(b, key, posix(b, F_RDLCK, 5, 5), wait=False)
    assert ei.value.errno == errno.EAGAIN
    th, out = in_thread(lambda: table.set_range(b, key, posix(b, F_RDLCK, 5, 5), wait=True))
    assert still_waiting(th)
    table.set_range(a, key, posix(a, F_RDLCK, 0, 9), wait=False)     # a downgrade wakes it
    th.join(5)
    assert out == [None]
    assert [(h[0], h[1]) for h in table.holds(key)] == [(a.fds, F_RDLCK), (b.fds, F_RDLCK)]


def test_wait_ends_when_the_holder_closes_or_exits(kernel):
    a, b = FakeTask(kernel), FakeTask(kernel)
    table = kernel.file_locks
    node = object()
    fa, fa2, fb = File(node), File(node), File(node)
    first = a.fds.alloc(fa)
    a.fds.alloc(fa2)
    b.fds.alloc(fb)
    table.set_range(a, node, posix(a, F_WRLCK, 0), wait=False)
    th, out = in_thread(lambda: table.set_range(b, node, posix(b, F_WRLCK, 0), wait=True))
    assert still_waiting(th)
    a.fds.close(first + 1)              # another descriptor of the file: the lock goes
    th.join(5)
    assert out == [None]
    table.set_range(b, node, posix(b, F_UNLCK, 0), wait=False)

    table.set_range(a, node, posix(a, F_WRLCK, 0), wait=False)
    th, out = in_thread(lambda: table.set_range(b, node, posix(b, F_WRLCK, 0), wait=True))
    assert still_waiting(th)
    a.fds.release()                     # the process exits
    th.join(5)
    assert out == [None]


def test_a_fork_child_owns_none_of_its_parents_locks(kernel):
    parent = FakeTask(kernel)
    node = object()
    f = File(node)
    fd = parent.fds.alloc(f)
    kernel.file_locks.set_range(parent, node, posix(parent, F_WRLCK, 0), wait=False)
    child = FakeTask(kernel)
    child.fds = parent.fds.copy()
    with pytest.raises(SyscallError):
        kernel.file_locks.set_range(child, node, posix(child, F_WRLCK, 0), wait=False)
    child.fds.close(fd)                 # the child's close leaves the parent's lock
    child.fds.release()
    assert [h[0] for h in kernel.file_locks.holds(node)] == [parent.fds]


def test_posix_cycle_is_edeadlk(kernel):
    a, b = FakeTask(kernel), FakeTask(kernel)
    table, key = kernel.file_locks, object()
    table.set_range(a, key, posix(a, F_WRLCK, 0, 0), wait=False)
    table.set_range(b, key, posix(b, F_WRLCK, 1, 1), wait=False)
    th, out = in_thread(lambda: table.set_range(b, key, posix(b, F_WRLCK, 0, 0), wait=True))
    assert still_waiting(th)
    with pytest.raises(SyscallError) as ei:
        table.set_range(a, key, posix(a, F_WRLCK, 1, 1), wait=True)
    assert ei.value.errno == errno.EDEADLK
    table.set_range(a, key, posix(a, F_UNLCK, 0), wait=False)
    th.join(5)
    assert out == [None]
    assert not table._waiting


def test_ofd_requests_are_never_refused_for_a_cycle(kernel):
    a, b = FakeTask(kernel), FakeTask(kernel)
    table, key = kernel.file_locks, object()
    da = File(key)
    table.set_range(a, key, Record(da, F_WRLCK, 0, 0, ofd=True), wait=False)
    table.set_range(b, key, posix(b, F_WRLCK, 1, 1), wait=False)
    th, out = in_thread(lambda: table.set_range(b, key, posix(b, F_WRLCK, 0, 0), wait=True))
    assert still_waiting(th)             # behind an OFD lock: not followed for cycles
    a.pending = True                     # so the OFD request below ends by a signal
    with pytest.raises(SyscallError) as ei:
        table.set_range(a, key, Record(da, F_WRLCK, 1, 1, ofd=True), wait=True)
    assert ei.value.errno == ERESTARTSYS
    table.release_description(da)
    th.join(5)
    assert out == [None]


def test_flock_wait_ends_at_the_last_close_of_the_holder(kernel):
    a, b = FakeTask(kernel), FakeTask(kernel)
    table, node = kernel.file_locks, object()
    fa, fb = File(node), File(node)
    fd = a.fds.alloc(fa)
    dup = a.fds.alloc(fa)
    table.flock(a, node, fa, F_WRLCK, wait=False, pid=1)
    th, out = in_thread(lambda: table.flock(b, node, fb, F_RDLCK, wait=True, pid=2))
    a.fds.close(fd)
    assert still_waiting(th)             # a dup still names the description
    a.fds.close(dup)
    th.join(5)
    assert out == [None]


def test_signal_and_stop_end_a_wait(kernel):
    a, b = FakeTask(kernel), FakeTask(kernel)
    table, key = kernel.file_locks, object()
    table.set_range(a, key, posix(a, F_WRLCK, 0), wait=False)
    th, out = in_thread(lambda: table.set_range(b, key, posix(b, F_WRLCK, 0), wait=True))
    assert still_waiting(th)
    b.pending = True
    b.waker.set()                        # what Task.send_signal does
    th.join(5)
    assert isinstance(out[0], SyscallError) and out[0].errno == ERESTARTSYS
    b.pending = False
    th, out = in_thread(lambda: table.set_range(b, key, posix(b, F_WRLCK, 0), wait=True))
    assert still_waiting(th)
    t0 = time.monotonic()
    kernel.stopping = True
    b.waker.set()                        # what Kernel.stop does
    th.join(5)
    assert isinstance(out[0], Stopped) and time.monotonic() - t0 < 1
    assert [h[0] for h in table.holds(key)] == [a.fds] and not table._waiting
