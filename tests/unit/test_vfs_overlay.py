"""overlay: a read-only host lower under a tmpfs upper; copy-up, whiteouts, merged listings,
and the lower left unchanged on the host."""
from __future__ import annotations

import errno
import hashlib
import os
import stat as S

import pytest

from kvmbox.errors import SyscallError
from kvmbox.sentry.fsimpl.host import HostFilesystem
from kvmbox.sentry.fsimpl.overlay import UPPER_INO, OverlayFs
from kvmbox.sentry.fsimpl.tmpfs import Tmpfs
from kvmbox.sentry.vfs.node import RENAME_EXCHANGE, RENAME_NOREPLACE
from kvmbox.sentry.vfs.path import MountTable
from tests.unit.vfs_fixtures import mem  # noqa: F401


def err(fn, *a, **k) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*a, **k)
    return e.value.errno


def snapshot(root) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            digest = hashlib.sha1(open(p, "rb").read()).hexdigest() if S.S_ISREG(st.st_mode) else ""
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture
def ov(tmp_path, mem):
    low = tmp_path / "lower"
    (low / "dir" / "sub").mkdir(parents=True)
    (low / "dir" / "a").write_bytes(b"lower a")
    (low / "dir" / "b").write_bytes(b"lower b" * 1000)
    (low / "dir" / "sub" / "deep").write_bytes(b"deep")
    (low / "top").write_bytes(b"top")
    os.chmod(low / "dir", 0o750)
    os.symlink("dir/a", low / "link")
    before = snapshot(low)
    host = HostFilesystem(5, str(low))
    fs = OverlayFs(6, host, Tmpfs(4, *mem))
    t = MountTable(fs)
    yield t, fs
    assert snapshot(low) == before, "the lower layer changed on the host"
    host.close()


def names(node) -> set[str]:
    return {n for n, _, _ in node.entries()}


def read(t, path) -> bytes:
    loc = t.resolve(t.root(), path)
    f = loc.node.open(os.O_RDONLY, loc)
    try:
        return f.read(1 << 20)
    finally:
        f.release()


def write(t, path, data: bytes, flags=os.O_WRONLY | os.O_TRUNC) -> None:
    loc = t.resolve(t.root(), path)
    f = loc.node.open(flags, loc)
    f.write(data)
    f.release()


def test_read_through_and_attrs(ov, tmp_path):
    t, fs = ov
    assert read(t, "/dir/a") == b"lower a"
    assert read(t, "/link") == b"lower a"
    a = t.resolve(t.root(), "/dir/a").node.attr()
    assert a.dev == 6 and a.ino == os.stat(tmp_path / "lower" / "dir" / "a").st_ino
    assert names(fs.root) == {"dir", "top", "link"}
    assert fs.root.attr().mode == os.stat(tmp_path / "lower").st_mode


def test_copy_up_on_write_keeps_ino(ov, tmp_path):
    t, fs = ov
    node = t.resolve(t.root(), "/dir/b").node
    ino = node.attr().ino
    write(t, "/dir/b", b"new", os.O_WRONLY)            # no O_TRUNC: the bytes are copied up
    assert read(t, "/dir/b") == b"new" + (b"lower b" * 1000)[3:]
    assert node.attr().ino == ino and node.upper is not None
    d = t.resolve(t.root(), "/dir").node
    assert S.S_IMODE(d.attr().mode) == 0o750                     # parent copied with its mode
    assert {e[1] for e in d.entries() if e[0] == "b"} == {ino}
    write(t, "/dir/a", b"truncated")
    assert read(t, "/dir/a") == b"truncated"
    loc = t.resolve(t.root(), "/dir/a")
    f = loc.node.open(os.O_RDONLY, loc)
    assert f.attr().dev == 6 and f.attr().ino == loc.node.ino
    f.release()


def test_setattr_copies_up(ov):
    t, fs = ov
    n = t.resolve(t.root(), "/top").node
    n.setattr(mode=0o600)
    assert S.S_IMODE(n.attr().mode) == 0o600 and read(t, "/top") == b"top"
    n2 = t.resolve(t.root(), "/dir/sub/deep").node
    n2.setattr(size=2)
    assert read(t, "/dir/sub/deep") == b"de"


def test_create_in_lower_dir_and_merged_listing(ov):
    t, fs = ov
    sub = t.resolve(t.root(), "/dir/sub").node
    f = sub.create("new", 0o644, 0, 0)
    assert names(sub) == {"deep", "new"}
    assert f.ino & UPPER_INO
    assert err(sub.create, "deep", 0o644, 0, 0) == errno.EEXIST
    assert err(sub.mkdir, "new", 0o755, 0, 0) == errno.EEXIST
    assert t.resolve(t.root(), "/dir/sub/new").node is f


def test_unlink_leaves_whiteout(ov):
    t, fs = ov
    d = t.resolve(t.root(), "/dir").node
    d.unlink("a")
    assert "a" not in names(d)
    assert err(t.resolve, t.root(), "/dir/a") == errno.ENOENT
    assert err(read, t, "/link") == errno.ENOENT
    n = d.create("a", 0o600, 0, 0)                     # a new file over the whiteout
    assert read(t, "/dir/a") == b"" and n.ino & UPPER_INO
    d.unlink("a")
    assert err(t.resolve, t.root(), "/dir/a") == errno.ENOENT
    assert err(d.unlink, "nope") == errno.ENOENT
    assert err(d.unlink, "sub") == errno.EISDIR


def test_rmdir_merged_and_opaque(ov):
    t, fs = ov
    d = t.resolve(t.root(), "/dir").node
    assert err(d.rmdir, "sub") == errno.ENOTEMPTY
    t.resolve(t.root(), "/dir/sub").node.unlink("deep")
    d.rmdir("sub")
    assert "sub" not in names(d)
    new = d.mkdir("sub", 0o755, 0, 0)                  # opaque: the lower "deep" stays hidden
    assert names(new) == set()
    assert err(t.resolve, t.root(), "/dir/sub/deep") == errno.ENOENT


def test_rename(ov):
    t, fs = ov
    root = fs.root
    d = t.resolve(t.root(), "/dir").node
    ino = t.resolve(t.root(), "/top").node.ino
    root.rename("top", d, "moved")
    assert "top" not in names(root) and read(t, "/dir/moved") == b"top"
    assert t.resolve(t.root(), "/dir/moved").node.ino == ino
    assert err(root.rename, "dir", root, "dir2") == errno.EXDEV        # a lower directory
    up = root.mkdir("updir", 0o755, 0, 0)
    up.create("x", 0o644, 0, 0)
    root.rename("updir", d, "updir2")
    assert names(t.resolve(t.root(), "/dir/updir2").node) == {"x"}
    d.create("c", 0o644, 0, 0)
    assert err(d.rename, "a", d, "c", RENAME_NOREPLACE) == errno.EEXIST
    d.rename("a", d, "c")                                               # lower a over upper c
    assert read(t, "/dir/c") == b"lower a" and "a" not in names(d)
    d.rename("b", d, "c", RENAME_EXCHANGE)
    assert read(t, "/dir/b") == b"lower a" and read(t, "/dir/c").startswith(b"lower b")
    assert err(d.rename, "c", d, "sub") == errno.EISDIR
    assert err(d.rename, "updir2", root, "link") == errno.ENOTDIR


def test_rename_dir_over_lower_empty_dir_hides_lower(ov):
    t, fs = ov
    d = t.resolve(t.root(), "/dir").node
    sub = t.resolve(t.root(), "/dir/sub").node
    sub.unlink("deep")
    fresh = fs.root.mkdir("fresh", 0o755, 0, 0)
    fresh.create("y", 0o644, 0, 0)
    fs.root.rename("fresh", d, "sub")
    assert names(t.resolve(t.root(), "/dir/sub").node) == {"y"}


def test_link_copies_up(ov):
    t, fs = ov
    d = t.resolve(t.root(), "/dir").node
    a = t.resolve(t.root(), "/dir/a").node
    d.link("hard", a)
    h = t.resolve(t.root(), "/dir/hard").node
    assert h.ino == a.ino and h.attr().nlink == 2
    write(t, "/dir/hard", b"via hard")
    assert read(t, "/dir/a") == b"via hard"


def test_symlink_and_fifo_in_overlay(ov):
    t, fs = ov
    fs.root.symlink("s", "top", 0, 0)
    assert read(t, "/s") == b"top"
    fs.root.mknod("p", S.S_IFIFO | 0o644, 0, 0, 0)
    assert S.S_ISFIFO(t.resolve(t.root(), "/p").node.attr().mode)
    ln = t.resolve(t.root(), "/link", follow=False).node
    ln.setattr(uid=0)                     # copy-up of a symlink keeps its target
    assert ln.readlink() == "dir/a"


def test_tmpfile_in_a_lower_directory(ov):
    t, fs = ov
    d = t.resolve(t.root(), "/dir").node
    assert d.upper is None
    node = d.tmpfile(0o600, 0, 0, linkable=True)
    assert d.upper is not None                       # made in the copied-up directory
    assert node.ino & UPPER_INO and node.attr().nlink == 0 and node.attr().dev == fs.dev
    assert names(d) == {"a", "b", "sub"}
    loc = t.resolve(t.root(), "/dir")
    f = node.open(os.O_RDWR, loc)
    f.write(b"unnamed")
    assert f.attr().ino == node.ino                  # fstat shows the overlay's node
    d.link("named", node)
    f.release()
    assert read(t, "/dir/named") == b"unnamed"
    named = t.resolve(t.root(), "/dir/named").node
    assert named.ino == node.ino and named.attr().nlink == 1
    excl = fs.root.tmpfile(0o600, 0, 0, linkable=False)
    g = excl.open(os.O_RDWR, t.root())
    assert err(fs.root.link, "x", excl) == errno.ENOENT
    g.release()


def test_xattrs_live_in_the_upper_layer(ov):
    t, fs = ov
    a = t.resolve(t.root(), "/dir/a").node
    assert err(a.getxattr, b"user.x") == errno.ENODATA and a.listxattr() == []
    # nothing to remove or replace on a lower object: no copy-up for that
    assert err(a.removexattr, b"user.x") == errno.ENODATA
    assert err(a.setxattr, b"user.x", b"v", 2) == errno.ENODATA     # XATTR_REPLACE
    assert err(a.setxattr, b"foo.x", b"v", 0) == errno.EOPNOTSUPP
    assert a.upper is None
    a.setxattr(b"user.x", b"v", 0)                   # copies up, bytes and all
    assert a.upper is not None and read(t, "/dir/a") == b"lower a"
    assert a.getxattr(b"user.x") == b"v" and a.listxattr() == [b"user.x"]
    d = t.resolve(t.root(), "/dir/sub").node
    d.setxattr(b"user.dir", b"1", 0)                 # directories copy up too
    assert names(d) == {"deep"} and d.getxattr(b"user.dir") == b"1"
    a.removexattr(b"user.x")
    assert a.listxattr() == []
    new = fs.root.create("new", 0o644, 0, 0)
    new.setxattr(b"trusted.t", b"1", 0)
    assert new.listxattr() == [b"trusted.t"]
