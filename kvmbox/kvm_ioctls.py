"""Thin typed wrappers over /dev/kvm: Kvm (system fd), Vm (VM fd), Vcpu (vCPU fd).

One class per fd kind, as rust-vmm's kvm-ioctls does.  Ioctl numbers are built
from _IO/_IOR/_IOW/_IOWR below and declared in one place; struct layouts are
declared once.  Every failing ioctl raises KvmError naming the ioctl and errno.
This module, guest_stub/ and mm/memfile.py are the only ones doing raw ioctls.
"""
from __future__ import annotations

import enum
import errno
import fcntl
import mmap
import os
import struct

from kvmbox.record import record

# --- ioctl number construction (include/uapi/asm-generic/ioctl.h) ----------
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _IOC(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _IO(nr: int) -> int:
    return _IOC(_IOC_NONE, nr, 0)


def _IOR(nr: int, size: int) -> int:
    return _IOC(_IOC_READ, nr, size)


def _IOW(nr: int, size: int) -> int:
    return _IOC(_IOC_WRITE, nr, size)


def _IOWR(nr: int, size: int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, nr, size)


# --- struct layouts (arch/x86/include/uapi/asm/kvm.h, include/uapi/linux/kvm.h)
REGS_FMT = "18Q"                      # rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags
REGS_SIZE = struct.calcsize(REGS_FMT)  # 144
SEGMENT_FMT = "QIHBBBBBBBBBB"          # base limit selector type present dpl db s l g avl unusable pad
SEGMENT_SIZE = struct.calcsize(SEGMENT_FMT)  # 24
SREGS_SIZE = 312                      # 8 segments, gdt, idt, cr0 cr2 cr3 cr4 cr8 efer apic_base, bitmap
SREGS_DTABLE_OFF = 8 * SEGMENT_SIZE   # gdt at 192, idt at 208 (base Q, limit H, pad)
SREGS_CR_OFF = SREGS_DTABLE_OFF + 32  # cr0 cr2 cr3 cr4 cr8 efer apic_base
EVENTS_SIZE = 64
XCRS_SIZE = 8 + 16 * 16 + 16 * 8
CPUID_ENTRY_SIZE = 40
USER_MEMORY_REGION_FMT = "IIQQQ"      # slot flags guest_phys_addr memory_size userspace_addr

KVM_GET_API_VERSION = _IO(0x00)
KVM_CREATE_VM = _IO(0x01)
KVM_CHECK_EXTENSION = _IO(0x03)
KVM_GET_VCPU_MMAP_SIZE = _IO(0x04)
KVM_GET_SUPPORTED_CPUID = _IOWR(0x05, 8)
KVM_CREATE_VCPU = _IO(0x41)
KVM_SET_USER_MEMORY_REGION = _IOW(0x46, struct.calcsize(USER_MEMORY_REGION_FMT))
KVM_RUN = _IO(0x80)
KVM_GET_REGS = _IOR(0x81, REGS_SIZE)
KVM_SET_REGS = _IOW(0x82, REGS_SIZE)
KVM_GET_SREGS = _IOR(0x83, SREGS_SIZE)
KVM_SET_SREGS = _IOW(0x84, SREGS_SIZE)
KVM_GET_MSRS = _IOWR(0x88, 8)
KVM_SET_MSRS = _IOW(0x89, 8)
KVM_SET_CPUID2 = _IOW(0x90, 8)
KVM_GET_VCPU_EVENTS = _IOR(0x9F, EVENTS_SIZE)
KVM_SET_XCRS = _IOW(0xA7, XCRS_SIZE)
XSAVE_SIZE = 4096                      # struct kvm_xsave: the standard (non-compacted) XSAVE image
KVM_GET_XSAVE = _IOR(0xA4, XSAVE_SIZE)
KVM_SET_XSAVE = _IOW(0xA5, XSAVE_SIZE)

KVM_CAP_SYNC_REGS = 74
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS, KVM_SYNC_X86_EVENTS = 1, 2, 4

# kvm_run field offsets
RUN_IMMEDIATE_EXIT = 1
RUN_EXIT_REASON = 8
RUN_EXIT_UNION = 32                   # io / mmio / fail_entry / internal
RUN_VALID_REGS = 288
RUN_DIRTY_REGS = 296
RUN_SYNC_REGS = 304                   # kvm_regs, then kvm_sregs, then kvm_vcpu_events
RUN_SYNC_SREGS = RUN_SYNC_REGS + REGS_SIZE
RUN_SYNC_EVENTS = RUN_SYNC_SREGS + SREGS_SIZE

# register indexes in kvm_regs
RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP = range(8)
R8, R9, R10, R11, R12, R13, R14, R15, RIP, RFLAGS = range(8, 18)


class VcpuExit(enum.IntEnum):
    """KVM_EXIT_* reasons kvmbox distinguishes; anything else is UNKNOWN."""
    UNKNOWN = 0
    EXCEPTION = 1
    IO = 2
    HYPERCALL = 3
    DEBUG = 4
    HLT = 5
    MMIO = 6
    IRQ_WINDOW_OPEN = 7
    SHUTDOWN = 8
    FAIL_ENTRY = 9
    INTR = 10
    INTERNAL_ERROR = 17
    SYSTEM_EVENT = 24
    INTERRUPTED = 1000               # KVM_RUN returned EINTR (signal / immediate_exit)


_EXIT_BY_CODE = {e.value: e for e in VcpuExit}


class KvmError(OSError):
    """An ioctl on a KVM fd failed."""

    def __init__(self, what: str, err: int) -> None:
        super().__init__(err, f"{what}: {os.strerror(err)} ({errno.errorcode.get(err, err)})")
        self.what = what


def _ioctl(fd: int, name: str, req: int, arg=0, mutate: bool = True):
    try:
        if isinstance(arg, bytearray):
            return fcntl.ioctl(fd, req, arg, mutate)
        return fcntl.ioctl(fd, req, arg)
    except OSError as e:
        raise KvmError(name, e.errno or errno.EIO) from None


@record(frozen=True)
class IoExit:
    """Decoded KVM_EXIT_IO."""
    port: int
    is_out: bool
    size: int
    count: int
    value: int


class Kvm:
    """The /dev/kvm system fd."""

    def __init__(self, path: str = "/dev/kvm") -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            version = _ioctl(self.fd, "KVM_GET_API_VERSION", KVM_GET_API_VERSION)
            if version != 12:
                raise KvmError(f"KVM_GET_API_VERSION returned {version}", errno.ENOTSUP)
            self.vcpu_mmap_size = _ioctl(self.fd, "KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE)
        except BaseException:
            os.close(self.fd)
            raise

    def check_extension(self, cap: int) -> int:
        return _ioctl(self.fd, "KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, cap)

    def supported_cpuid(self, max_entries: int = 256) -> bytearray:
        """KVM_GET_SUPPORTED_CPUID as a raw kvm_cpuid2 buffer (nent updated)."""
        buf = bytearray(struct.pack("II", max_entries, 0) + bytes(CPUID_ENTRY_SIZE * max_entries))
        _ioctl(self.fd, "KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID, buf)
        return buf

    def create_vm(self) -> "Vm":
        return Vm(self, _ioctl(self.fd, "KVM_CREATE_VM", KVM_CREATE_VM, 0))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Vm:
    """A VM fd: memory slots and vCPU creation."""

    def __init__(self, kvm: Kvm, fd: int) -> None:
        self.kvm = kvm
        self.fd = fd
        self.vcpus: list[Vcpu] = []

    def set_user_memory_region(self, slot: int, guest_phys: int, size: int, host_addr: int,
                               flags: int = 0) -> None:
        arg = struct.pack(USER_MEMORY_REGION_FMT, slot, flags, guest_phys, size, host_addr)
        _ioctl(self.fd, "KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION, arg)

    def create_vcpu(self, index: int) -> "Vcpu":
        fd = _ioctl(self.fd, "KVM_CREATE_VCPU", KVM_CREATE_VCPU, index)
        vcpu = Vcpu(self, fd, index)
        self.vcpus.append(vcpu)
        return vcpu

    def close(self) -> None:
        for v in self.vcpus:
            v.close()
        self.vcpus.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Vcpu:
    """A vCPU fd and its mmapped kvm_run, with sync regs as the register channel."""

    def __init__(self, vm: Vm, fd: int, index: int) -> None:
        self.vm = vm
        self.fd = fd
        self.index = index
        self.cpuid_set = False           # KVM_SET_CPUID2 done (allowed once a vCPU has run only unchanged)
        self.run_map = mmap.mmap(fd, vm.kvm.vcpu_mmap_size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        self._run_mv = memoryview(self.run_map)
        # Registers as an array of 18 u64 living in kvm_run (KVM_CAP_SYNC_REGS).
        self.regs = self._run_mv[RUN_SYNC_REGS:RUN_SYNC_REGS + REGS_SIZE].cast("Q")
        self.sregs_view = self._run_mv[RUN_SYNC_SREGS:RUN_SYNC_SREGS + SREGS_SIZE]
        self.events_view = self._run_mv[RUN_SYNC_EVENTS:RUN_SYNC_EVENTS + EVENTS_SIZE]
        self._ctl = self._run_mv[RUN_VALID_REGS:RUN_VALID_REGS + 16].cast("Q")
        self._reason = self._run_mv[RUN_EXIT_REASON:RUN_EXIT_REASON + 4].cast("I")
        self._io_port = self._run_mv[RUN_EXIT_UNION + 2:RUN_EXIT_UNION + 4].cast("H")

    # --- setup-time ioctls (never on the hot path) --------------------------
    def get_regs(self) -> bytearray:
        buf = bytearray(REGS_SIZE)
        _ioctl(self.fd, "KVM_GET_REGS", KVM_GET_REGS, buf)
        return buf

    def set_regs(self, buf: bytes) -> None:
        _ioctl(self.fd, "KVM_SET_REGS", KVM_SET_REGS, bytes(buf))

    def get_sregs(self) -> bytearray:
        buf = bytearray(SREGS_SIZE)
        _ioctl(self.fd, "KVM_GET_SREGS", KVM_GET_SREGS, buf)
        return buf

    def set_sregs(self, buf: bytes) -> None:
        _ioctl(self.fd, "KVM_SET_SREGS", KVM_SET_SREGS, bytes(buf))

    def set_msrs(self, msrs: dict[int, int]) -> None:
        body = b"".join(struct.pack("IIQ", idx, 0, val) for idx, val in msrs.items())
        n = _ioctl(self.fd, "KVM_SET_MSRS", KVM_SET_MSRS, bytearray(struct.pack("II", len(msrs), 0) + body))
        if n != len(msrs):
            bad = list(msrs)[n]
            raise KvmError(f"KVM_SET_MSRS refused MSR {bad:#x}", errno.EINVAL)

    def get_msr(self, index: int) -> int:
        buf = bytearray(struct.pack("II", 1, 0) + struct.pack("IIQ", index, 0, 0))
        n = _ioctl(self.fd, "KVM_GET_MSRS", KVM_GET_MSRS, buf)
        if n != 1:
            raise KvmError(f"KVM_GET_MSRS refused MSR {index:#x}", errno.EINVAL)
        return struct.unpack_from("Q", buf, 16)[0]

    def set_cpuid2(self, cpuid2: bytes) -> None:
        _ioctl(self.fd, "KVM_SET_CPUID2", KVM_SET_CPUID2, bytearray(cpuid2))

    def set_xcr0(self, value: int) -> None:
        buf = bytearray(XCRS_SIZE)
        struct.pack_into("IIIIQ", buf, 0, 1, 0, 0, 0, value)
        _ioctl(self.fd, "KVM_SET_XCRS", KVM_SET_XCRS, buf)

    def get_xsave(self) -> bytearray:
        """The vCPU's FPU/SSE/AVX state as a 4096-byte standard-format XSAVE image."""
        buf = bytearray(XSAVE_SIZE)
        _ioctl(self.fd, "KVM_GET_XSAVE", KVM_GET_XSAVE, buf)
        return buf

    def set_xsave(self, image: bytes) -> None:
        """Load an XSAVE image (padded to 4096 bytes); KvmError(EINVAL) for a malformed one."""
        buf = bytearray(XSAVE_SIZE)
        buf[:min(len(image), XSAVE_SIZE)] = image[:XSAVE_SIZE]
        _ioctl(self.fd, "KVM_SET_XSAVE", KVM_SET_XSAVE, buf)

    def get_vcpu_events(self) -> bytearray:
        buf = bytearray(EVENTS_SIZE)
        _ioctl(self.fd, "KVM_GET_VCPU_EVENTS", KVM_GET_VCPU_EVENTS, buf)
        return buf

    # --- the hot path -------------------------------------------------------
    def enable_sync_regs(self, mask: int) -> None:
        """Ask KVM to copy these register sets into kvm_run on every exit."""
        self._ctl[0] = mask

    def mark_dirty(self, mask: int) -> None:
        """Registers edited in kvm_run that KVM must load before the next entry."""
        self._ctl[1] |= mask

    def clear_dirty(self) -> None:
        """Forget edits in kvm_run that no entry consumed (a pooled vCPU's previous run)."""
        self._ctl[1] = 0

    def run(self) -> VcpuExit:
        """One KVM_RUN; returns the exit reason (INTERRUPTED on EINTR)."""
        try:
            fcntl.ioctl(self.fd, KVM_RUN, 0)
        except InterruptedError:
            return VcpuExit.INTERRUPTED
        except OSError as e:
            raise KvmError("KVM_RUN", e.errno or errno.EIO) from None
        return _EXIT_BY_CODE.get(self._reason[0], VcpuExit.UNKNOWN)

    def raw_exit_reason(self) -> int:
        return self._reason[0]

    def set_immediate_exit(self, on: bool) -> None:
        self.run_map[RUN_IMMEDIATE_EXIT] = 1 if on else 0

    def io_port(self) -> int:
        """The port of the last KVM_EXIT_IO."""
        return self._io_port[0]

    def io(self) -> IoExit:
        direction, size, port, count, data_off = struct.unpack_from("BBHIQ", self.run_map, RUN_EXIT_UNION)
        value = int.from_bytes(self.run_map[data_off:data_off + size], "little")
        return IoExit(port, direction == 1, size, count, value)

    def exit_details(self) -> bytes:
        """The raw exit union (for reports on unexpected exits)."""
        return bytes(self.run_map[RUN_EXIT_UNION:RUN_EXIT_UNION + 64])

    def sync_cr(self, index: int) -> int:
        """cr0, cr2, cr3, cr4, cr8, efer (index 0..5) from the synced sregs."""
        return struct.unpack_from("Q", self.sregs_view, SREGS_CR_OFF + 8 * index)[0]

    def close(self) -> None:
        if self.fd >= 0:
            self.regs.release()
            self.sregs_view.release()
            self.events_view.release()
            self._ctl.release()
            self._reason.release()
            self._io_port.release()
            self._run_mv.release()
            self.run_map.close()
            os.close(self.fd)
            self.fd = -1
