"""tmpfs nodes and the open files over them (RegularFile, DirFile): Linux's rules, errno by errno;
O_TMPFILE and extended attributes, in the store and through their syscalls."""
from __future__ import annotations

import errno
import os
import stat as S

from types import SimpleNamespace

import pytest

from kvmbox.abi.fcntl import O_TMPFILE, O_TMPFILE_BIT
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import FdTable
from kvmbox.sentry.fsimpl.host import HostFilesystem
from kvmbox.sentry.fsimpl.tmpfs import TMPFS_MAGIC, Tmpfs
from kvmbox.sentry.pipe import make_pipe
from kvmbox.sentry.syscalls import sys_dir, sys_open, sys_xattr as X
from kvmbox.sentry.task import Credentials, default_rlimits
from kvmbox.sentry.vfs import at
from kvmbox.sentry.vfs.node import DT_DIR, DT_LNK, DT_REG, RENAME_EXCHANGE, RENAME_NOREPLACE
from kvmbox.sentry.vfs.path import FsContext
from kvmbox.sentry.vfs.xattr import XATTR_CREATE, XATTR_REPLACE
from tests.unit.test_handlers import BASE, FakeMM
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


# --- O_TMPFILE ----------------------------------------------------------------------------------
def test_tmpfile_has_no_name_until_linked(tmpfs, mem):
    _, frames = mem
    r = tmpfs.root
    used = frames.used_pages
    node = r.tmpfile(0o600, 5, 6, linkable=True)
    assert r.entries() == [] and node.attr().nlink == 0
    f = node.open(RW, None)
    f.write(b"x" * 10000)
    assert frames.used_pages > used
    r.link("named", node)
    assert r.lookup("named") is node and node.attr().nlink == 1 and not node.linkable
    f.release()                                  # the name keeps the bytes
    g = node.open(os.O_RDONLY, None)
    assert len(g.read(1 << 20)) == 10000
    g.release()
    r.unlink("named")
    assert frames.used_pages == used
    assert err(r.link, "again", node) == errno.ENOENT


def test_tmpfile_goes_with_its_last_description(tmpfs, mem):
    _, frames = mem
    used = frames.used_pages
    node = tmpfs.root.tmpfile(0o600, 0, 0, linkable=True)
    f = node.open(RW, None)
    dup_like = node.open(os.O_RDONLY, None)      # a second description of the same file
    f.write(b"y" * 9000)
    f.release()
    assert dup_like.read(5) == b"yyyyy"
    dup_like.release()
    assert frames.used_pages == used and tmpfs.root.entries() == []


def test_tmpfile_excl_is_never_linkable_and_readonly_fs(tmpfs, mem):
    node = tmpfs.root.tmpfile(0o600, 0, 0, linkable=False)
    f = node.open(RW, None)
    assert err(tmpfs.root.link, "x", node) == errno.ENOENT
    f.release()
    ro = Tmpfs(9, *mem, readonly=True)
    assert err(ro.root.tmpfile, 0o600, 0, 0, linkable=True) == errno.EROFS


# --- extended attributes --------------------------------------------------------------------------
def test_xattr_store(tmpfs):
    f = tmpfs.root.create("f", 0o644, 0, 0)
    assert err(f.getxattr, b"user.a") == errno.ENODATA and f.listxattr() == []
    before = f.attr().ctime_ns
    for name in (b"user.b", b"user.a", b"user.aa", b"trusted.t", b"user.B"):
        f.setxattr(name, b"v", 0)
    assert f.attr().ctime_ns >= before
    # tmpfs lists in descending byte order
    assert f.listxattr() == [b"user.b", b"user.aa", b"user.a", b"user.B", b"trusted.t"]
    assert err(f.setxattr, b"user.a", b"x", XATTR_CREATE) == errno.EEXIST
    assert err(f.setxattr, b"user.new", b"x", XATTR_REPLACE) == errno.ENODATA
    f.setxattr(b"user.a", b"replaced", XATTR_REPLACE)
    f.setxattr(b"user.empty", b"", 0)
    assert f.getxattr(b"user.a") == b"replaced" and f.getxattr(b"user.empty") == b""
    f.removexattr(b"user.a")
    assert err(f.removexattr, b"user.a") == errno.ENODATA
    assert err(f.setxattr, b"user.", b"x", 0) == errno.EINVAL
    for bad in (b"foo.bar", b"user", b"system.posix_acl_access"):
        assert err(f.setxattr, bad, b"x", 0) == errno.EOPNOTSUPP
        assert err(f.getxattr, bad) == errno.EOPNOTSUPP
    link = tmpfs.root.symlink("l", "f", 0, 0)
    link.setxattr(b"trusted.on_link", b"1", 0)       # the VFS keeps user.* off symlinks, not the store
    assert link.listxattr() == [b"trusted.on_link"] and b"trusted.on_link" not in f.listxattr()


def test_xattr_space_is_charged_and_given_back(tmpfs):
    """Attributes are charged to the inode space, as Linux 6.6+ tmpfs does."""
    import gc
    space = tmpfs.xattr_space
    assert space is tmpfs.space
    f = tmpfs.root.create("f", 0o644, 0, 0)
    space.max_inodes = 3                                 # root, f, and 1024 bytes to spare
    base = space.ispace
    f.setxattr(b"user.a", b"x" * 400, 0)                 # 40 + 6 + 400
    assert space.ispace == base + 446
    assert err(f.setxattr, b"user.b", b"x" * 600, 0) == errno.ENOSPC
    assert f.listxattr() == [b"user.a"] and space.ispace == base + 446
    f.setxattr(b"user.a", b"x" * 10, 0)                  # replacing gives the old bytes back
    assert space.ispace == base + 56
    assert err(tmpfs.root.create, "g", 0o644, 0, 0) == errno.ENOSPC   # no room for an inode
    space.max_inodes = 4
    g = tmpfs.root.create("g", 0o644, 0, 0)
    g.setxattr(b"user.g", b"y" * 100, 0)
    tmpfs.root.unlink("g")
    del g
    gc.collect()
    assert space.ispace == base + 56                     # a node that is gone holds nothing
    f.removexattr(b"user.a")
    assert space.ispace == base


# --- the syscalls over a mount table (O_TMPFILE, xattrs): permissions, EROFS, host mounts ------------
class FileTask:
    """What the open/link/xattr handlers touch of a Task."""

    def __init__(self, table, creds) -> None:
        self.mm = FakeMM()
        root = table.root()
        self.fs = FsContext(root, root, 0o022)
        self.creds = creds
        self.kernel = SimpleNamespace(vfs=table, is_executing=lambda node: False)
        self.fds = FdTable()
        self.rlimits = default_rlimits(None)
        self._next = BASE

    def s(self, text: str | bytes) -> int:
        """A NUL-terminated string in guest memory."""
        raw = text.encode() if isinstance(text, str) else text
        addr = self._next
        self.mm.put(addr, raw + b"\0")
        self._next += len(raw) + 1
        return addr

    def buf(self, n: int) -> int:
        addr = self._next
        self._next += n
        return addr


ROOT, USER = Credentials(0, 0, 0, 0), Credentials(1000, 1000, 1000, 1000)


@pytest.fixture
def world(tmpfs, table, mem, tmp_path):
    """/ a tmpfs (1777), /d a root-owned 0755 directory with a 0644 file, /ro a read-only
    tmpfs, /host a read-write host directory holding one file."""
    r = tmpfs.root
    r.mkdir("d", 0o755, 0, 0).create("f", 0o644, 0, 0)
    r.mkdir("ro", 0o755, 0, 0)
    r.mkdir("host", 0o755, 0, 0)
    table.mount("/ro", Tmpfs(7, *mem, mode=0o777, readonly=True), readonly=True)
    (tmp_path / "hf").write_bytes(b"host")
    host = HostFilesystem(8, str(tmp_path), readonly=False)
    table.mount("/host", host, readonly=False)
    yield table
    host.close()


def fails_with(code: int, fn, *args) -> None:
    with pytest.raises(SyscallError) as e:
        fn(*args)
    assert e.value.errno == code, (errno.errorcode.get(e.value.errno), errno.errorcode[code])


def test_o_tmpfile_through_open_and_linkat(world):
    t = FileTask(world, ROOT)
    fd = sys_open.do_open(t, at.AT_FDCWD, "/d", O_TMPFILE | os.O_RDWR, 0o666)
    f = t.fds.get(fd)
    a = f.attr()
    assert (S.S_IFMT(a.mode), a.mode & 0o777, a.nlink) == (S.S_IFREG, 0o644, 0)   # umask 022
    assert f.flags & O_TMPFILE == O_TMPFILE and f.location.path == f"/d/#{a.ino}"
    assert names(world, "/d") == {"f"}
    f.write(b"data")
    assert sys_dir.do_link(t, fd, t.s(""), at.AT_FDCWD, t.s("/d/named"), at.AT_EMPTY_PATH) == 0
    loc = world.resolve(world.root(), "/d/named")
    assert loc.node is f.location.node and loc.node.attr().nlink == 1
    t.fds.close(fd)
    assert loc.node.open(os.O_RDONLY, loc).read(10) == b"data"


def test_o_tmpfile_checks(world):
    t = FileTask(world, ROOT)
    for flags in (O_TMPFILE | os.O_RDONLY, O_TMPFILE_BIT | os.O_RDWR, O_TMPFILE | os.O_RDWR | os.O_CREAT,
                  os.O_DIRECTORY | os.O_CREAT | os.O_RDWR):
        fails_with(errno.EINVAL, sys_open.do_open, t, at.AT_FDCWD, "/d", flags, 0o600)
    rw = O_TMPFILE | os.O_RDWR
    fails_with(errno.ENOENT, sys_open.do_open, t, at.AT_FDCWD, "/missing", rw, 0o600)
    fails_with(errno.ENOTDIR, sys_open.do_open, t, at.AT_FDCWD, "/d/f", rw, 0o600)
    fails_with(errno.EROFS, sys_open.do_open, t, at.AT_FDCWD, "/ro", rw, 0o600)
    fails_with(errno.EOPNOTSUPP, sys_open.do_open, t, at.AT_FDCWD, "/host", rw, 0o600)
    fails_with(errno.EACCES, sys_open.do_open, FileTask(world, USER), at.AT_FDCWD, "/d", rw, 0o600)
    fd = sys_open.do_open(t, at.AT_FDCWD, "/d", rw | os.O_EXCL, 0o600)
    fails_with(errno.ENOENT, sys_dir.do_link, t, fd, t.s(""), at.AT_FDCWD, t.s("/d/x"), at.AT_EMPTY_PATH)
    # O_PATH drops O_TMPFILE: an O_PATH descriptor of the directory itself
    fd = sys_open.do_open(t, at.AT_FDCWD, "/d", O_TMPFILE | os.O_RDWR | os.O_PATH, 0o600)
    assert t.fds.get(fd).location.path == "/d" and names(world, "/d") == {"f"}


def names(table, path: str) -> set[str]:
    return {n for n, _, _ in table.resolve(table.root(), path).node.entries()}


def xcall(t, fn, *args) -> int:
    """A handler with raw argument registers."""
    return fn(t, tuple(x & (1 << 64) - 1 for x in args + (0,) * (6 - len(args))))


def test_xattr_permissions(world):
    root, user = FileTask(world, ROOT), FileTask(world, USER)
    f = root.s("/d/f")
    assert xcall(root, X.setxattr, f, root.s("trusted.t"), root.s("T"), 1, 0) == 0
    assert xcall(root, X.setxattr, f, root.s("user.u"), root.s("U"), 1, 0) == 0
    fu = user.s("/d/f")
    # trusted.*: root only (EPERM to change, ENODATA to read, hidden from lists)
    fails_with(errno.EPERM, xcall, user, X.setxattr, fu, user.s("trusted.t"), user.s("x"), 1, 0)
    fails_with(errno.ENODATA, xcall, user, X.getxattr, fu, user.s("trusted.t"), user.buf(8), 8)
    lst = user.buf(64)
    n = xcall(user, X.listxattr, fu, lst, 64)
    assert user.mm.copy_in(lst, n) == b"user.u\0"
    lst = root.buf(64)
    n = xcall(root, X.listxattr, f, lst, 64)
    assert root.mm.copy_in(lst, n) == b"user.u\0trusted.t\0"
    # user.*: DAC on the file (0644 root: readable, not writable by others)
    val = user.buf(8)
    assert xcall(user, X.getxattr, fu, user.s("user.u"), val, 8) == 1 and user.mm.copy_in(val, 1) == b"U"
    fails_with(errno.EACCES, xcall, user, X.setxattr, fu, user.s("user.v"), user.s("x"), 1, 0)
    # security.*: changes need root
    fails_with(errno.EPERM, xcall, user, X.removexattr, fu, user.s("security.s"))
    # user.* on a sticky directory of another user: EPERM (root may)
    top = user.s("/")
    fails_with(errno.EPERM, xcall, user, X.setxattr, top, user.s("user.x"), user.s("x"), 1, 0)
    assert xcall(root, X.setxattr, root.s("/"), root.s("user.x"), root.s("x"), 1, 0) == 0


def test_xattr_where_they_cannot_live(world):
    t = FileTask(world, ROOT)
    for path in ("/ro", "/ro/"):
        fails_with(errno.EROFS, xcall, t, X.setxattr, t.s(path), t.s("user.a"), t.s("x"), 1, 0)
        fails_with(errno.EROFS, xcall, t, X.removexattr, t.s(path), t.s("user.a"))
        fails_with(errno.ENODATA, xcall, t, X.getxattr, t.s(path), t.s("user.a"), 0, 0)
    hf = t.s("/host/hf")
    fails_with(errno.EOPNOTSUPP, xcall, t, X.setxattr, hf, t.s("user.a"), t.s("x"), 1, 0)
    fails_with(errno.ENODATA, xcall, t, X.getxattr, hf, t.s("user.a"), 0, 0)
    fails_with(errno.ENODATA, xcall, t, X.removexattr, hf, t.s("user.a"))
    fails_with(errno.EOPNOTSUPP, xcall, t, X.getxattr, hf, t.s("foo.bar"), 0, 0)
    assert xcall(t, X.listxattr, hf, 0, 0) == 0
    # a pipe: a FIFO for the VFS's rules, no store behind it
    r, w = make_pipe(0)
    fd = t.fds.alloc(r)
    fails_with(errno.ENODATA, xcall, t, X.fgetxattr, fd, t.s("user.a"), 0, 0)
    fails_with(errno.EPERM, xcall, t, X.fsetxattr, fd, t.s("user.a"), t.s("x"), 1, 0)
    fails_with(errno.EOPNOTSUPP, xcall, t, X.fgetxattr, fd, t.s("trusted.a"), 0, 0)
    fails_with(errno.EOPNOTSUPP, xcall, t, X.fsetxattr, fd, t.s("trusted.a"), t.s("x"), 1, 0)
    assert xcall(t, X.flistxattr, fd, 0, 0) == 0
    w.release()


def test_xattr_argument_checks(world, tmpfs):
    t = FileTask(world, ROOT)
    f = t.s("/d/f")
    fails_with(errno.EINVAL, xcall, t, X.setxattr, f, t.s("user.a"), t.s("x"), 1, 4)
    fails_with(errno.ERANGE, xcall, t, X.setxattr, f, t.s(""), t.s("x"), 1, 0)
    fails_with(errno.ERANGE, xcall, t, X.getxattr, f, t.s(b"user." + b"n" * 251), 0, 0)
    fails_with(errno.E2BIG, xcall, t, X.setxattr, f, t.s("user.a"), t.s("x"), 65537, 0)
    fails_with(errno.EFAULT, xcall, t, X.setxattr, f, t.s("user.a"), 0xDEAD_0000, 4, 0)
    # the name is checked before the path (Linux 6.13+)
    fails_with(errno.ERANGE, xcall, t, X.setxattr, t.s("/missing"), t.s(""), t.s("x"), 1, 0)
    fails_with(errno.ENOENT, xcall, t, X.setxattr, t.s("/missing"), t.s("user.a"), t.s("x"), 1, 0)
    caps = t.s("security.capability")
    fails_with(errno.EINVAL, xcall, t, X.setxattr, f, caps, t.s("bad!"), 4, 0)
    v2 = (0x02000000).to_bytes(4, "little") + bytes(16)
    assert xcall(t, X.setxattr, f, caps, t.s(v2[:4] + b"\1" * 16), 20, 0) == 0
    assert xcall(t, X.getxattr, f, caps, 0, 0) == 20
    # sizes: query, too small, list E2BIG past 64 KiB
    assert xcall(t, X.setxattr, f, t.s("user.v"), t.s("hello"), 5, 0) == 0
    fails_with(errno.ERANGE, xcall, t, X.getxattr, f, t.s("user.v"), t.buf(2), 2)
    node = world.resolve(world.root(), "/d/f").node
    tmpfs.space.max_inodes = 1 << 20
    for i in range(300):
        node.setxattr(b"user.%03d" % i + b"x" * 240, b"v", 0)
    size = xcall(t, X.listxattr, f, 0, 0)
    assert size > 65536
    fails_with(errno.E2BIG, xcall, t, X.listxattr, f, t.buf(1), 70000)
    fails_with(errno.ERANGE, xcall, t, X.listxattr, f, t.buf(1), 1000)
