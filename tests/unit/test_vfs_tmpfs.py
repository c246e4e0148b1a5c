"""tmpfs nodes and the open files over them (RegularFile, DirFile): Linux's rules, errno by errno."""
from __future__ import annotations

import errno
import os
import stat as S

import pytest

from kvmbox.errors import SyscallError
from kvmbox.sentry.fsimpl.tmpfs import TMPFS_MAGIC, Tmpfs
from kvmbox.sentry.vfs.node import DT_DIR, DT_LNK, DT_REG, RENAME_EXCHANGE, RENAME_NOREPLACE
from tests.unit.vfs_fixtures import mem, table, tmpfs  # noqa: F401

RW = os.O_RDWR


def err(fn, *a, **k) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*a, **k)
    return e.value.errno


def test_create_write_read_stat(tmpfs, table):
    r = tmpfs.root
    f = r.create("f", 0o640, 1000, 100)
    loc = table.child(table.root(), "f", f)
    fd = f.open(RW, loc)
    assert fd.write(b"hello world") == 11
    assert fd.seek(0, os.SEEK_SET) == 0
    assert fd.read(5) == b"hello"
    assert fd.pread(5, 6) == b"world"
    a = fd.attr()
    assert (a.size, a.mode, a.uid, a.gid, a.nlink, a.dev) == (11, S.S_IFREG | 0o640, 1000, 100, 1, 1)
    assert fd.stat()[8:16] == f.ino.to_bytes(8, "little")
    assert fd.readable_bytes() == 6
    assert fd.seek(-1, os.SEEK_END) == 10
    assert err(fd.seek, -100, os.SEEK_CUR) == errno.EINVAL
    fd.truncate(3)
    assert f.attr().size == 3
    fd.release()
    assert tmpfs.statfs().f_type == TMPFS_MAGIC


def test_append_and_access_modes(tmpfs):
    f = tmpfs.root.create("f", 0o644, 0, 0)
    w = f.open(os.O_WRONLY | os.O_APPEND, None)
    w.write(b"ab")
    w.seek(0, os.SEEK_SET)
    w.write(b"cd")
    assert err(w.read, 1) == errno.EBADF
    r = f.open(os.O_RDONLY, None)
    assert r.read(10) == b"abcd"
    assert err(r.write, b"x") == errno.EBADF
    assert err(r.truncate, 0) == errno.EINVAL
    f.open(os.O_WRONLY | os.O_TRUNC, None).release()
    assert f.attr().size == 0
    w.release(), r.release()


def test_mmap_source_shares_frames(tmpfs):
    f = tmpfs.root.create("f", 0o644, 0, 0)
    fd = f.open(RW, None)
    fd.write(b"x" * 5000)
    src = fd.mmap_source()
    assert src.shared_backing() is f.data.backing and src.size == 5000
    fd.release()


def test_unlinked_file_lives_while_open(mem, tmpfs):
    mf, fa = mem
    f = tmpfs.root.create("f", 0o644, 0, 0)
    fd = f.open(RW, None)
    fd.write(b"y" * 8192)
    tmpfs.root.unlink("f")
    assert f.attr().nlink == 0
    assert fd.pread(3, 0) == b"yyy"
    assert fa.used_pages == 2
    fd.release()
    assert fa.used_pages == 0


def test_hard_links(tmpfs):
    r = tmpfs.root
    f = r.create("f", 0o644, 0, 0)
    r.link("g", f)
    assert f.attr().nlink == 2 and r.lookup("g") is f
    assert err(r.link, "g", f) == errno.EEXIST
    d = r.mkdir("d", 0o755, 0, 0)
    assert err(r.link, "dl", d) == errno.EPERM
    r.unlink("f")
    assert r.lookup("g").attr().nlink == 1


def test_dirs_nlink_rmdir_unlink(tmpfs):
    r = tmpfs.root
    d = r.mkdir("d", 0o755, 0, 0)
    assert r.attr().nlink == 3 and d.attr().nlink == 2
    d.create("x", 0o644, 0, 0)
    assert err(r.rmdir, "d") == errno.ENOTEMPTY
    assert err(r.unlink, "d") == errno.EISDIR
    assert err(d.rmdir, "x") == errno.ENOTDIR
    assert err(r.mkdir, "d", 0o755, 0, 0) == errno.EEXIST
    assert err(d.lookup("x").lookup, "y") == errno.ENOTDIR
    d.unlink("x")
    r.rmdir("d")
    assert r.attr().nlink == 2
    assert err(d.create, "z", 0o644, 0, 0) == errno.ENOENT    # a removed directory


def test_mknod(tmpfs):
    r = tmpfs.root
    p = r.mknod("p", S.S_IFIFO | 0o600, 0, 0, 0)
    assert S.S_ISFIFO(p.attr().mode)
    assert err(r.mknod, "c", S.S_IFCHR | 0o600, 0x0103, 0, 0) == errno.EPERM
    assert S.S_ISREG(r.mknod("r", 0o600, 0, 0, 0).attr().mode)


def test_symlink(tmpfs):
    s = tmpfs.root.symlink("s", "some/where", 0, 0)
    assert s.readlink() == "some/where" and s.attr().size == 10
    assert err(s.open, 0, None) == errno.ELOOP
    assert err(tmpfs.root.create("f", 0o644, 0, 0).readlink) == errno.EINVAL


def test_rename_rules(tmpfs, mem):
    r = tmpfs.root
    a = r.mkdir("a", 0o755, 0, 0)
    b = r.mkdir("b", 0o755, 0, 0)
    f = a.create("f", 0o644, 0, 0)
    g = b.create("g", 0o644, 0, 0)
    a.rename("f", b, "g")                        # replaces g
    assert b.lookup("g") is f and err(a.lookup, "f") == errno.ENOENT
    assert g.nlink == 0
    b.rename("g", b, "g")                        # same name: nothing
    assert err(r.rename, "a", a, "x") == errno.EINVAL            # into itself
    a.mkdir("sub", 0o755, 0, 0)
    assert err(r.rename, "a", a.lookup("sub"), "x") == errno.EINVAL
    assert err(r.rename, "b", r, "a") == errno.ENOTEMPTY
    assert err(b.rename, "g", r, "a") == errno.EISDIR
    assert err(r.rename, "a", b, "g") == errno.ENOTDIR
    assert err(r.rename, "nope", r, "x") == errno.ENOENT
    b.create("h", 0o644, 0, 0)
    assert err(b.rename, "g", b, "h", RENAME_NOREPLACE) == errno.EEXIST
    assert err(b.rename, "g", b, "h", RENAME_NOREPLACE | RENAME_EXCHANGE) == errno.EINVAL
    assert err(b.rename, "g", b, "zz", RENAME_EXCHANGE) == errno.ENOENT
    h = b.lookup("h")
    b.rename("g", b, "h", RENAME_EXCHANGE)
    assert b.lookup("h") is f and b.lookup("g") is h
    # a directory moves: link counts follow
    empty = r.mkdir("e", 0o755, 0, 0)
    r.rename("e", b, "e2")
    assert r.attr().nlink == 4 and b.attr().nlink == 3 and empty.parent is b
    r.rename("a", b, "e2")                        # dir over an empty dir
    assert b.lookup("e2") is a and empty.nlink == 0
    # exchange a dir and a file across directories
    r.create("top", 0o644, 0, 0)
    r.rename("top", b, "e2", RENAME_EXCHANGE)
    assert r.lookup("top") is a and a.parent is r
    other = Tmpfs(9, *mem)
    assert err(r.rename, "top", other.root, "x") == errno.EXDEV


def test_setattr_times(tmpfs):
    f = tmpfs.root.create("f", 0o644, 0, 0)
    f.setattr(mode=0o4755, uid=5, gid=6, atime_ns=10**9, mtime_ns=2 * 10**9)
    a = f.attr()
    assert (a.mode, a.uid, a.gid, a.atime_ns, a.mtime_ns) == (S.S_IFREG | 0o4755, 5, 6, 10**9, 2 * 10**9)
    f.setattr(size=100)
    assert f.attr().size == 100
    assert err(tmpfs.root.setattr, size=0) == errno.EISDIR


def test_getdents(tmpfs):
    r = tmpfs.root
    r.mkdir("d", 0o755, 0, 0)
    r.create("f", 0o644, 0, 0)
    r.symlink("l", "f", 0, 0)
    fd = r.open(os.O_RDONLY | os.O_DIRECTORY, None)
    got = fd.getdents(4096)
    assert [(name, t) for _, _, t, name in got] == [
        (".", DT_DIR), ("..", DT_DIR), ("d", DT_DIR), ("f", DT_REG), ("l", DT_LNK)]
    assert [off for _, off, _, _ in got] == [1, 2, 3, 4, 5]
    assert fd.getdents(4096) == []
    assert fd.seek(0, os.SEEK_SET) == 0
    assert len(fd.getdents(48)) == 2        # 24 bytes each
    assert len(fd.getdents(4096)) == 3
    fd.seek(0, os.SEEK_SET)
    assert err(fd.getdents, 10) == errno.EINVAL
    assert err(fd.read, 1) == errno.EISDIR
    assert err(r.open, os.O_RDWR, None) == errno.EISDIR
    assert err(tmpfs.root.lookup("f").open(0, None).getdents, 100) == errno.ENOTDIR
