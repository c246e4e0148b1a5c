"""The shape of /proc as data: which names exist where, and which generator makes each file.

procfs.py turns these specs into nodes; proctask.py and procfiles.py make the
bytes.  There is deliberately no /proc/<pid>/mem, pagemap, environ of other
users' tasks, or anything naming the Sentry process.
"""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.sentry.fsimpl import procfiles as P
from kvmbox.sentry.fsimpl import procnet as N
from kvmbox.sentry.fsimpl import proctask as T
from kvmbox.sentry.fsimpl.procfs import DirSpec, FileSpec, LinkSpec

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.fsimpl.procfs import ProcFilesystem, Spec
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.vfs.path import Location


# --- the magic links ------------------------------------------------------------------
def _cwd_target(fs: "ProcFilesystem", t: "Task") -> str:
    return t.fs.cwd.path


def _cwd_jump(fs: "ProcFilesystem", t: "Task") -> "Location":
    return t.fs.cwd


def _root_target(fs: "ProcFilesystem", t: "Task") -> str:
    return t.fs.root.path


def _root_jump(fs: "ProcFilesystem", t: "Task") -> "Location":
    return t.fs.root


def _exe_target(fs: "ProcFilesystem", t: "Task") -> str:
    return t.exe_path


def _exe_jump(fs: "ProcFilesystem", t: "Task") -> "Location":
    return fs.kernel.vfs.resolve(t.fs.root, t.exe_path)


def _fd_file(t: "Task", name: str) -> "FileDescription":
    try:
        return t.fds.get(int(name))
    except (ValueError, SyscallError):
        raise SyscallError(errno.ENOENT) from None


def _fd_target(fs: "ProcFilesystem", t: "Task", name: str) -> str:
    return T.file_path(_fd_file(t, name))


def _fd_jump(fs: "ProcFilesystem", t: "Task", name: str) -> "Location":
    """The file's own Location, or for a file without a path (a pipe, a standard stream)
    a node of the file itself, which stat follows and open(2) reopens (procfd.py)."""
    f = _fd_file(t, name)
    if f.location is not None:
        return f.location
    return fs.open_files.location(f, T.file_path(f))


def _fdinfo(fs: "ProcFilesystem", t: "Task", name: str) -> bytes:
    _fd_file(t, name)
    return T.fdinfo(fs, t, int(name))


FD_LINK = LinkSpec(_fd_target, _fd_jump, named=True)
FDINFO_FILE = FileSpec(_fdinfo, 0o444, named=True)


def _fds(fs: "ProcFilesystem", t: "Task") -> list[tuple[str, "Spec", int]]:
    return [(str(fd), FD_LINK, t.tid) for fd, _ in T.fd_items(t)]


def _fdinfos(fs: "ProcFilesystem", t: "Task") -> list[tuple[str, "Spec", int]]:
    return [(str(fd), FDINFO_FILE, t.tid) for fd, _ in T.fd_items(t)]


# --- per-task directories -----------------------------------------------------------
COMM_FILE = FileSpec(T.comm_file, 0o644, put=T.set_comm)

THREAD_DIR = DirSpec({
    "cmdline": FileSpec(T.cmdline),
    "comm": COMM_FILE,
    "environ": FileSpec(T.environ, 0o400),
    "maps": FileSpec(T.maps),
    "stat": FileSpec(T.stat),
    "statm": FileSpec(T.statm),
    "status": FileSpec(T.status),
})


def _threads(fs: "ProcFilesystem", t: "Task") -> list[tuple[str, "Spec", int]]:
    return [(str(x.tid), THREAD_DIR, x.tid) for x in fs.tasks() if x.tgid == t.tgid]


TASK_DIR = DirSpec({
    "auxv": FileSpec(T.auxv, 0o400),
    "cmdline": FileSpec(T.cmdline),
    "comm": COMM_FILE,
    "cwd": LinkSpec(_cwd_target, _cwd_jump),
    "environ": FileSpec(T.environ, 0o400),
    "exe": LinkSpec(_exe_target, _exe_jump),
    "fd": DirSpec(dynamic=_fds, perm=0o500),
    "fdinfo": DirSpec(dynamic=_fdinfos, perm=0o500),
    "limits": FileSpec(T.limits),
    "maps": FileSpec(T.maps),
    "mountinfo": FileSpec(T.mountinfo),
    "mounts": FileSpec(T.mounts),
    "root": LinkSpec(_root_target, _root_jump),
    "stat": FileSpec(T.stat),
    "statm": FileSpec(T.statm),
    "status": FileSpec(T.status),
    "task": DirSpec(dynamic=_threads),
})


# --- the root ---------------------------------------------------------------------------
def _current(fs: "ProcFilesystem") -> "Task":
    t = fs.current()
    if t is None:
        raise SyscallError(errno.ENOENT)
    return t


def _self_target(fs: "ProcFilesystem", t: None) -> str:
    return str(_current(fs).tgid)


def _thread_self_target(fs: "ProcFilesystem", t: None) -> str:
    cur = _current(fs)
    return f"{cur.tgid}/task/{cur.tid}"


def _pids(fs: "ProcFilesystem", t: None) -> list[tuple[str, "Spec", int]]:
    return [(str(x.tgid), TASK_DIR, x.tgid) for x in fs.tasks() if x.tid == x.tgid]


def _thread_by_tid(fs: "ProcFilesystem", name: str) -> "tuple[Spec, int] | None":
    """/proc/<tid> of a thread that leads no process: there, though not listed (as Linux)."""
    if not name.isdigit():
        return None
    tid = int(name)
    return (TASK_DIR, tid) if any(x.tid == tid for x in fs.tasks()) else None


def _mounts_target(fs: "ProcFilesystem", t: None) -> str:
    return "self/mounts"


SYS_DIR = DirSpec({
    "kernel": DirSpec({
        "cap_last_cap": FileSpec(P.text(P.CAP_LAST_CAP)),
        "hostname": FileSpec(P.text(lambda k: k.hostname), 0o644),
        "osrelease": FileSpec(P.text(lambda k: k.release)),
        "ostype": FileSpec(P.text("Linux")),
        "pid_max": FileSpec(P.text(P.PID_MAX), 0o644),
        "random": DirSpec({
            "boot_id": FileSpec(P.boot_id),
            "uuid": FileSpec(P.random_uuid),
        }),
        "version": FileSpec(P.text(lambda k: k.version)),
    }),
    "vm": DirSpec({
        "overcommit_memory": FileSpec(P.text(0), 0o644),
    }),
})

ROOT = DirSpec({
    "cpuinfo": FileSpec(P.cpuinfo),
    "filesystems": FileSpec(P.filesystems),
    "loadavg": FileSpec(P.loadavg),
    "meminfo": FileSpec(P.meminfo),
    "mounts": LinkSpec(_mounts_target),
    # the sandbox's one interface, lo (net/netlink.py), and its loopback sockets (procnet.py)
    "net": DirSpec({
        "dev": FileSpec(N.dev),
        "if_inet6": FileSpec(P.text("0" * 31 + "1 01 80 10 80       lo")),
        "route": FileSpec(N.route),
        "tcp": FileSpec(N.tcp),
        "tcp6": FileSpec(N.tcp6),
        "udp": FileSpec(N.udp),
        "udp6": FileSpec(N.udp6),
    }),
    "self": LinkSpec(_self_target),
    "stat": FileSpec(P.stat),
    "sys": SYS_DIR,
    "thread-self": LinkSpec(_thread_self_target),
    "uptime": FileSpec(P.uptime),
    "version": FileSpec(P.version),
}, dynamic=_pids, hidden=_thread_by_tid)
