"""devfs through its nodes: exactly the listed devices, their rdev/modes, and each device's read/write semantics."""
from __future__ import annotations

import errno
import os
import stat as S
from types import SimpleNamespace

import pytest

from kvmbox.errors import SyscallError
from kvmbox.sentry.fsimpl import devfs
from kvmbox.sentry.fsimpl.devfs import DevFilesystem
from kvmbox.sentry.vfs.node import DT_CHR, DT_DIR, DT_LNK


@pytest.fixture
def fs() -> DevFilesystem:
    return DevFilesystem(SimpleNamespace(), os.makedev(0, 5))


def errno_of(fn, *args) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*args)
    return e.value.errno


def test_only_the_listed_entries(fs):
    entries = {name: dtype for name, _ino, dtype in fs.root.entries()}
    assert entries == {
        "null": DT_CHR, "zero": DT_CHR, "full": DT_CHR, "random": DT_CHR, "urandom": DT_CHR,
        "tty": DT_CHR, "fd": DT_LNK, "stdin": DT_LNK, "stdout": DT_LNK, "stderr": DT_LNK,
        "pts": DT_DIR, "shm": DT_DIR,
    }
    for absent in ("kvm", "mem", "kmem", "port", "sda", "vda", "loop0", "ptmx", "console"):
        assert errno_of(fs.root.lookup, absent) == errno.ENOENT
    assert fs.root.lookup("pts").entries() == [] and fs.root.lookup("shm").entries() == []
    assert fs.root.lookup("null") is fs.root.lookup("null")
    inos = [ino for _, ino, _ in fs.root.entries()]
    assert len(set(inos)) == len(inos)


@pytest.mark.parametrize("name,major,minor", [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
                                              ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)])
def test_char_devices_rdev_and_mode(fs, name, major, minor):
    a = fs.root.lookup(name).attr()
    assert a.mode == S.S_IFCHR | 0o666 and (os.major(a.rdev), os.minor(a.rdev)) == (major, minor)
    assert a.uid == 0 and a.dev == fs.dev and a.nlink == 1


def test_links_and_dirs(fs):
    assert {n: fs.root.lookup(n).readlink() for n in ("fd", "stdin", "stdout", "stderr")} == {
        "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
        "stderr": "/proc/self/fd/2"}
    assert fs.root.attr().mode == S.S_IFDIR | 0o755
    assert fs.root.lookup("shm").attr().mode == S.S_IFDIR | 0o1777
    assert errno_of(fs.root.lookup("null").readlink) == errno.EINVAL
    assert errno_of(fs.root.lookup("null").lookup, "x") == errno.ENOTDIR
    assert fs.root.lookup("stdin").jump() is None
    assert fs.statfs().f_type == 0x01021994


def open_dev(fs, name, flags=os.O_RDWR):
    return fs.root.lookup(name).open(flags, None)


def test_null(fs):
    f = open_dev(fs, "null")
    assert f.read(100) == b"" and f.write(b"abc") == 3 and f.pwrite(b"x", 10) == 1
    assert f.pread(5, 0) == b"" and f.seek(100, os.SEEK_SET) == 0
    assert f.attr().rdev == os.makedev(1, 3)


def test_zero_and_full(fs):
    z = open_dev(fs, "zero")
    assert z.read(4096) == bytes(4096) and z.write(b"ignored") == 7
    full = open_dev(fs, "full")
    assert full.read(10) == bytes(10)
    assert errno_of(full.write, b"x") == errno.ENOSPC
    assert errno_of(full.pwrite, b"x", 0) == errno.ENOSPC


def test_random(fs):
    for name in ("random", "urandom"):
        f = open_dev(fs, name)
        a, b = f.read(32), f.read(32)
        assert len(a) == 32 and a != b
        assert f.write(b"entropy") == 7
        assert f.poll(0x1 | 0x4) == 0x5


def test_access_modes(fs):
    r = open_dev(fs, "zero", os.O_RDONLY)
    assert errno_of(r.write, b"x") == errno.EBADF
    w = open_dev(fs, "zero", os.O_WRONLY)
    assert errno_of(w.read, 1) == errno.EBADF and w.write(b"x") == 1
    assert errno_of(fs.root.open, os.O_WRONLY, None) == errno.EISDIR
    # Access mode 3 opens for neither reading nor writing (ioctl only), as on Linux.
    for name in ("null", "zero", "full", "urandom"):
        m3 = open_dev(fs, name, 3)
        assert (m3.readable, m3.writable) == (False, False)
        assert errno_of(m3.read, 1) == errno.EBADF and errno_of(m3.write, b"x") == errno.EBADF
    assert errno_of(fs.root.open, 3, None) == errno.EISDIR


def test_extended_attributes_as_devtmpfs(fs):
    null, shm = fs.root.lookup("null"), fs.root.lookup("shm")
    assert errno_of(null.getxattr, b"trusted.x") == errno.ENODATA and null.listxattr() == []
    before = null.attr().ctime_ns
    null.setxattr(b"trusted.x", b"v", 0)
    shm.setxattr(b"user.y", b"w", 0)
    assert null.getxattr(b"trusted.x") == b"v" and null.listxattr() == [b"trusted.x"]
    assert shm.listxattr() == [b"user.y"] and fs.root.lookup("zero").listxattr() == []
    assert null.attr().ctime_ns >= before
    assert fs.xattr_space.used > 0
    null.removexattr(b"trusted.x")
    shm.removexattr(b"user.y")
    assert fs.xattr_space.used == 0
    assert errno_of(null.setxattr, b"system.posix_acl_access", b"", 0) == errno.EOPNOTSUPP


def test_tty_without_controlling_terminal_is_enxio(monkeypatch):
    monkeypatch.setattr(devfs, "_has_ctty", lambda: False)
    fs = DevFilesystem(SimpleNamespace(), os.makedev(0, 5))
    assert errno_of(fs.root.lookup("tty").open, os.O_RDWR, None) == errno.ENXIO
    assert fs.root.lookup("tty").attr().rdev == os.makedev(5, 0)


def test_tty_with_controlling_terminal_passes_through(monkeypatch, tmp_path):
    fake_tty = tmp_path / "tty"
    fake_tty.write_bytes(b"typed\n")
    real_open = os.open
    monkeypatch.setattr(devfs, "_has_ctty", lambda: True)
    monkeypatch.setattr(devfs.os, "open", lambda path, flags, *a: real_open(
        fake_tty if path == "/dev/tty" else path, flags, *a))
    fs = DevFilesystem(SimpleNamespace(), os.makedev(0, 5))
    f = fs.root.lookup("tty").open(os.O_RDWR, None)
    try:
        assert f.read(100) == b"typed\n"
        assert f.location is None and f.flags == os.O_RDWR
    finally:
        f.release()


def test_root_lists_through_getdents(fs):
    names = [e[3] for e in fs.root.open(os.O_RDONLY | os.O_DIRECTORY, None).getdents(4096)]
    assert names[:2] == [".", ".."] and sorted(names[2:]) == sorted(n for n, _, _ in fs.root.entries())
