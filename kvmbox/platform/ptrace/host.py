"""The raw host calls of the ptrace platform (ctypes stays in here).

ptrace(2) requests on a stub, the stub code page the Sentry maps once for its
whole life (reserve_stub_page), and spawn(): a ctypes call into that page that forks a stub.
Everything here must be called from the thread that spawned the stub (ptrace
requests are only accepted from the tracer thread).
"""
from __future__ import annotations

import ctypes
import os
import threading

from kvmbox.abi import mman
from kvmbox.errors import PlatformUnavailable
from kvmbox.guest_stub import layout as L
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace import stubcode

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_ptrace.restype = ctypes.c_long
_mmap = _libc.mmap
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_mmap.restype = ctypes.c_void_p
_mprotect = _libc.mprotect
_mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_mprotect.restype = ctypes.c_int
_munmap = _libc.munmap
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_munmap.restype = ctypes.c_int

Regs = ctypes.c_uint64 * C.NUM_REGS      # struct user_regs_struct
SigInfo = ctypes.c_uint8 * C.SIGINFO_SIZE



class _SockFprog(ctypes.Structure):
    """struct sock_fprog: a BPF program for seccomp(SECCOMP_SET_MODE_FILTER)."""
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_SPAWN_PROTO = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long,
                                ctypes.c_long, ctypes.c_long, ctypes.c_long)
_lock = threading.Lock()


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def ptrace(request: int, pid: int, addr: int = 0, data=None) -> int:
    """One ptrace request; raises OSError on failure."""
    r = _ptrace(request, pid, addr, data)
    if r == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, f"ptrace({request}, {pid}): {os.strerror(err)}")
    return r


def resume(request: int, pid: int) -> None:
    """PTRACE_SYSEMU / PTRACE_CONT with no signal (a stop's signal is always suppressed)."""
    if _ptrace(request, pid, None, None) == -1:
        raise _fail(f"ptrace({request}, {pid})")


def get_regs(pid: int, regs: ctypes.Array) -> None:
    if _ptrace(C.PTRACE_GETREGS, pid, None, ctypes.addressof(regs)) == -1:
        raise _fail("PTRACE_GETREGS")


def set_regs(pid: int, regs: ctypes.Array) -> None:
    if _ptrace(C.PTRACE_SETREGS, pid, None, ctypes.addressof(regs)) == -1:
        raise _fail("PTRACE_SETREGS")


def get_siginfo(pid: int, info: ctypes.Array) -> None:
    if _ptrace(C.PTRACE_GETSIGINFO, pid, None, ctypes.addressof(info)) == -1:
        raise _fail("PTRACE_GETSIGINFO")


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def get_xstate(pid: int, size: int = C.XSTATE_MAX) -> bytes:
    """PTRACE_GETREGSET NT_X86_XSTATE: the stopped stub's XSAVE image (the kernel's user size)."""
    buf = ctypes.create_string_buffer(size)
    iov = _Iovec(ctypes.addressof(buf), size)
    if _ptrace(C.PTRACE_GETREGSET, pid, C.NT_X86_XSTATE, ctypes.addressof(iov)) == -1:
        raise _fail("PTRACE_GETREGSET")
    return buf.raw[:iov.len]


def set_xstate(pid: int, image: bytes) -> None:
    """PTRACE_SETREGSET NT_X86_XSTATE; OSError(EINVAL) for an image the kernel refuses."""
    buf = ctypes.create_string_buffer(image, len(image))
    iov = _Iovec(ctypes.addressof(buf), len(image))
    if _ptrace(C.PTRACE_SETREGSET, pid, C.NT_X86_XSTATE, ctypes.addressof(iov)) == -1:
        raise _fail("PTRACE_SETREGSET")


def xstate_features(size: int) -> int:
    """The host's user XCR0 (arch_prctl ARCH_GET_XCOMP_SUPP); from the image size if refused."""
    value = ctypes.c_uint64(0)
    if _libc.syscall(C.NR_arch_prctl, C.ARCH_GET_XCOMP_SUPP, ctypes.byref(value)) == 0:
        return value.value
    return 0x7 if size > 576 else 0x3


class _StubPage:
    """The process's one stub code page: where, or why there is none (set once, under _lock)."""
    address = 0
    error = ""
    spawn = None                      # spawn() in the page, as a ctypes function


def _free_page_above(low: int) -> int:
    """The lowest address >= `low` with a free page in this process (from /proc/self/maps)."""
    spans = []
    with open("/proc/self/maps") as f:
        for line in f:
            lo_s, hi_s = line.split(" ", 1)[0].split("-")
            spans.append((int(lo_s, 16), int(hi_s, 16)))
    candidate = low
    for lo, hi in sorted(spans):
        if hi <= candidate:
            continue
        if lo >= candidate + L.PAGE_SIZE:
            break
        candidate = hi
    return candidate


def _map_at(addr: int) -> int:
    """A private read-write page at exactly `addr` if it is free, else 0."""
    flags = mman.MAP_PRIVATE | mman.MAP_ANONYMOUS | mman.MAP_FIXED_NOREPLACE
    got = _mmap(addr, L.PAGE_SIZE, mman.PROT_READ | mman.PROT_WRITE, flags, -1, 0)
    if got in (None, ctypes.c_void_p(-1).value):
        return 0
    if got != addr:                  # a kernel without MAP_FIXED_NOREPLACE took it as a hint
        _munmap(got, L.PAGE_SIZE)
        return 0
    return addr


def reserve_stub_page() -> None:
    """Map the stub code page in this process, for its whole life (kvmbox/__init__ calls this
    at import, before any guest memory exists, so no later mapping can take the address).

    The page goes at layout.PTRACE_STUB_VIRT, or, if something was there already, at the
    lowest free page above the guest's range (the code is position-independent).  Never
    raises: a failure is reported by stub_page() when a ptrace platform is wanted."""
    with _lock:
        if _StubPage.address or _StubPage.error:
            return
        addr = _map_at(L.PTRACE_STUB_VIRT)
        for _attempt in range(3):                     # another thread may take a gap meanwhile
            if addr:
                break
            free = _free_page_above(L.USER_TOP)
            addr = _map_at(free) if free + L.PAGE_SIZE <= C.TASK_SIZE else 0
        if not addr:
            _StubPage.error = (f"kvmbox: no room for the ptrace stub page above "
                               f"{L.USER_TOP:#x} in this process")
            return
        ctypes.memmove(addr, stubcode.STUB_CODE, len(stubcode.STUB_CODE))
        if _mprotect(addr, L.PAGE_SIZE, mman.PROT_READ | mman.PROT_EXEC):
            _munmap(addr, L.PAGE_SIZE)
            _StubPage.error = "kvmbox: the host refuses an executable page for the ptrace stub"
            return
        _StubPage.spawn = _SPAWN_PROTO(addr + stubcode.SPAWN_OFF)
        _StubPage.address = addr


def stub_page() -> int:
    """The address of this process's stub code page; PlatformUnavailable if there is none."""
    if not _StubPage.address:
        reserve_stub_page()
        if not _StubPage.address:
            raise PlatformUnavailable(_StubPage.error)
    return _StubPage.address


def _rseq() -> tuple[int, int]:
    """(__rseq_offset, registered length) of glibc's per-thread rseq area; length 0: none."""
    try:
        offset = ctypes.c_ssize_t.in_dll(_libc, "__rseq_offset").value
        size = ctypes.c_uint.in_dll(_libc, "__rseq_size").value
    except ValueError:                                  # not glibc >= 2.35: nothing registered
        return 0, 0
    return (offset, max(size, C.RSEQ_AREA_MIN)) if size else (0, 0)


def spawn(memfd: int, code_fd: int, filter_prog: bytes) -> int:
    """Fork a stub process (see stubcode); returns its pid.  The caller becomes its tracer.

    `code_fd` holds the stub code page's bytes; the child maps it over its copy of the page."""
    stub_page()
    fn = _StubPage.spawn
    filt = ctypes.create_string_buffer(filter_prog, len(filter_prog))
    fprog = _SockFprog(len(filter_prog) // 8, ctypes.addressof(filt))
    pid = fn(memfd, ctypes.addressof(fprog), os.getpid(), *_rseq(), code_fd)
    if pid < 0:
        raise OSError(-pid, f"fork (ptrace stub): {os.strerror(-pid)}")
    return pid


_sched_getcpu = _libc.sched_getcpu
_sched_getcpu.argtypes = ()
_sched_getcpu.restype = ctypes.c_int


def current_cpu() -> int:
    """The CPU the calling thread runs on now (-1 if unknown)."""
    return _sched_getcpu()


def run_guest(pid: int, regs_addr: int, load: bool) -> int:
    """The hot path: [PTRACE_SETREGS,] PTRACE_SYSEMU, waitpid, PTRACE_GETREGS; returns the wait status.

    `regs_addr` is the address of the context's user_regs_struct; the registers
    are read back only when the stub stopped (not when it died).
    """
    if load and _ptrace(C.PTRACE_SETREGS, pid, None, regs_addr) == -1:
        raise _fail("PTRACE_SETREGS")
    if _ptrace(C.PTRACE_SYSEMU, pid, None, None) == -1:
        raise _fail("PTRACE_SYSEMU")
    status = os.waitpid(pid, C.WALL)[1]
    if (status & 0xFF) == 0x7F and _ptrace(C.PTRACE_GETREGS, pid, None, regs_addr) == -1:   # WIFSTOPPED
        raise _fail("PTRACE_GETREGS")
    return status


def event_msg(pid: int) -> int:
    """PTRACE_GETEVENTMSG: the message of the tracee's last event stop (a clone's new tid)."""
    value = ctypes.c_ulong(0)
    if _ptrace(C.PTRACE_GETEVENTMSG, pid, None, ctypes.byref(value)) == -1:
        raise _fail("PTRACE_GETEVENTMSG")
    return value.value


def tgkill(tgid: int, tid: int, sig: int) -> None:
    """Send `sig` to thread `tid` of process `tgid` (not to any thread of it, as kill does)."""
    if _libc.syscall(C.NR_tgkill, tgid, tid, sig) == -1:
        raise _fail("tgkill")
