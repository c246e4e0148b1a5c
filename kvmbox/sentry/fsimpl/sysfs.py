"""/sys: a read-only tmpfs with the few files programs read to learn about the machine.

    devices/system/cpu/online, possible, present   the sandbox's CPUs, "0-N" (Linux's
        cpulist format), as glibc's get_nprocs and get_nprocs_conf read them for
        sysconf(_SC_NPROCESSORS_ONLN / _CONF): nproc, os.cpu_count(), getconf, make -j.

Nothing of the host's /sys shows.  The contents are fixed for the sandbox's life.
"""
from __future__ import annotations

from kvmbox.sentry.fsimpl.tmpfs import Tmpfs

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.frames import FrameAllocator
    from kvmbox.mm.memfile import MemoryFile


def cpu_list(count: int) -> str:
    """CPUs 0..count-1 in the kernel's cpulist format: "0", "0-3"."""
    return "0" if count == 1 else f"0-{count - 1}"


def build_sysfs(dev: int, memfile: "MemoryFile", frames: "FrameAllocator", cpu_count: int, *,
                space=None) -> Tmpfs:
    fs = Tmpfs(dev, memfile, frames, mode=0o555, space=space)
    cpu = fs.root
    for name in ("devices", "system", "cpu"):
        cpu = cpu.mkdir(name, 0o755, 0, 0)
    text = f"{cpu_list(cpu_count)}\n".encode()
    for name in ("online", "possible", "present"):
        cpu.create(name, 0o444, 0, 0).data.write(0, text)
    fs.readonly = True
    return fs
