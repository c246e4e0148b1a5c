"""procfs through its nodes: the tree, each file's Linux format, magic links, and that nothing of the Sentry leaks."""
from __future__ import annotations

import errno
import os
import re
import sys
import time
from types import SimpleNamespace

import pytest

from kvmbox.abi import mman
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.sentry.files import CaptureOutput, FdTable
from kvmbox.sentry.fsimpl.procfs import ProcFilesystem, ProcNode
from kvmbox.sentry.threadgroup import ThreadGroup
from kvmbox.sentry.task import Task, default_rlimits
from kvmbox.sentry.vfs.node import DT_DIR, DT_LNK, DT_REG, Filesystem

from .test_mm import make

MIB = 1 << 20
HOST_PID = os.getpid()


class FakeVfs:
    """The two MountTable calls procfs makes: mounts() and resolve()."""

    def __init__(self) -> None:
        root_fs, proc_fs = Filesystem(os.makedev(0, 30)), Filesystem(os.makedev(0, 31))
        root_fs.fstype, proc_fs.fstype = "overlay", "proc"
        self.root = SimpleNamespace(fs=root_fs, path="/", readonly=False, source="overlay", parent=None)
        self.tmp = SimpleNamespace(fs=proc_fs, path="/my dir", readonly=True, source="none", parent=self.root)

    def mounts(self):
        return [self.root, self.tmp]

    def resolve(self, start, path: str, *, follow: bool = True, root=None):
        return SimpleNamespace(mount=self.root, node=None, path=path)


class FakeKernel:
    hostname = "box"
    release = "6.1.0-kvmbox"
    version = "#1 SMP PREEMPT_DYNAMIC kvmbox"
    cpu_count = 2
    memory_limit = 32 * MIB

    def __init__(self, mm) -> None:
        self.sentry_pid = HOST_PID
        self.boot_monotonic_ns = time.monotonic_ns() - 5_000_000_000
        self.platform = SimpleNamespace(frames=mm.frames)
        self.vfs = FakeVfs()
        self.tasks: list[Task] = []

    def live_tasks(self):
        return list(self.tasks)

    def visible_tasks(self):
        return list(self.tasks)

    def current_task(self):
        return self.tasks[0] if self.tasks else None


@pytest.fixture
def env():
    mm = make(64 * MIB)
    kernel = FakeKernel(mm)
    fds = FdTable()
    for i in range(3):
        fds.install(i, CaptureOutput())
    tg = ThreadGroup(1, None, default_rlimits(32 * MIB), 1, 1)
    t = Task(kernel, None, mm, fds, 1, "/usr/bin/prog", ["prog", "a b", ""], tg,
             fs=SimpleNamespace())
    t.envp = ["HOME=/root", "X="]
    t.auxv = b"\x06\0\0\0\0\0\0\0\0\x10\0\0\0\0\0\0" + bytes(16)
    root_loc = SimpleNamespace(mount=kernel.vfs.root, node=None, path="/")
    t.fs = SimpleNamespace(root=root_loc, cwd=SimpleNamespace(mount=kernel.vfs.root, node=None, path="/work"),
                           umask=0o027)
    mm.set_brk_base(0x60_0000)
    mm.brk(0x60_0000 + 3 * 4096)
    mm.map_stack(L.STACK_TOP, 132 * 1024, 8 * MIB)
    mm.mmap(0, 8192, 3, mman.MAP_PRIVATE | mman.MAP_ANONYMOUS)
    kernel.tasks.append(t)
    fs = ProcFilesystem(kernel, os.makedev(0, 22))
    yield SimpleNamespace(fs=fs, t=t, kernel=kernel, mm=mm)
    mm.release()
    mm.memfile.close()


def walk(fs: ProcFilesystem, path: str) -> ProcNode:
    node = fs.root
    for part in path.strip("/").split("/"):
        if part:
            node = node.lookup(part)
    return node


def read(fs: ProcFilesystem, path: str) -> bytes:
    f = walk(fs, path).open(os.O_RDONLY, None)
    out = b""
    while chunk := f.read(4096):
        out += chunk
    return out


def errno_of(fn, *args) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*args)
    return e.value.errno


# --- the tree --------------------------------------------------------------------------
def test_root_lists_system_files_pids_and_self(env):
    names = {n: d for n, _ino, d in env.fs.root.entries()}
    for n in ("cpuinfo", "meminfo", "stat", "uptime", "loadavg", "version", "filesystems", "sys"):
        assert n in names
    assert names["1"] == DT_DIR and names["self"] == DT_LNK and names["cpuinfo"] == DT_REG
    assert str(HOST_PID) not in names
    assert walk(env.fs, "self").readlink() == "1"
    assert walk(env.fs, "thread-self").readlink() == "1/task/1"
    assert walk(env.fs, "mounts").readlink() == "self/mounts"


def test_pid_dir_has_no_mem_and_no_host_pid(env):
    names = {n for n, _, _ in walk(env.fs, "1").entries()}
    assert {"exe", "cwd", "root", "fd", "fdinfo", "maps", "cmdline", "environ", "status", "stat",
            "statm", "auxv", "mounts", "mountinfo", "limits", "comm", "task"} <= names
    for absent in ("mem", "pagemap", "environ2"):
        assert errno_of(walk(env.fs, "1").lookup, absent) == errno.ENOENT
    assert errno_of(env.fs.root.lookup, str(HOST_PID)) == errno.ENOENT
    assert errno_of(env.fs.root.lookup, "2") == errno.ENOENT


def test_lookups_are_stable(env):
    a, b = walk(env.fs, "1/status"), walk(env.fs, "1/status")
    assert a is b and a.ino == b.ino
    inos = [ino for _, ino, _ in env.fs.root.entries()]
    assert len(set(inos)) == len(inos)
    assert walk(env.fs, "1/task/1/status").ino != a.ino


def test_attrs(env):
    fs = env.fs
    st = walk(fs, "1/status").attr()
    assert st.mode == 0o100444 and st.uid == env.t.creds.euid and st.dev == fs.dev and st.size == 0
    assert walk(fs, "cpuinfo").attr().uid == 0
    assert walk(fs, "1").attr().mode == 0o40555
    assert walk(fs, "1/fd").attr().mode == 0o40500
    assert walk(fs, "self").attr().mode == 0o120777
    assert fs.statfs().f_type == 0x9FA0


def test_dead_task_gives_enoent(env):
    status = walk(env.fs, "1/status")
    env.kernel.tasks.clear()
    assert errno_of(status.open, os.O_RDONLY, None) == errno.ENOENT
    assert errno_of(env.fs.root.lookup, "1") == errno.ENOENT
    assert errno_of(walk(env.fs, "self").readlink) == errno.ENOENT


# --- per-task files -------------------------------------------------------------------------
def test_cmdline_environ_auxv_comm(env):
    assert read(env.fs, "1/cmdline") == b"prog\0a b\0\0"
    assert read(env.fs, "1/environ") == b"HOME=/root\0X=\0"
    assert read(env.fs, "1/auxv") == env.t.auxv
    assert read(env.fs, "1/comm") == b"prog\n"
    env.t.comm = b"renamed"
    assert read(env.fs, "1/task/1/comm") == b"renamed\n"


def test_status(env):
    text = read(env.fs, "1/status").decode()
    fields = dict(line.split(":\t", 1) for line in text.splitlines())
    assert list(fields)[:6] == ["Name", "Umask", "State", "Tgid", "Ngid", "Pid"]
    assert fields["Name"] == "prog" and fields["Umask"] == "0027" and fields["State"] == "R (running)"
    assert fields["Pid"] == fields["Tgid"] == "1"
    assert fields["PPid"] == "0"                 # the Sentry is outside the sandbox's pids
    c = env.t.creds
    assert fields["Uid"] == f"{c.uid}\t{c.euid}\t{c.euid}\t{c.euid}"
    assert fields["Threads"] == "1" and fields["FDSize"] == "64"
    assert re.fullmatch(r" *\d+ kB", fields["VmRSS"]) and int(fields["VmStk"].split()[0]) >= 132
    assert int(fields["VmSize"].split()[0]) >= 132 + 12 + 8
    assert fields["Cpus_allowed"] == "3" and fields["Cpus_allowed_list"] == "0-1"
    env.t.sigmask = 1 << 9
    env.t.sigactions = {13: b"\x01" + bytes(31), 10: b"\x00\x10" + bytes(30)}
    env.t.pending_signals.append((2, 0, 0))
    fields = dict(line.split(":\t", 1) for line in read(env.fs, "1/status").decode().splitlines())
    assert fields["SigBlk"] == f"{1 << 9:016x}" and fields["SigIgn"] == f"{1 << 12:016x}"
    assert fields["SigCgt"] == f"{1 << 9:016x}" and fields["SigPnd"] == f"{1 << 1:016x}"
    assert fields["SigQ"] == "1/4096"


def test_stat_has_52_fields(env):
    text = read(env.fs, "1/stat").decode()
    assert text.endswith("\n")
    head, _, rest = text.rpartition(")")
    pid, comm = head.split(" (", 1)
    fields = [pid, comm] + rest.split()
    assert len(fields) == 52 and pid == "1" and comm == "prog" and fields[2] == "R"
    assert fields[3] == "0"                     # ppid outside the sandbox
    assert all(re.fullmatch(r"-?\d+", f) for f in fields[3:])
    statm = read(env.fs, "1/statm").decode().split()
    assert len(statm) == 7 and int(statm[0]) > 0


def test_maps_format(env):
    lines = read(env.fs, "1/maps").decode().splitlines()
    vmas = env.mm.maps()
    assert len(lines) == len(vmas)
    stack = [ln for ln in lines if ln.endswith("[stack]")]
    heap = [ln for ln in lines if ln.endswith("[heap]")]
    assert len(stack) == 1 and len(heap) == 1
    assert re.fullmatch(r"[0-9a-f]{8,}-[0-9a-f]{8,} rw-p 00000000 00:00 0 {26,}\[stack\]", stack[0])
    assert stack[0].index("[stack]") == 73
    anon = [ln for ln in lines if not ln.endswith("]")]
    assert anon and all(ln.endswith(" 0 ") for ln in anon)
    s, e = (int(x, 16) for x in heap[0].split()[0].split("-"))
    assert (s, e) == (0x60_0000, 0x60_3000)


def test_maps_shows_file_mappings_from_vma_fields(env):
    v = env.mm.maps()[0]
    v.file = SimpleNamespace(path="/usr/bin/prog", dev=os.makedev(254, 1), ino=4242)
    v.pgoff = 2
    try:
        line = read(env.fs, "1/maps").decode().splitlines()[0]
    finally:
        v.file, v.pgoff = None, 0
    assert line.split()[2:6] == ["00002000", "fe:01", "4242", "/usr/bin/prog"]
    assert line.index("/usr/bin/prog") == 73


def test_limits(env):
    lines = read(env.fs, "1/limits").decode().splitlines()
    assert lines[0] == "Limit                     Soft Limit           Hard Limit           Units     "
    assert lines[4] == "Max stack size            8388608              unlimited            bytes     "
    assert lines[14] == "Max nice priority         0                    0                    "
    assert len(lines) == 17


def test_fd_links_and_fdinfo(env):
    names = [n for n, _, d in walk(env.fs, "1/fd").entries()]
    assert names == ["0", "1", "2"]
    assert re.fullmatch(r"pipe:\[\d+\]", walk(env.fs, "1/fd/1").readlink())
    # A file with no path: the walk goes on at a node of the file itself (stat, reopen).
    jump = walk(env.fs, "1/fd/1").jump()
    assert jump.path == walk(env.fs, "1/fd/1").readlink() and jump.node.file is env.t.fds.get(1)
    assert jump.node.attr().ino == env.t.fds.get(1).attr().ino
    f = CaptureOutput()
    f.location = SimpleNamespace(mount=env.kernel.vfs.tmp, node=None, path="/my dir/file")
    f.flags = 0o100001
    env.t.fds.install(5, f)
    assert walk(env.fs, "1/fd/5").readlink() == "/my dir/file"
    assert walk(env.fs, "1/fd/5").jump() is f.location
    info = read(env.fs, "1/fdinfo/5").decode()
    assert info.startswith("pos:\t0\nflags:\t0100001\nmnt_id:\t22\nino:\t")
    env.t.fds.close(5)
    assert errno_of(walk(env.fs, "1/fd").lookup, "5") == errno.ENOENT


def test_magic_links(env):
    assert walk(env.fs, "1/cwd").readlink() == "/work"
    assert walk(env.fs, "1/cwd").jump() is env.t.fs.cwd
    assert walk(env.fs, "1/root").jump() is env.t.fs.root and walk(env.fs, "1/root").readlink() == "/"
    assert walk(env.fs, "1/exe").readlink() == "/usr/bin/prog"
    assert walk(env.fs, "1/exe").jump().path == "/usr/bin/prog"
    assert walk(env.fs, "cpuinfo").jump() is None


def test_mounts_and_mountinfo(env):
    assert read(env.fs, "self/../1/mounts".replace("self/../", "")) == \
        b"overlay / overlay rw,relatime 0 0\nnone /my\\040dir proc ro,relatime 0 0\n"
    lines = read(env.fs, "1/mountinfo").decode().splitlines()
    assert lines[0] == "21 21 0:30 / / rw,relatime - overlay overlay rw"
    assert lines[1] == "22 21 0:31 / /my\\040dir ro,relatime - proc none rw"


# --- system files ---------------------------------------------------------------------------
def test_system_files(env):
    fs = env.fs
    cpu = read(fs, "cpuinfo").decode()
    assert cpu.count("processor\t: ") == 2 and "\nflags\t\t: fpu " in cpu
    mem = dict(re.findall(r"^(\w+):\s+(\d+)", read(fs, "meminfo").decode(), re.M))
    assert int(mem["MemTotal"]) == 32 * 1024 and 0 < int(mem["MemFree"]) <= 32 * 1024
    up = read(fs, "uptime").decode()
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d\n", up) and float(up.split()[0]) >= 5
    assert re.fullmatch(r"0\.00 0\.00 0\.00 1/1 1\n", read(fs, "loadavg").decode())
    assert read(fs, "version").startswith(b"Linux version 6.1.0-kvmbox ")
    assert b"nodev\tproc\n" in read(fs, "filesystems")
    stat = read(fs, "stat").decode()
    assert stat.startswith("cpu  ") and "\ncpu1 " in stat and re.search(r"\nbtime \d+\n", stat)
    assert read(fs, "sys/kernel/ostype") == b"Linux\n"
    assert read(fs, "sys/kernel/osrelease") == b"6.1.0-kvmbox\n"
    assert read(fs, "sys/kernel/hostname") == b"box\n"
    assert read(fs, "sys/kernel/pid_max") == b"4194304\n"
    assert read(fs, "sys/vm/overcommit_memory") == b"0\n"
    boot = read(fs, "sys/kernel/random/boot_id")
    assert boot == read(fs, "sys/kernel/random/boot_id") and len(boot) == 37
    assert read(fs, "sys/kernel/random/uuid") != read(fs, "sys/kernel/random/uuid")


def test_snapshot_file_semantics(env):
    node = walk(env.fs, "1/cmdline")
    f = node.open(os.O_RDONLY, None)
    assert f.read(3) == b"pro" and f.read(100) == b"g\0a b\0\0" and f.read(10) == b""
    assert f.seek(1, os.SEEK_SET) == 1 and f.read(2) == b"ro"
    assert f.pread(3, 5) == b"a b" and f.seek(0, os.SEEK_CUR) == 3
    assert errno_of(f.seek, -1, os.SEEK_SET) == errno.EINVAL
    assert errno_of(f.write, b"x") == errno.EBADF
    assert f.attr().ino == node.ino
    w = node.open(os.O_WRONLY, None)
    assert errno_of(w.write, b"x") == errno.EINVAL and errno_of(w.read, 1) == errno.EBADF
    assert errno_of(walk(env.fs, "1").open, os.O_WRONLY, None) == errno.EISDIR
    assert errno_of(walk(env.fs, "1").open, 3, None) == errno.EISDIR
    assert errno_of(walk(env.fs, "1/status").lookup, "x") == errno.ENOTDIR
    assert errno_of(walk(env.fs, "1/status").readlink) == errno.EINVAL
    # Access mode 3: neither readable nor writable (Linux's FMODE bits are (3 + 1) & 3 == 0).
    m3 = walk(env.fs, "1/status").open(3, None)
    assert errno_of(m3.read, 1) == errno.EBADF and errno_of(m3.pread, 1, 0) == errno.EBADF
    assert errno_of(m3.write, b"x") == errno.EBADF


def test_sysctl_files_keep_their_mode_even_for_root(env):
    """/proc/sys grants its owner bits to root (proc_sys_permission): no writing 0444 files."""
    ostype, hostname = walk(env.fs, "sys/kernel/ostype"), walk(env.fs, "sys/kernel/hostname")
    for flags in (os.O_WRONLY, os.O_RDWR, 3, os.O_RDONLY | os.O_TRUNC):
        assert errno_of(ostype.open, flags, None) == errno.EACCES
    assert ostype.open(os.O_RDONLY, None).read(100) == b"Linux\n"
    w = hostname.open(os.O_WRONLY, None)                     # 0644: root may open it for writing
    assert errno_of(w.write, b"x") == errno.EINVAL
    assert walk(env.fs, "1/status").open(os.O_WRONLY, None).writable   # not /proc/sys: no such rule


def test_no_extended_attributes(env):
    node = walk(env.fs, "1/comm")
    assert errno_of(node.getxattr, b"user.a") == errno.EOPNOTSUPP
    assert errno_of(node.setxattr, b"user.a", b"x", 0) == errno.EOPNOTSUPP
    assert errno_of(node.removexattr, b"user.a") == errno.EOPNOTSUPP
    assert node.listxattr() == []


# --- security ---------------------------------------------------------------------------------
def _walk_all(node: ProcNode, path: str, out: dict[str, bytes]) -> None:
    for name, _ino, dtype in node.entries():
        child = node.lookup(name)
        p = f"{path}/{name}"
        if dtype == DT_DIR:
            out[p + "/"] = name.encode()
            _walk_all(child, p, out)
        elif dtype == DT_LNK:
            out[p] = child.readlink().encode()
        else:
            f = child.open(os.O_RDONLY, None)
            out[p] = f.read(1 << 20)


def test_nothing_of_the_sentry_leaks(env):
    contents: dict[str, bytes] = {}
    _walk_all(env.fs.root, "/proc", contents)
    assert "/proc/1/status" in contents and "/proc/1/task/1/stat" in contents and len(contents) > 45
    pid = str(HOST_PID)
    # No pid field anywhere names the Sentry's host pid.
    for path in [p for p in contents if p.endswith(("/status", "/stat"))]:
        text = contents[path].decode()
        if path.endswith("status"):
            values = re.findall(r"^(?:Tgid|Pid|PPid|TracerPid|NStgid|NSpid|NSpgid|NSsid|Ngid):\t(.*)$", text, re.M)
        else:
            rest = text.rpartition(")")[2].split()
            values = [text.split(" ", 1)[0], rest[1], rest[2], rest[3]]
        assert pid not in values, path
    assert not any(re.fullmatch(r"/proc/\d+/?", p) and pid in p for p in contents)
    host_maps = open("/proc/self/maps", "rb").read().splitlines()
    host_strings = [f"/proc/{pid}".encode(), sys.executable.encode(), os.getcwd().encode(),
                    os.path.dirname(os.__file__).encode()] + [ln for ln in host_maps if ln.strip()]
    for path, data in contents.items():
        for s in host_strings:
            assert s not in data, (path, s)


def test_directories_list_through_getdents(env):
    f = walk(env.fs, "1/fd").open(os.O_RDONLY | os.O_DIRECTORY, None)
    assert [e[3] for e in f.getdents(4096)] == [".", "..", "0", "1", "2"]
    assert f.attr().ino == walk(env.fs, "1/fd").ino
    names = [e[3] for e in env.fs.root.open(os.O_RDONLY, None).getdents(1 << 16)]
    assert "self" in names and "1" in names and "cpuinfo" in names


def test_cpumasks_print_as_linux_bitmaps():
    """Cpus_allowed is "%*pb" (32-bit hex groups, the first as wide as its bits) and
    Cpus_allowed_list "%*pbl"; a 2-CPU machine cannot show the grouping natively."""
    from kvmbox.sentry.fsimpl.proctask import cpumask_hex, cpumask_list
    assert cpumask_hex(0b11, 2) == "3" and cpumask_hex(0b10, 2) == "2"
    assert cpumask_hex(1, 8) == "01" and cpumask_hex(1, 32) == "00000001"
    assert cpumask_hex(1 << 39 | 1, 40) == "80,00000001"
    assert cpumask_hex((1 << 64) - 1, 64) == "ffffffff,ffffffff"
    assert cpumask_list(0b1011101) == "0,2-4,6" and cpumask_list(1) == "0"
    assert cpumask_list(0b110) == "1-2" and cpumask_list(1 << 40) == "40"
