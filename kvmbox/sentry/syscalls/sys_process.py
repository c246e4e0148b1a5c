"""Handlers for process lifetime and per-thread CPU state: exit, exit_group, arch_prctl."""
from __future__ import annotations

import errno

from kvmbox.abi.structs import U64
from kvmbox.errors import SyscallError
from kvmbox.guest_stub.layout import USER_TOP
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import SUPPORTED, Entry
from kvmbox.sentry.task import TaskExit

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012


def exit(t, a) -> int:  # noqa: A001 - the syscall's name
    """Implements Linux syscall exit(2)."""
    t.thread_exit = True                # this thread only (kvmbox/sentry/lifecycle.py finish)
    raise TaskExit(a[0] & 0xFF)


def exit_group(t, a) -> int:
    """Implements Linux syscall exit_group(2)."""
    raise TaskExit(a[0] & 0xFF)


def arch_prctl(t, a) -> int:
    """Implements Linux syscall arch_prctl(2)."""
    code, addr = s32(a[0]), a[1]
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= USER_TOP:
            raise SyscallError(errno.EPERM)
        t.ctx.set_regs(**{"fs_base" if code == ARCH_SET_FS else "gs_base": addr})
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        value = t.ctx.get_regs()["fs_base" if code == ARCH_GET_FS else "gs_base"]
        t.mm.copy_out(addr, U64.pack(value))
        return 0
    if code == ARCH_GET_CPUID:
        return 1                     # cpuid is not faulting (the guest sees the real CPUID)
    if code == ARCH_SET_CPUID:
        raise SyscallError(errno.ENODEV)
    raise SyscallError(errno.EINVAL)


ENTRIES = (
    Entry("exit", exit, SUPPORTED, "ends the calling thread; the process ends with its last"),
    Entry("exit_group", exit_group, SUPPORTED, "ends every thread of the process"),
    Entry("arch_prctl", arch_prctl, SUPPORTED, "FS/GS base through the vCPU state; CPUID faulting unsupported"),
)
