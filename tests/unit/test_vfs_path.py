"""Path resolution on the Sentry's mount table: ., .., symlinks, ELOOP, mounts, trailing slashes."""
from __future__ import annotations

import errno

import pytest

from kvmbox.errors import SyscallError
from kvmbox.sentry.fsimpl.tmpfs import Tmpfs
from kvmbox.sentry.vfs import perm
from kvmbox.sentry.vfs.path import MountTable, WalkRules
from tests.unit.vfs_fixtures import Creds, mem, table, tmpfs  # noqa: F401


def err(fn, *a, **k) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*a, **k)
    return e.value.errno


@pytest.fixture
def tree(table):
    """/a/b/f (file), /a/up -> .., /abs -> /a/b, /loop1 <-> /loop2, /dangling -> nowhere"""
    r = table.root().node
    a = r.mkdir("a", 0o755, 0, 0)
    b = a.mkdir("b", 0o755, 0, 0)
    b.create("f", 0o644, 0, 0)
    a.symlink("up", "..", 0, 0)
    r.symlink("abs", "/a/b", 0, 0)
    r.symlink("loop1", "loop2", 0, 0)
    r.symlink("loop2", "loop1", 0, 0)
    r.symlink("dangling", "nowhere", 0, 0)
    r.symlink("escape", "/../../../a", 0, 0)
    return table


def test_basic_dot_dotdot(tree):
    root = tree.root()
    loc = tree.resolve(root, "/a/./b/../b/f")
    assert loc.path == "/a/b/f" and not loc.node.is_dir()
    assert tree.resolve(root, "/..").path == "/"
    assert tree.resolve(root, "/../../a/..").path == "/"
    assert tree.resolve(tree.resolve(root, "/a"), "b/f").path == "/a/b/f"
    assert tree.resolve(tree.resolve(root, "/a/b"), "../../..").path == "/"


def test_symlinks(tree):
    root = tree.root()
    assert tree.resolve(root, "/abs/f").path == "/a/b/f"
    assert tree.resolve(root, "/a/up/a/b").path == "/a/b"
    assert tree.resolve(root, "/abs", follow=False).path == "/abs"
    assert tree.resolve(root, "/abs").path == "/a/b"
    assert tree.resolve(root, "/escape").path == "/a"
    assert err(tree.resolve, root, "/loop1") == errno.ELOOP
    assert tree.resolve(root, "/loop1", follow=False).path == "/loop1"
    assert err(tree.resolve, root, "/dangling") == errno.ENOENT
    assert tree.resolve(root, "/dangling", follow=False).node.is_symlink()


def test_absolute_symlink_restarts_at_given_root(tree):
    root = tree.root()
    chroot = tree.resolve(root, "/a")
    chroot.node.symlink("jail", "/b/f", 0, 0)
    assert tree.resolve(chroot, "jail", root=chroot).path == "/a/b/f"
    assert tree.resolve(chroot, "../../b", root=chroot).path == "/a/b"


def test_link_limit(table):
    r = table.root().node
    r.mkdir("d", 0o755, 0, 0)
    for i in range(41):
        r.symlink(f"l{i}", f"l{i + 1}" if i < 40 else "d", 0, 0)
    assert table.resolve(table.root(), "/l1").path == "/d"        # 40 links
    assert err(table.resolve, table.root(), "/l0") == errno.ELOOP  # 41 links


def test_trailing_slash_and_notdir(tree):
    root = tree.root()
    assert err(tree.resolve, root, "/a/b/f/") == errno.ENOTDIR
    assert err(tree.resolve, root, "/a/b/f/x") == errno.ENOTDIR
    assert tree.resolve(root, "/abs/", follow=False).path == "/a/b"   # trailing / follows
    assert err(tree.resolve, root, "/nope") == errno.ENOENT
    assert err(tree.resolve, root, "") == errno.ENOENT


def test_name_too_long(tree):
    root = tree.root()
    assert err(tree.resolve, root, "/" + "x" * 256) == errno.ENAMETOOLONG
    assert err(tree.resolve, root, "/a" * 2048) == errno.ENAMETOOLONG
    assert err(tree.resolve, root, "/" + "x" * 255) == errno.ENOENT


def test_mount_crossing_both_ways(tree, mem):
    mf, fa = mem
    other = Tmpfs(2, mf, fa)
    other.root.create("inner", 0o644, 0, 0)
    m = tree.mount("/a/b", other, source="tmpfs")
    root = tree.root()
    loc = tree.resolve(root, "/a/b")
    assert loc.mount is m and loc.node is other.root
    assert tree.resolve(root, "/a/b/inner").mount is m
    assert err(tree.resolve, root, "/a/b/f") == errno.ENOENT       # covered
    up = tree.resolve(root, "/a/b/..")
    assert up.path == "/a" and up.mount is not m
    assert tree.resolve(loc, "..").path == "/a"
    assert tree.parent_of(loc).path == "/a"
    assert tree.resolve(root, "/abs/inner").mount is m              # via a symlink too
    assert [x.path for x in tree.mounts()] == ["/", "/a/b"]


def test_resolve_parent(tree):
    root = tree.root()
    p, name = tree.resolve_parent(root, "/a/b/new")
    assert p.path == "/a/b" and name == "new"
    p, name = tree.resolve_parent(root, "/abs/new/")
    assert p.path == "/a/b" and name == "new"
    assert tree.resolve_parent(root, "/")[1] == ""
    p, name = tree.resolve_parent(tree.resolve(root, "/a"), "x")
    assert p.path == "/a" and name == "x"
    assert err(tree.resolve_parent, root, "/a/b/f/x") == errno.ENOTDIR
    assert err(tree.resolve_parent, root, "/nope/x") == errno.ENOENT


def test_search_permission(tree):
    root = tree.root()
    tree.resolve(root, "/a").node.setattr(mode=0o700)
    assert err(tree.resolve, root, "/a/b", creds=Creds()) == errno.EACCES
    assert tree.resolve(root, "/a/b", creds=Creds(0, 0)).path == "/a/b"


def test_perm():
    from kvmbox.sentry.vfs.node import Attr
    a = Attr(dev=1, ino=1, mode=0o100640, nlink=1, uid=1000, gid=50, size=0)
    assert perm.may_access(a, Creds(1000, 1), perm.MAY_READ | perm.MAY_WRITE)
    assert not perm.may_access(a, Creds(1000, 1), perm.MAY_EXEC)
    assert perm.may_access(a, Creds(2000, 50), perm.MAY_READ)
    assert not perm.may_access(a, Creds(2000, 50), perm.MAY_WRITE)
    assert not perm.may_access(a, Creds(2000, 1), perm.MAY_READ)
    assert perm.may_access(a, Creds(0, 0), perm.MAY_READ | perm.MAY_WRITE)
    assert not perm.may_access(a, Creds(0, 0), perm.MAY_EXEC)          # no x bit at all
    d = Attr(dev=1, ino=1, mode=0o40000, nlink=2, uid=1, gid=1, size=0)
    assert perm.may_access(d, Creds(0, 0), perm.MAY_EXEC)


def test_check_writable(table):
    root = table.root()
    perm.check_writable(root)
    ro = MountTable(root.mount.fs, readonly=True)
    assert err(perm.check_writable, ro.root()) == errno.EROFS


# --- the restricted walk (openat2's RESOLVE_*: WalkRules) ------------------------------------
BENEATH = WalkRules(beneath=True)
IN_ROOT = WalkRules(in_root=True)


def magic_link(table, dirpath: str, name: str, to):
    """A procfs-style magic link `name` in `dirpath`: its jump() goes straight to `to`."""
    link = table.resolve(table.root(), dirpath).node.symlink(name, "/not/followed", 0, 0)
    link.__class__ = type("MagicLink", (type(link),), {"__slots__": (), "jump": lambda self: to})
    return link


def test_rules_none_is_the_plain_walk(tree):
    root = tree.root()
    a = tree.resolve(root, "/a")
    for path in ("b/f", "up/a/b", "../abs/f", "/escape"):
        assert tree.resolve(a, path, rules=WalkRules()) == tree.resolve(a, path)


def test_beneath(tree):
    a = tree.resolve(tree.root(), "/a")
    assert tree.resolve(a, "b/../b/f", rules=BENEATH).path == "/a/b/f"
    assert tree.resolve(a, "b/..", rules=BENEATH).path == "/a"
    assert err(tree.resolve, a, "..", rules=BENEATH) == errno.EXDEV
    assert err(tree.resolve, a, "b/../..", rules=BENEATH) == errno.EXDEV
    assert err(tree.resolve, a, "up", rules=BENEATH) == errno.EXDEV      # relative link to ..
    assert err(tree.resolve, a, "/a/b", rules=BENEATH) == errno.EXDEV    # absolute path
    a.node.symlink("abs", "/a/b", 0, 0)
    assert err(tree.resolve, a, "abs", rules=BENEATH) == errno.EXDEV     # absolute link
    assert tree.resolve(a, "abs", follow=False, rules=BENEATH).node.is_symlink()
    b = tree.resolve(a, "b")
    b.node.symlink("rel", "f", 0, 0)
    assert tree.resolve(b, "rel", rules=BENEATH).path == "/a/b/f"


def test_in_root_clamps(tree):
    a = tree.resolve(tree.root(), "/a")
    a.node.symlink("abs", "/b", 0, 0)
    assert tree.resolve(a, "../../b/f", rules=IN_ROOT).path == "/a/b/f"
    assert tree.resolve(a, "/b/f", rules=IN_ROOT).path == "/a/b/f"
    assert tree.resolve(a, "abs/f", rules=IN_ROOT).path == "/a/b/f"     # "/" is /a
    assert tree.resolve(a, "up/up/b", rules=IN_ROOT).path == "/a/b"
    assert tree.resolve(a, "..", rules=IN_ROOT).path == "/a"
    assert tree.resolve(a, "/abs", rules=IN_ROOT).path == "/a/b"          # /a/abs -> "/b"
    assert tree.resolve(a, "/abs", rules=IN_ROOT, follow=False).path == "/a/abs"


def test_no_symlinks(tree):
    root = tree.root()
    rules = WalkRules(no_symlinks=True)
    assert err(tree.resolve, root, "/abs", rules=rules) == errno.ELOOP
    assert err(tree.resolve, root, "/abs/f", rules=rules) == errno.ELOOP
    assert err(tree.resolve, root, "/abs/", follow=False, rules=rules) == errno.ELOOP
    assert tree.resolve(root, "/abs", follow=False, rules=rules).node.is_symlink()
    assert tree.resolve(root, "/a/b/../b/f", rules=rules).path == "/a/b/f"


def test_no_xdev(tree, mem):
    mf, fa = mem
    other = Tmpfs(2, mf, fa)
    other.root.mkdir("sub", 0o755, 0, 0)
    other.root.symlink("toroot", "/a", 0, 0)
    other.root.symlink("rel", "sub", 0, 0)
    tree.mount("/a/b", other)
    root = tree.root()
    rules = WalkRules(no_xdev=True)
    assert err(tree.resolve, root, "/a/b", rules=rules) == errno.EXDEV            # down
    assert err(tree.resolve, root, "/abs", rules=rules) == errno.EXDEV            # down via a link
    assert tree.resolve(root, "/a", rules=rules).path == "/a"
    b = tree.resolve(root, "/a/b")
    assert err(tree.resolve, b, "..", rules=rules) == errno.EXDEV                 # up
    assert err(tree.resolve, b, "sub/../..", rules=rules) == errno.EXDEV
    assert tree.resolve(b, "sub/..", rules=rules).path == "/a/b"
    assert tree.resolve(b, "rel", rules=rules).path == "/a/b/sub"
    assert tree.resolve(b, "/a", rules=rules).path == "/a"       # an absolute path may start at /
    assert err(tree.resolve, b, "toroot", rules=rules) == errno.EXDEV   # an absolute link may not


def test_magic_links(tree):
    root = tree.root()
    f = tree.resolve(root, "/a/b/f")
    magic = magic_link(tree, "/a", "fd3", f)
    a = tree.resolve(root, "/a")
    assert tree.resolve(a, "fd3") == f
    assert err(tree.resolve, a, "fd3", rules=WalkRules(no_magiclinks=True)) == errno.ELOOP
    assert err(tree.resolve, a, "fd3", rules=WalkRules(no_symlinks=True)) == errno.ELOOP
    assert err(tree.resolve, a, "fd3", rules=BENEATH) == errno.EXDEV
    assert err(tree.resolve, a, "fd3", rules=IN_ROOT) == errno.EXDEV
    assert err(tree.resolve, a, "fd3", rules=WalkRules(no_magiclinks=True, beneath=True)) == errno.ELOOP
    assert tree.resolve(a, "fd3", follow=False, rules=WalkRules(no_magiclinks=True)).node is magic
    assert tree.resolve(a, "fd3", rules=WalkRules(no_xdev=True)) == f    # same mount


def test_magic_link_across_a_mount(tree, mem):
    mf, fa = mem
    other = Tmpfs(2, mf, fa)
    m = tree.mount("/a/b", other)
    root = tree.root()
    b = tree.resolve(root, "/a/b")
    assert b.mount is m
    magic_link(tree, "/a", "fd4", b)
    a = tree.resolve(root, "/a")
    assert tree.resolve(a, "fd4") == b
    assert err(tree.resolve, a, "fd4", rules=WalkRules(no_xdev=True)) == errno.EXDEV


def test_create_hook(tree):
    root = tree.root()
    made = []

    def create(parent, name):
        made.append((parent.path, name))
        return tree.child(parent, name, parent.node.create(name, 0o644, 0, 0))

    assert tree.resolve(root, "/a/b/new", create=create).path == "/a/b/new"
    assert made == [("/a/b", "new")]
    assert tree.resolve(root, "/a/b/new", create=create).path == "/a/b/new"      # exists now
    assert tree.resolve(root, "/dangling", create=create).path == "/nowhere"     # via a link
    assert made[-1] == ("/", "nowhere")
    n = len(made)
    assert err(tree.resolve, root, "/a/b/x/", create=create) == errno.EISDIR
    assert err(tree.resolve, root, "/a/b/f/", create=create) == errno.EISDIR
    assert err(tree.resolve, root, "/a/nodir/x", create=create) == errno.ENOENT
    assert err(tree.resolve, root, "/a/b/f/x", create=create) == errno.ENOTDIR
    assert err(tree.resolve, tree.resolve(root, "/a"), "../y", create=create, rules=BENEATH) == errno.EXDEV
    assert len(made) == n
    a = tree.resolve(root, "/a")
    assert tree.resolve(a, "/z", create=create, rules=IN_ROOT).path == "/a/z"
