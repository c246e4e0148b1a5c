"""The text of system-wide /proc files (meminfo, stat, uptime, version, /proc/sys ...) from Kernel state.

Each generator is `gen(fs, task) -> bytes` (task is None here).  Numbers come
from the Sentry: the sandbox memory limit and frame allocator, the kernel's
boot time and CPU count; nothing is copied from the host's /proc.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

from kvmbox.sentry.fsimpl import cpuinfo as _cpuinfo

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.fsimpl.procfs import ProcFilesystem
    from kvmbox.sentry.kernel import Kernel
    from kvmbox.sentry.task import Task

PAGE = 4096
CLK_TCK = 100
PID_MAX = 4194304
CAP_LAST_CAP = 40
FILESYSTEMS = ("sysfs", "tmpfs", "proc", "devtmpfs", "overlay", "9p", "pipefs", "anon_inodefs")


def uptime_ns(fs: "ProcFilesystem") -> int:
    return max(time.monotonic_ns() - fs.kernel.boot_monotonic_ns, 0)


def _ram(fs: "ProcFilesystem") -> tuple[int, int]:
    """(total, free) bytes: the sandbox limit (or the guest RAM) and what is not in use."""
    frames = fs.kernel.platform.frames
    pool = (frames.used_pages + frames.free_pages) * PAGE
    limit = fs.kernel.memory_limit
    total = min(limit, pool) if limit else pool
    used = frames.used_pages * PAGE
    free = max(min(total - used, frames.free_pages * PAGE), 0)
    return total, free


def cpuinfo(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    mult = getattr(getattr(getattr(fs.kernel, "vdso", None), "timekeeper", None), "mult", 0)
    mhz = 1000.0 * (1 << 32) / mult if mult else 0.0        # mult: ns per TSC tick << 32
    return _cpuinfo.cpuinfo_text(fs.kernel.cpu_count, mhz).encode()


def meminfo(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    total, free = _ram(fs)
    used = total - free
    rows = [
        ("MemTotal", total), ("MemFree", free), ("MemAvailable", free), ("Buffers", 0),
        ("Cached", 0), ("SwapCached", 0), ("Active", used), ("Inactive", 0),
        ("Active(anon)", used), ("Inactive(anon)", 0), ("Active(file)", 0), ("Inactive(file)", 0),
        ("Unevictable", 0), ("Mlocked", 0), ("SwapTotal", 0), ("SwapFree", 0), ("Zswap", 0),
        ("Zswapped", 0), ("Dirty", 0), ("Writeback", 0), ("AnonPages", used), ("Mapped", 0),
        ("Shmem", 0), ("KReclaimable", 0), ("Slab", 0), ("SReclaimable", 0), ("SUnreclaim", 0),
        ("KernelStack", 0), ("PageTables", 0), ("SecPageTables", 0), ("NFS_Unstable", 0),
        ("Bounce", 0), ("WritebackTmp", 0), ("CommitLimit", total), ("Committed_AS", used),
        ("VmallocTotal", 34359738367 * 1024), ("VmallocUsed", 0), ("VmallocChunk", 0),
        ("Percpu", 0), ("AnonHugePages", 0), ("ShmemHugePages", 0), ("ShmemPmdMapped", 0),
        ("FileHugePages", 0), ("FilePmdMapped", 0),
    ]
    out = [f"{label + ':':<16}{value // 1024:8d} kB\n" for label, value in rows]
    out += ["HugePages_Total:       0\n", "HugePages_Free:        0\n", "HugePages_Rsvd:        0\n",
            "HugePages_Surp:        0\n", "Hugepagesize:       2048 kB\n", "Hugetlb:               0 kB\n",
            f"DirectMap4k:    {total // 1024:8d} kB\n"]
    return "".join(out).encode()


def stat(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    cpus = fs.kernel.cpu_count
    up = uptime_ns(fs) * CLK_TCK // 1_000_000_000
    cpu = os.times()
    user, system = int(cpu.user * CLK_TCK), int(cpu.system * CLK_TCK)
    idle = max(up * cpus - user - system, 0)
    btime = (time.time_ns() - uptime_ns(fs)) // 1_000_000_000
    lines = [f"cpu  {user} 0 {system} {idle} 0 0 0 0 0 0\n"]
    for n in range(cpus):
        share = (user // cpus, system // cpus, idle // cpus)
        lines.append(f"cpu{n} {share[0]} 0 {share[1]} {share[2]} 0 0 0 0 0 0\n")
    ntasks = len(fs.tasks())
    lines += ["intr 0\n", "ctxt 0\n", f"btime {btime}\n", f"processes {ntasks}\n",
              f"procs_running {ntasks}\n", "procs_blocked 0\n", "softirq 0 0 0 0 0 0 0 0 0 0 0\n"]
    return "".join(lines).encode()


def uptime(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    up = uptime_ns(fs) // 10_000_000                       # centiseconds
    cpu = os.times()
    idle = max(up * fs.kernel.cpu_count - int((cpu.user + cpu.system) * 100), 0)
    return f"{up // 100}.{up % 100:02d} {idle // 100}.{idle % 100:02d}\n".encode()


def loadavg(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    tasks = fs.tasks()
    last = max((x.tid for x in tasks), default=0)
    return f"0.00 0.00 0.00 {len(tasks)}/{len(tasks)} {last}\n".encode()


def version(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    k = fs.kernel
    return f"Linux version {k.release} (kvmbox@kvmbox) (kvmbox Sentry) {k.version}\n".encode()


def filesystems(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    return "".join(f"nodev\t{name}\n" for name in FILESYSTEMS).encode()


def text(value: "object | Callable[[Kernel], object]") -> "Callable[[ProcFilesystem, Task | None], bytes]":
    """A generator of one fixed line (value may be a function of the kernel)."""
    def gen(fs: "ProcFilesystem", t: "Task | None") -> bytes:
        v = value(fs.kernel) if callable(value) else value
        return f"{v}\n".encode()
    return gen


def boot_id(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    return f"{fs.boot_id}\n".encode()


def uuid4_text() -> str:
    """A random (version 4) UUID as text, as /proc/sys/kernel/random/uuid gives it. Not the
    uuid module: it imports platform and a C extension, 3 ms of every cold start for a
    file few programs read."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40          # version 4
    b[8] = (b[8] & 0x3F) | 0x80          # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_uuid(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    return f"{uuid4_text()}\n".encode()
