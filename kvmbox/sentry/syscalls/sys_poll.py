"""Handlers for readiness waits: poll, ppoll, select, pselect6.

Readiness comes from FileDescription.poll(events) (pipes, eventfds, files;
the Sentry's own standard streams ask the host with a zero-timeout poll).  A
wait goes through kvmbox/sentry/waiter.block: the task's Waker is registered
with every object that can announce changes (`watch`/`unwatch`), host streams'
fds are polled with it, and a timeout, kill or signal ends it at once.

As in Linux, a wait that finds nothing ready while a signal the task does not
block is pending ends with ERESTARTNOHAND: the dispatcher then runs the handler
and the call fails with EINTR, or restarts it when no handler ran.  ppoll and
pselect6 install their signal mask for the wait (saved_sigmask keeps the old
one, which an interrupting handler's frame records and sigreturn restores).
"""
from __future__ import annotations

import errno
import struct
import time

from kvmbox.abi import signals as S
from kvmbox.abi.poll import (POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI, POLLRDBAND, POLLRDNORM,
                             POLLWRBAND, POLLWRNORM)
from kvmbox.abi.structs import POLLFD, SIGSET
from kvmbox.errors import SyscallError
from kvmbox.sentry.signals.deliver import ERESTARTNOHAND
from kvmbox.sentry.waiter import block
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import PARTIAL, Entry

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

TIMESPEC = struct.Struct("<qq")
SIGSET_SIZE = SIGSET.size
POLLIN_SET = POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR
POLLOUT_SET = POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR
POLLEX_SET = POLLPRI


def _ready(f: "FileDescription", events: int) -> int:
    return f.poll(events)


def wait_ready(t: "Task", files: list[tuple["FileDescription", int]], check,
               deadline: float | None) -> None:
    """Call check() until it reports something ready (True) or `deadline` passes; blocks in
    waiter.block, woken by the files' changes (host streams: their fds are polled), raising
    Stopped when the run is stopped, and ERESTARTNOHAND when an unblocked signal is pending
    and nothing is ready (Linux checks it before the timeout).  files: (file, the poll
    events the wait is for), which say what to poll a host stream's fd for."""
    if check():
        return
    if t.signal_pending():
        raise SyscallError(ERESTARTNOHAND)
    host = [h for h in (f.host_wait(ev) for f, ev in files) if h is not None]
    block(t, check, sources=[f for f, _ in files], host=host, deadline=deadline,
          interrupt=ERESTARTNOHAND)


def _deadline(timeout_ns: int | None) -> float | None:
    return None if timeout_ns is None else time.monotonic() + timeout_ns / 1e9


# --- poll ------------------------------------------------------------------------------------
def do_poll(t: "Task", addr: int, nfds: int, timeout_ns: int | None) -> int:
    if nfds < 0 or nfds > t.rlimits[7][0]:
        raise SyscallError(errno.EINVAL)
    raw = t.mm.copy_in(addr, nfds * POLLFD.size) if nfds else b""
    entries = [POLLFD.unpack_from(raw, i * POLLFD.size) for i in range(nfds)]
    files: list["FileDescription | None"] = []
    for fd, _ev, _rev in entries:
        try:
            files.append(t.fds.get(fd) if fd >= 0 else None)
        except SyscallError:
            files.append(None)
    revents = [0] * nfds

    def check() -> bool:
        n = 0
        for i, (fd, events, _r) in enumerate(entries):
            f = files[i]
            if fd < 0:
                r = 0
            elif f is None:
                r = POLLNVAL
            else:
                want = (events & 0xFFFF) | POLLERR | POLLHUP
                r = _ready(f, want) & (want | POLLNVAL)
            revents[i] = r
            n += bool(r)
        return n > 0

    wait_ready(t, [(f, ev & 0xFFFF) for f, (_fd, ev, _r) in zip(files, entries) if f is not None],
               check, _deadline(timeout_ns))
    out = b"".join(POLLFD.pack(fd, ev, revents[i] if revents[i] < 0x8000 else revents[i] - 0x10000)
                   for i, (fd, ev, _r) in enumerate(entries))
    if out:
        t.mm.copy_out(addr, out)
    return sum(1 for r in revents if r)


def poll(t: "Task", a: Args) -> int:
    """Implements Linux syscall poll(2)."""
    addr, nfds, timeout = a[0], a[1] & 0xFFFFFFFF, s32(a[2])
    return do_poll(t, addr, nfds, None if timeout < 0 else timeout * 1_000_000)


def _read_timespec(t: "Task", addr: int) -> int | None:
    if not addr:
        return None
    sec, nsec = TIMESPEC.unpack(t.mm.copy_in(addr, TIMESPEC.size))
    if sec < 0 or not 0 <= nsec < 10**9:
        raise SyscallError(errno.EINVAL)
    return sec * 10**9 + nsec


def _write_left(t: "Task", addr: int, start: float, timeout_ns: int | None) -> None:
    if addr and timeout_ns is not None:
        left = max(0, timeout_ns - int((time.monotonic() - start) * 1e9))
        try:
            t.mm.copy_out(addr, TIMESPEC.pack(left // 10**9, left % 10**9))
        except SyscallError:
            pass


def _read_mask(t: "Task", addr: int) -> int:
    (mask,) = SIGSET.unpack(t.mm.copy_in(addr, SIGSET_SIZE))
    return mask & ~S.UNBLOCKABLE_MASK


def _with_sigmask(t: "Task", mask: int | None, wait) -> int:
    """Run wait() under the caller's temporary signal mask (ppoll, pselect6).

    The old mask comes back on return, except when a signal interrupts the wait:
    then it stays in saved_sigmask for delivery to put in the handler's frame
    (or to restore itself when no handler runs), as Linux's
    restore_saved_sigmask_unless(-EINTR) arranges.
    """
    if mask is None:
        return wait()
    old = t.sigmask
    t.saved_sigmask, t.sigmask = old, mask
    try:
        n = wait()
    except SyscallError as e:
        if e.errno != ERESTARTNOHAND:
            t.sigmask, t.saved_sigmask = old, None
        raise
    t.sigmask, t.saved_sigmask = old, None
    return n


def ppoll(t: "Task", a: Args) -> int:
    """Implements Linux syscall ppoll(2)."""
    addr, nfds, tmo, sigmask, sigsetsize = a[0], a[1] & 0xFFFFFFFF, a[2], a[3], a[4]
    timeout_ns = _read_timespec(t, tmo)
    mask = None
    if sigmask:
        if sigsetsize != SIGSET_SIZE:
            raise SyscallError(errno.EINVAL)
        mask = _read_mask(t, sigmask)
    start = time.monotonic()
    try:
        return _with_sigmask(t, mask, lambda: do_poll(t, addr, nfds, timeout_ns))
    finally:
        _write_left(t, tmo, start, timeout_ns)


# --- select ----------------------------------------------------------------------------------
def do_select(t: "Task", nfds: int, rp: int, wp: int, xp: int, timeout_ns: int | None) -> int:
    if nfds < 0:
        raise SyscallError(errno.EINVAL)
    nfds = min(nfds, t.fds.capacity)     # Linux ignores bits past its fd table's size
    nbytes = (nfds + 63) // 64 * 8
    sets = []
    for p in (rp, wp, xp):
        sets.append(int.from_bytes(t.mm.copy_in(p, nbytes), "little") if p and nbytes else 0)
    wanted = sets[0] | sets[1] | sets[2]
    files: dict[int, "FileDescription"] = {}
    for fd in range(nfds):
        if wanted >> fd & 1:
            files[fd] = t.fds.get(fd)                   # EBADF for a closed fd in any set
    result = [0, 0, 0]

    def check() -> bool:
        res = [0, 0, 0]
        for fd, f in files.items():
            bit = 1 << fd
            want = 0
            if sets[0] & bit:
                want |= POLLIN_SET
            if sets[1] & bit:
                want |= POLLOUT_SET
            if sets[2] & bit:
                want |= POLLEX_SET
            r = _ready(f, want | POLLERR | POLLHUP)
            if sets[0] & bit and r & POLLIN_SET:
                res[0] |= bit
            if sets[1] & bit and r & POLLOUT_SET:
                res[1] |= bit
            if sets[2] & bit and r & POLLEX_SET:
                res[2] |= bit
        result[:] = res
        return any(res)

    def events_of(fd: int) -> int:
        bit = 1 << fd
        return ((POLLIN if sets[0] & bit else 0) | (POLLOUT if sets[1] & bit else 0)
                | (POLLPRI if sets[2] & bit else 0))

    wait_ready(t, [(f, events_of(fd)) for fd, f in files.items()], check, _deadline(timeout_ns))
    for p, bits in zip((rp, wp, xp), result):
        if p and nbytes:
            t.mm.copy_out(p, bits.to_bytes(nbytes, "little"))
    return sum(bin(b).count("1") for b in result)


def select(t: "Task", a: Args) -> int:
    """Implements Linux syscall select(2)."""
    nfds, rp, wp, xp, tvp = s32(a[0]), a[1], a[2], a[3], a[4]
    timeout_ns = None
    if tvp:
        sec, usec = TIMESPEC.unpack(t.mm.copy_in(tvp, TIMESPEC.size))
        if sec < 0 or usec < 0:
            raise SyscallError(errno.EINVAL)
        timeout_ns = sec * 10**9 + min(usec, 10**15) * 1000
    start = time.monotonic()
    n = do_select(t, nfds, rp, wp, xp, timeout_ns)
    if tvp and timeout_ns is not None:
        left = max(0, timeout_ns - int((time.monotonic() - start) * 1e9))
        try:
            t.mm.copy_out(tvp, TIMESPEC.pack(left // 10**9, left % 10**9 // 1000))
        except SyscallError:
            pass
    return n


def pselect6(t: "Task", a: Args) -> int:
    """Implements Linux syscall pselect6(2)."""
    nfds, rp, wp, xp, tsp, sigp = s32(a[0]), a[1], a[2], a[3], a[4], a[5]
    timeout_ns = _read_timespec(t, tsp)
    mask = None
    if sigp:
        mask_addr, size = struct.unpack("<QQ", t.mm.copy_in(sigp, 16))
        if mask_addr:
            if size != SIGSET_SIZE:
                raise SyscallError(errno.EINVAL)
            mask = _read_mask(t, mask_addr)
    start = time.monotonic()
    try:
        return _with_sigmask(t, mask, lambda: do_select(t, nfds, rp, wp, xp, timeout_ns))
    finally:
        _write_left(t, tsp, start, timeout_ns)



ENTRIES = (
    Entry("poll", poll, PARTIAL, "pipes, eventfds, files, host streams"),
    Entry("ppoll", ppoll, PARTIAL, "as poll, with the signal mask applied during the wait"),
    Entry("select", select, PARTIAL, "as poll"),
    Entry("pselect6", pselect6, PARTIAL, "as poll, with the signal mask applied during the wait"),
)
