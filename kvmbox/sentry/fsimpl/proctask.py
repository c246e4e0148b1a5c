"""The text of /proc/<pid>/* files, generated from one Task's state in Linux's exact formats.

Each generator is `gen(fs, task) -> bytes` (see procfs.FileSpec).  Pids are the
sandbox's own: a parent outside the sandbox shows as 0, as Linux shows a parent
outside the reader's pid namespace; nothing of the Sentry process appears.
"""
from __future__ import annotations

import errno
import os
import stat as S

from kvmbox.abi.fcntl import O_CLOEXEC
from kvmbox.abi.mman import MAP_GROWSDOWN, PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.abi.structs import SIGACTION
from kvmbox.errors import SyscallError
from kvmbox.sentry.task import TASK_COMM_LEN
from kvmbox.sentry.threadgroup import STOPPED, ZOMBIE

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.vma import Vma
    from kvmbox.sentry.fsimpl.procfs import ProcFilesystem
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

PAGE = 4096
CLK_TCK = 100
RLIM_INFINITY = (1 << 64) - 1
SIG_DFL, SIG_IGN = 0, 1

_LIMIT_NAMES = (
    ("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"),
    ("Max stack size", "bytes"), ("Max core file size", "bytes"), ("Max resident set", "bytes"),
    ("Max processes", "processes"), ("Max open files", "files"), ("Max locked memory", "bytes"),
    ("Max address space", "bytes"), ("Max file locks", "locks"), ("Max pending signals", "signals"),
    ("Max msgqueue size", "bytes"), ("Max nice priority", ""), ("Max realtime priority", ""),
    ("Max realtime timeout", "us"),
)


# --- small facts ----------------------------------------------------------------
def visible_ppid(fs: "ProcFilesystem", t: "Task") -> int:
    """The parent's pid if the parent is a sandbox task, else 0 (outside the namespace)."""
    return t.ppid if fs.find_task(t.ppid) is not None else 0


def thread_count(fs: "ProcFilesystem", t: "Task") -> int:
    return sum(1 for x in fs.tasks() if x.tgid == t.tgid) or 1


def _handler(action) -> int:
    if isinstance(action, (bytes, bytearray)):
        return SIGACTION.unpack_from(action)[0]
    return getattr(action, "handler", SIG_DFL)


def _stopped(t: "Task") -> bool:
    tg = getattr(t, "tg", None)
    return tg is not None and tg.state == STOPPED


def _state_name(t: "Task", running: bool) -> str:
    tg = getattr(t, "tg", None)
    if tg is not None and tg.state == ZOMBIE:
        return "Z (zombie)"
    if _stopped(t):
        return "T (stopped)"
    return "R (running)" if running else "S (sleeping)"


def signal_masks(t: "Task") -> tuple[int, int, int, int]:
    """(pending, blocked, ignored, caught) as 64-bit masks (bit signo-1)."""
    pending = 0
    for signo, *_ in t.pending_signals:
        pending |= 1 << (signo - 1)
    ign = cgt = 0
    for signo, action in t.sigactions.items():
        h = _handler(action)
        if h == SIG_IGN:
            ign |= 1 << (signo - 1)
        elif h != SIG_DFL:
            cgt |= 1 << (signo - 1)
    return pending, t.sigmask, ign, cgt


def fd_items(t: "Task") -> list[tuple[int, "FileDescription"]]:
    """(fd, file) of the task's table, by fd."""
    fds = t.fds
    items = fds.items() if hasattr(fds, "items") else fds._files.items()
    return sorted(items, key=lambda kv: kv[0])


def fd_cloexec(t: "Task", fd: int) -> bool:
    fn = getattr(t.fds, "get_cloexec", None)
    return bool(fn(fd)) if fn is not None else False


def file_path(f: "FileDescription") -> str:
    """What readlink(/proc/<pid>/fd/N) gives: the guest path, or pipe:[ino] / anon_inode:[...]."""
    if f.location is not None:
        return f.location.path
    link = getattr(f, "link_name", None)      # e.g. "anon_inode:[eventfd]" set by the file's class
    if link:
        return link
    mode = f.mode
    if S.S_ISFIFO(mode):
        return f"pipe:[{f.attr().ino}]"
    if S.S_ISSOCK(mode):
        return f"socket:[{f.attr().ino}]"
    return "anon_inode:[kvmbox]"


def mount_ids(fs: "ProcFilesystem") -> dict[int, int]:
    """id(Mount) -> the mount id mountinfo and fdinfo show (21, 22, ... in mount order)."""
    return {id(m): 21 + i for i, m in enumerate(fs.kernel.vfs.mounts())}


# --- memory -------------------------------------------------------------------------
def vma_file(v: "Vma") -> tuple[str | None, int, int, int]:
    """(guest path or None, st_dev, ino, file offset) of a mapping: Vma.file names file mappings."""
    f = v.file
    if f is None:
        return None, 0, 0, 0
    return f.path, f.dev, f.ino, v.pgoff * PAGE


def _resident(v: "Vma") -> int:
    return sum(n for _, phys, n in v.runs(v.start, v.end) if phys is not None)


def maps(fs: "ProcFilesystem", t: "Task") -> bytes:
    lines = []
    for v in t.mm.maps():
        path, dev, ino, offset = vma_file(v)
        name = path if path is not None else v.name
        if not name and v.shared:
            name, offset = "/dev/zero (deleted)", v.pgoff * PAGE
        perms = ("r" if v.prot & PROT_READ else "-") + ("w" if v.prot & PROT_WRITE else "-") + \
                ("x" if v.prot & PROT_EXEC else "-") + ("s" if v.shared else "p")
        head = f"{v.start:08x}-{v.end:08x} {perms} {offset:08x} {os.major(dev):02x}:{os.minor(dev):02x} {ino} "
        if name:
            head = head[:-1].ljust(72) + " " + name
        lines.append(head + "\n")
    return "".join(lines).encode()


def memory(t: "Task") -> dict[str, int]:
    """Sizes in kB for status/statm: size, rss, anon, file, shmem, data, stk, exe, lib."""
    out = dict.fromkeys(("size", "rss", "anon", "file", "shmem", "data", "stk", "exe", "lib"), 0)
    for v in t.mm.maps():
        kb = v.length // 1024
        res = _resident(v) * PAGE // 1024
        path = vma_file(v)[0]
        out["size"] += kb
        out["rss"] += res
        if v.shared:
            out["shmem"] += res
        elif path is not None:
            out["file"] += res
        else:
            out["anon"] += res
        if v.flags & MAP_GROWSDOWN or v.name == "[stack]":
            out["stk"] += kb
        elif v.prot & PROT_WRITE and not v.shared:
            out["data"] += kb
        if v.prot & PROT_EXEC and path is not None:
            out["exe" if path == t.exe_path else "lib"] += kb
    return out


# --- the files ------------------------------------------------------------------------
def cmdline(fs: "ProcFilesystem", t: "Task") -> bytes:
    return b"".join(os.fsencode(a) + b"\0" for a in t.argv)


def environ(fs: "ProcFilesystem", t: "Task") -> bytes:
    return b"".join(os.fsencode(e) + b"\0" for e in t.envp)


def auxv(fs: "ProcFilesystem", t: "Task") -> bytes:
    return bytes(t.auxv)


def comm_file(fs: "ProcFilesystem", t: "Task") -> bytes:
    return t.comm + b"\n"


def set_comm(fs: "ProcFilesystem", t: "Task", data: bytes) -> None:
    """A write to /proc/<pid>/task/<tid>/comm: a thread of the writer's own process takes
    the name (its first 15 bytes, up to a NUL), as pthread_setname_np needs; others EINVAL."""
    cur = fs.current()
    if t is None or cur is None or cur.tg is not t.tg:
        raise SyscallError(errno.EINVAL)
    t.comm = bytes(data[:TASK_COMM_LEN - 1]).split(b"\0", 1)[0]


def _kb(label: str, value: int) -> str:
    return f"{label}:\t{value:8d} kB\n"


def cpumask_hex(mask: int, nbits: int) -> str:
    """A cpumask as Linux's "%*pb" prints it: hex in 32-bit groups separated by commas, the
    first group as wide as the bits it holds ("3" for 2 CPUs, "01" for CPU 0 of 8)."""
    groups = []
    for low in range(0, nbits, 32):
        width = (min(32, nbits - low) + 3) // 4
        groups.append(f"{mask >> low & 0xFFFF_FFFF:0{width}x}")
    return ",".join(reversed(groups))


def cpumask_list(mask: int) -> str:
    """A cpumask as "%*pbl" prints it: ranges of set bits, "0-3,6"."""
    out, cpu = [], 0
    while mask >> cpu:
        if not mask >> cpu & 1:
            cpu += 1
            continue
        end = cpu
        while mask >> (end + 1) & 1:
            end += 1
        out.append(str(cpu) if end == cpu else f"{cpu}-{end}")
        cpu = end + 1
    return ",".join(out)


def _cpus(fs: "ProcFilesystem", t: "Task") -> tuple[str, str]:
    """Cpus_allowed and Cpus_allowed_list: the thread's own affinity mask."""
    from kvmbox.sentry.syscalls.sys_sched import affinity
    mask = affinity(t)
    return cpumask_hex(mask, fs.kernel.cpu_count), cpumask_list(mask)


def status(fs: "ProcFilesystem", t: "Task") -> bytes:
    c = t.creds
    suid, sgid = c.euid, c.egid            # no setresuid: saved ids follow the effective ones
    name = t.comm.decode("utf-8", "replace").replace("\\", "\\\\").replace("\n", "\\n")
    running = fs.current() is t or not (t.blocked or _stopped(t))   # runs or may run
    nfd = max((fd for fd, _ in fd_items(t)), default=0) + 1
    fdsize = max(64, (nfd + 63) // 64 * 64)
    pend, blk, ign, cgt = signal_masks(t)
    m = memory(t)
    mask, mask_list = _cpus(fs, t)
    umask = t.fs.umask
    text = (
        f"Name:\t{name}\n"
        f"Umask:\t{umask:04o}\n"
        f"State:\t{_state_name(t, running)}\n"
        f"Tgid:\t{t.tgid}\n"
        f"Ngid:\t0\n"
        f"Pid:\t{t.tid}\n"
        f"PPid:\t{visible_ppid(fs, t)}\n"
        f"TracerPid:\t0\n"
        f"Uid:\t{c.uid}\t{c.euid}\t{suid}\t{c.euid}\n"
        f"Gid:\t{c.gid}\t{c.egid}\t{sgid}\t{c.egid}\n"
        f"FDSize:\t{fdsize}\n"
        f"Groups:\t\n"
        f"NStgid:\t{t.tgid}\n"
        f"NSpid:\t{t.tid}\n"
        f"NSpgid:\t{t.pgid}\n"
        f"NSsid:\t{t.sid}\n"
        + _kb("VmPeak", m["size"]) + _kb("VmSize", m["size"]) + _kb("VmLck", 0) + _kb("VmPin", 0)
        + _kb("VmHWM", m["rss"]) + _kb("VmRSS", m["rss"]) + _kb("RssAnon", m["anon"])
        + _kb("RssFile", m["file"]) + _kb("RssShmem", m["shmem"]) + _kb("VmData", m["data"])
        + _kb("VmStk", m["stk"]) + _kb("VmExe", m["exe"]) + _kb("VmLib", m["lib"])
        + _kb("VmPTE", (m["size"] // 2048 + 1) * 4) + _kb("VmSwap", 0) + _kb("HugetlbPages", 0)
        + f"CoreDumping:\t0\n"
        f"THP_enabled:\t1\n"
        f"Threads:\t{thread_count(fs, t)}\n"
        f"SigQ:\t{len(t.pending_signals)}/{t.rlimits[11][0]}\n"
        f"SigPnd:\t{pend:016x}\n"
        f"ShdPnd:\t{0:016x}\n"
        f"SigBlk:\t{blk:016x}\n"
        f"SigIgn:\t{ign:016x}\n"
        f"SigCgt:\t{cgt:016x}\n"
        f"CapInh:\t{c.cap_inheritable:016x}\n"
        f"CapPrm:\t{c.cap_permitted:016x}\n"
        f"CapEff:\t{c.cap_effective:016x}\n"
        f"CapBnd:\t{c.cap_bset:016x}\n"
        f"CapAmb:\t{c.cap_ambient:016x}\n"
        f"NoNewPrivs:\t0\n"
        f"Seccomp:\t0\n"
        f"Seccomp_filters:\t0\n"
        f"Cpus_allowed:\t{mask}\n"
        f"Cpus_allowed_list:\t{mask_list}\n"
        f"Mems_allowed:\t1\n"
        f"Mems_allowed_list:\t0\n"
        f"voluntary_ctxt_switches:\t0\n"
        f"nonvoluntary_ctxt_switches:\t0\n")
    return text.encode()


def _ticks(ns: int) -> int:
    return ns * CLK_TCK // 1_000_000_000


def stat(fs: "ProcFilesystem", t: "Task") -> bytes:
    running = fs.current() is t or not (t.blocked or _stopped(t))   # runs or may run
    from kvmbox.sentry.cputime import process_times
    user, system = (_ticks(ns) for ns in process_times(t))     # the guest's, not the Sentry's
    pend, blk, ign, cgt = signal_masks(t)
    m = memory(t)
    mm = t.mm
    start = _ticks(max(t.start_ns - fs.kernel.boot_monotonic_ns, 0))
    brk = mm.brk_base
    code = [v for v in mm.maps() if v.prot & PROT_EXEC and vma_file(v)[0] == t.exe_path]
    start_code = min((v.start for v in code), default=0)
    end_code = max((v.end for v in code), default=0)
    fields = [
        t.tid, f"({t.comm.decode('utf-8', 'replace')})", _state_name(t, running)[0],
        visible_ppid(fs, t), t.pgid, t.sid, 0, -1, 0x400000,       # tty_nr, tpgid, PF_RANDOMIZE... flags
        0, 0, 0, 0,                                                   # minflt cminflt majflt cmajflt
        user, system, 0, 0,                                           # utime stime cutime cstime
        20 + t.nice, t.nice, thread_count(fs, t), 0, start,           # priority nice threads itreal start
        m["size"] * 1024, m["rss"] // 4, t.rlimits[5][0],             # vsize rss rsslim
        start_code, end_code, 0, 0, 0,                                # startcode endcode startstack esp eip
        pend, blk, ign, cgt,                                          # signal blocked sigignore sigcatch
        0, 0, 0, 17, 0, 0, 0, 0, 0, 0,                                # wchan .. cguest_time
        0, 0, brk, 0, 0, 0, 0,                                        # start_data .. env_end
        0,                                                            # exit_code
    ]
    return (" ".join(str(f) for f in fields) + "\n").encode()


def statm(fs: "ProcFilesystem", t: "Task") -> bytes:
    m = memory(t)
    pages = [m["size"], m["rss"], m["file"] + m["shmem"], m["exe"], 0, m["data"] + m["stk"], 0]
    return (" ".join(str(kb // 4) for kb in pages) + "\n").encode()


def limits(fs: "ProcFilesystem", t: "Task") -> bytes:
    out = ["Limit                     Soft Limit           Hard Limit           Units     \n"]
    for i, (name, unit) in enumerate(_LIMIT_NAMES):
        soft, hard = t.rlimits.get(i, [RLIM_INFINITY, RLIM_INFINITY])
        s = "unlimited" if soft == RLIM_INFINITY else str(soft)
        h = "unlimited" if hard == RLIM_INFINITY else str(hard)
        line = f"{name:<25} {s:<20} {h:<20} "
        out.append(line + (f"{unit:<10}\n" if unit else "\n"))
    return "".join(out).encode()


def _escape(path: str) -> str:
    """Mount paths as /proc/mounts writes them: space, tab, newline and backslash in octal."""
    return "".join(f"\\{ord(ch):03o}" if ch in " \t\n\\" else ch for ch in path)


def _mount_opts(m) -> str:
    """The per-mount options: ro/rw, the file system's fixed flags (nosuid,nodev), relatime."""
    flags = m.fs.mount_flags
    return f"{'ro' if m.readonly or m.fs.readonly else 'rw'},{flags + ',' if flags else ''}relatime"


def _super_opts(m) -> str:
    extra = m.fs.super_options()
    return f"{'ro' if m.fs.readonly else 'rw'}{',' + extra if extra else ''}"


def mounts(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    out = []
    for m in fs.kernel.vfs.mounts():
        extra = m.fs.super_options()
        out.append(f"{_escape(m.source)} {_escape(m.path)} {m.fs.fstype} "
                   f"{_mount_opts(m)}{',' + extra if extra else ''} 0 0\n")
    return "".join(out).encode()


def mountinfo(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    ids = mount_ids(fs)
    out = []
    for m in fs.kernel.vfs.mounts():
        mid = ids[id(m)]
        parent = ids.get(id(m.parent), mid) if m.parent is not None else mid
        dev = m.fs.dev
        out.append(f"{mid} {parent} {os.major(dev)}:{os.minor(dev)} / {_escape(m.path)} "
                   f"{_mount_opts(m)} - {m.fs.fstype} {_escape(m.source)} {_super_opts(m)}\n")
    return "".join(out).encode()


def fdinfo(fs: "ProcFilesystem", t: "Task", fd: int) -> bytes:
    f = t.fds.get(fd)
    try:
        pos = f.seek(0, 1)
    except SyscallError:            # pipes and streams: ESPIPE
        pos = 0
    flags = f.flags | (O_CLOEXEC if fd_cloexec(t, fd) else 0)
    loc = f.location
    mnt = mount_ids(fs).get(id(loc.mount), 0) if loc is not None else 0
    return (f"pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t{mnt}\nino:\t{f.attr().ino}\n"
            + f.fdinfo()).encode()
