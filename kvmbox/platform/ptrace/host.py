"""The raw host calls of the ptrace platform (ctypes stays in here).

ptrace(2) requests on a stub, the one-time mapping of the stub code page into
the Sentry, and spawn(): a ctypes call into that page that forks a stub.
Everything here must be called from the thread that spawned the stub (ptrace
requests are only accepted from the tracer thread).
"""
from __future__ import annotations

import ctypes
import os
import threading

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

Regs = ctypes.c_uint64 * C.NUM_REGS      # struct user_regs_struct
SigInfo = ctypes.c_uint8 * C.SIGINFO_SIZE



class _SockFprog(ctypes.Structure):
    """struct sock_fprog: a BPF program for seccomp(SECCOMP_SET_MODE_FILTER)."""
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_SPAWN_PROTO = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long,
                                ctypes.c_long, ctypes.c_long)
_spawn_fn = None
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


def _map_stub_page():
    """Map the stub code page at PTRACE_STUB_VIRT in this process, once; returns spawn()."""
    global _spawn_fn
    with _lock:
        if _spawn_fn is None:
            prot_rw, prot_rx = 3, 5                      # PROT_READ|PROT_WRITE, PROT_READ|PROT_EXEC
            flags = C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_FIXED_NOREPLACE
            addr = _mmap(L.PTRACE_STUB_VIRT, L.PAGE_SIZE, prot_rw, flags, -1, 0)
            if addr != L.PTRACE_STUB_VIRT:
                raise PlatformUnavailable(f"kvmbox: cannot map the ptrace stub page at "
                                          f"{L.PTRACE_STUB_VIRT:#x} ({os.strerror(ctypes.get_errno())})")
            ctypes.memmove(addr, stubcode.STUB_CODE, len(stubcode.STUB_CODE))
            if _mprotect(addr, L.PAGE_SIZE, prot_rx):
                raise PlatformUnavailable("kvmbox: the host refuses an executable page for the ptrace stub")
            _spawn_fn = _SPAWN_PROTO(L.PTRACE_STUB_VIRT + stubcode.SPAWN_OFF)
        return _spawn_fn


def _rseq() -> tuple[int, int]:
    """(__rseq_offset, registered length) of glibc's per-thread rseq area; length 0: none."""
    try:
        offset = ctypes.c_ssize_t.in_dll(_libc, "__rseq_offset").value
        size = ctypes.c_uint.in_dll(_libc, "__rseq_size").value
    except ValueError:                                  # not glibc >= 2.35: nothing registered
        return 0, 0
    return (offset, max(size, C.RSEQ_AREA_MIN)) if size else (0, 0)


def spawn(memfd: int, filter_prog: bytes) -> int:
    """Fork a stub process (see stubcode); returns its pid.  The caller becomes its tracer."""
    fn = _map_stub_page()
    filt = ctypes.create_string_buffer(filter_prog, len(filter_prog))
    fprog = _SockFprog(len(filter_prog) // 8, ctypes.addressof(filt))
    pid = fn(memfd, ctypes.addressof(fprog), os.getpid(), *_rseq())
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
