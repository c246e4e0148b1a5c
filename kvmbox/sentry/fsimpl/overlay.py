"""overlay: a read-only lower tree (a host directory) under a writable tmpfs upper.

Lookups check the upper layer, then the parent's whiteouts, then the lower
layer; directories present in both merge (upper names win, whiteouts hide
lower names).  Anything that writes copies the object up first, with its
parent chain (directories get the lower's mode, owner and times): open for
writing or with O_TRUNC, setattr, link, and creating or removing names in a
lower-only directory.  A regular file's bytes are copied into the upper
tmpfs's PageData.  unlink/rmdir/rename of a name the lower layer has leave a
whiteout.  Renaming a directory that has a lower part gives EXDEV (as
overlayfs without redirect_dir; mv falls back to copy and delete).  Extended
attributes live in the upper layer (setxattr copies up; lower objects report
none), and O_TMPFILE files are made there too.

Inode numbers: an object keeps its lower inode number, also after copy-up
(as overlayfs with xino); objects born in the upper layer get the upper's
number with bit 62 set.

Invariant: every OvNode with an upper part stays in its parent's strong child
cache until it is unlinked or renamed away, so whiteouts (kept in the parent
OvNode) and merge decisions made at creation (a directory made over a whiteout
has no lower part, so it is opaque) persist; lower-only OvNodes are cached
weakly and rebuilt identically when needed.
"""
from __future__ import annotations

import errno
import os
import stat as S
import weakref

from kvmbox.errors import SyscallError
from kvmbox.sentry.fsimpl.tmpfs import TmpDir, Tmpfs, TmpNode
from kvmbox.sentry.vfs.node import RENAME_EXCHANGE, RENAME_NOREPLACE, Attr, Filesystem, Node, StatFs
from kvmbox.sentry.vfs.regular import DirFile, access_of, opens_for_write
from kvmbox.sentry.vfs.xattr import XATTR_REPLACE, check_handler

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.vfs.path import Location

OVERLAYFS_SUPER_MAGIC = 0x794C7630
UPPER_INO = 1 << 62
COPY_CHUNK = 1 << 20


class OverlayFs(Filesystem):
    """`lower` (read-only, any Filesystem) under `upper` (a Tmpfs)."""

    fstype = "overlay"

    def __init__(self, dev: int, lower: Filesystem, upper: Tmpfs) -> None:
        super().__init__(dev)
        self.lower = lower
        self.upper = upper
        self._copied: "weakref.WeakKeyDictionary[Node, int]" = weakref.WeakKeyDictionary()
        la = lower.root.attr()
        upper.root.setattr(mode=la.mode & 0o7777, uid=la.uid, gid=la.gid)
        upper.root.put_times((la.atime_ns, la.mtime_ns, la.ctime_ns))
        self.root = OvNode(self, None, "", upper.root, lower.root)

    def ino_for(self, upper: Node | None, lower: Node | None) -> int:
        if lower is not None:
            return lower.ino
        assert upper is not None
        ino = self._copied.get(upper)
        return ino if ino is not None else UPPER_INO | upper.ino

    def statfs(self) -> StatFs:
        st = self.upper.statfs()
        st.f_type = OVERLAYFS_SUPER_MAGIC
        return st


class OvNode(Node):
    """One merged object: its upper part, its lower part, or both (a merged directory)."""

    __slots__ = ("parent", "name", "upper", "lower", "whiteouts", "_strong", "_weak")

    fs: OverlayFs

    def __init__(self, fs: OverlayFs, parent: "OvNode | None", name: str,
                 upper: Node | None, lower: Node | None) -> None:
        super().__init__(fs, fs.ino_for(upper, lower))
        self.parent = parent
        self.name = name
        self.upper = upper
        self.lower = lower
        self.whiteouts: set[str] | None = None
        self._strong: dict[str, OvNode] | None = None
        self._weak: "weakref.WeakValueDictionary[str, OvNode] | None" = None

    # --- the layers ---------------------------------------------------------------------
    @property
    def _top(self) -> Node:
        return self.upper if self.upper is not None else self.lower   # type: ignore[return-value]

    def is_dir(self) -> bool:
        return self._top.is_dir()

    def is_symlink(self) -> bool:
        return self._top.is_symlink()

    @property
    def mode(self) -> int:
        return self._top.mode

    def _lower_dir(self) -> Node | None:
        """The lower directory merged into this one, if any."""
        lo = self.lower
        if lo is None or not lo.is_dir() or (self.upper is not None and not self.upper.is_dir()):
            return None
        return lo

    def _lower_has(self, name: str) -> bool:
        ld = self._lower_dir()
        if ld is None:
            return False
        try:
            ld.lookup(name)
            return True
        except SyscallError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise

    def _cached(self, name: str) -> "OvNode | None":
        if self._strong is not None:
            c = self._strong.get(name)
            if c is not None:
                return c
        if self._weak is not None:
            return self._weak.get(name)
        return None

    def _keep(self, name: str, node: "OvNode") -> "OvNode":
        if node.upper is not None:
            if self._strong is None:
                self._strong = {}
            self._strong[name] = node
            if self._weak is not None:
                self._weak.pop(name, None)
        else:
            if self._weak is None:
                self._weak = weakref.WeakValueDictionary()
            self._weak[name] = node
        return node

    def _forget(self, name: str) -> None:
        if self._strong is not None:
            self._strong.pop(name, None)
        if self._weak is not None:
            self._weak.pop(name, None)

    def _whiteout(self, name: str) -> None:
        if self.whiteouts is None:
            self.whiteouts = set()
        self.whiteouts.add(name)

    # --- copy-up --------------------------------------------------------------------------
    def copy_up(self, data: bool = True) -> None:
        """Give this object an upper part (with its parents'); `data`: copy a file's bytes.

        A copy-up is invisible: the copy keeps the lower object's atime, mtime and ctime,
        and the parent's upper directory keeps its times although a name was added."""
        if self.upper is not None:
            return
        parent = self.parent
        assert parent is not None and self.lower is not None
        parent.copy_up()
        lo = self.lower
        a = lo.attr()
        pu = parent.upper
        assert isinstance(pu, TmpDir)
        parent_times = pu.times()
        kind = S.S_IFMT(a.mode)
        if kind == S.S_IFDIR:
            up = pu.mkdir(self.name, a.mode, a.uid, a.gid)
        elif kind == S.S_IFREG:
            up = pu.create(self.name, a.mode, a.uid, a.gid)
            if data and a.size:
                try:
                    self._copy_bytes(lo, up)
                except BaseException:           # ENOSPC: no half copy may show
                    pu.unlink(self.name)
                    pu.put_times(parent_times)
                    raise
        elif kind == S.S_IFLNK:
            up = pu.symlink(self.name, lo.readlink(), a.uid, a.gid)
        elif kind in (S.S_IFIFO, S.S_IFSOCK):
            up = pu.mknod(self.name, a.mode, 0, a.uid, a.gid)
        else:
            raise SyscallError(errno.EPERM)          # device nodes are not copied up
        assert isinstance(up, TmpNode)
        up.put_times((a.atime_ns, a.mtime_ns, a.ctime_ns))
        pu.put_times(parent_times)
        self.fs._copied[up] = self.ino
        self.upper = up
        parent._keep(self.name, self)

    @staticmethod
    def _copy_bytes(lo: Node, up: Node) -> None:
        src = lo.open(os.O_RDONLY, None)           # type: ignore[arg-type]
        try:
            pages = up.data                          # type: ignore[attr-defined]
            off = 0
            while True:
                chunk = memoryview(src.pread(COPY_CHUNK, off))
                if not chunk:
                    break
                while chunk:                         # a short write means the space is full:
                    n = pages.write(off, chunk)      # the next one raises ENOSPC
                    off += n
                    chunk = chunk[n:]
        finally:
            src.release()

    # --- every node ---------------------------------------------------------------------
    def attr(self) -> Attr:
        a = self._top.attr()
        if self.upper is not None and self.lower is not None and S.S_ISDIR(a.mode):
            # A merged directory reports the lower's size and link count (overlayfs reports
            # the upper's): copied-up directories, such as the mount points under /, then
            # list exactly as on the host.  Guest-made changes still show in the times.
            low = self.lower.attr()
            a.size, a.nlink, a.blocks, a.blksize = low.size, low.nlink, low.blocks, low.blksize
        a.dev = self.fs.dev
        a.ino = self.ino
        return a

    def setattr(self, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, now: int | None = None) -> None:
        self.copy_up(data=size is None or size > 0)
        assert self.upper is not None
        self.upper.setattr(mode=mode, uid=uid, gid=gid, size=size, atime_ns=atime_ns,
                           mtime_ns=mtime_ns, now=now)

    def modified(self) -> None:
        if self.upper is not None:
            self.upper.modified()

    def readlink(self) -> str:
        return self._top.readlink()

    # --- extended attributes: the upper layer's (lower objects have none) ---------------
    def getxattr(self, name: bytes) -> bytes:
        check_handler(name)
        if self.upper is None:
            raise SyscallError(errno.ENODATA)
        return self.upper.getxattr(name)                 # type: ignore[attr-defined]

    def listxattr(self) -> list[bytes]:
        return self.upper.listxattr() if self.upper is not None else []   # type: ignore[attr-defined]

    def setxattr(self, name: bytes, value: bytes, flags: int) -> None:
        check_handler(name)
        if self.upper is None and flags & XATTR_REPLACE:
            raise SyscallError(errno.ENODATA)           # nothing to replace: no copy-up
        self.copy_up()
        self.upper.setxattr(name, value, flags)          # type: ignore[union-attr]

    def removexattr(self, name: bytes) -> None:
        check_handler(name)
        if self.upper is None:
            raise SyscallError(errno.ENODATA)           # as overlayfs: no copy-up to remove nothing
        self.upper.removexattr(name)                     # type: ignore[attr-defined]

    def open(self, flags: int, loc: "Location") -> "FileDescription":
        _, writable = access_of(flags)
        if self.is_dir():
            if opens_for_write(flags):
                raise SyscallError(errno.EISDIR)
            return DirFile(self, flags, loc, self.parent.ino if self.parent is not None else None)
        if (writable or flags & os.O_TRUNC) and S.S_ISREG(self._top.mode):
            self.copy_up(data=not flags & os.O_TRUNC)
        f = self._top.open(flags, loc)
        if hasattr(f, "node"):
            f.node = self                            # fstat shows the overlay's dev and ino
        return f

    # --- directories --------------------------------------------------------------------
    def lookup(self, name: str) -> Node:
        c = self._cached(name)
        if c is not None:
            return c
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        up = None
        if self.upper is not None:
            try:
                up = self.upper.lookup(name)
            except SyscallError as e:
                if e.errno != errno.ENOENT:
                    raise
        lo = None
        ld = self._lower_dir()
        if ld is not None and (up is None or up.is_dir()) and \
                (self.whiteouts is None or name not in self.whiteouts):
            try:
                lo = ld.lookup(name)
            except SyscallError as e:
                if e.errno != errno.ENOENT:
                    raise
            if up is not None and lo is not None and not lo.is_dir():
                lo = None
        if up is None and lo is None:
            raise SyscallError(errno.ENOENT)
        return self._keep(name, OvNode(self.fs, self, name, up, lo))

    def entries(self) -> list[tuple[str, int, int]]:
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        out: list[tuple[str, int, int]] = []
        seen: set[str] = set()
        if self.upper is not None:
            for name, ino, dt in self.upper.entries():
                seen.add(name)
                c = self._strong.get(name) if self._strong is not None else None
                out.append((name, c.ino if c is not None else UPPER_INO | ino, dt))
        ld = self._lower_dir()
        if ld is not None:
            hidden = self.whiteouts or ()
            for name, ino, dt in ld.entries():
                if name not in seen and name not in hidden:
                    out.append((name, ino, dt))
        return out

    def _check_absent(self, name: str) -> None:
        try:
            self.lookup(name)
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        raise SyscallError(errno.EEXIST)

    def _new(self, name: str, make) -> Node:
        """Create `name` in the upper layer with make(upper_dir) and cache its OvNode."""
        self._check_absent(name)
        self.copy_up()
        up = make(self.upper)
        return self._keep(name, OvNode(self.fs, self, name, up, None))

    def create(self, name: str, mode: int, uid: int, gid: int) -> Node:
        return self._new(name, lambda u: u.create(name, mode, uid, gid))

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        return self._new(name, lambda u: u.mkdir(name, mode, uid, gid))

    def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        return self._new(name, lambda u: u.mknod(name, mode, rdev, uid, gid))

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        return self._new(name, lambda u: u.symlink(name, target, uid, gid))

    def tmpfile(self, mode: int, uid: int, gid: int, *, linkable: bool) -> Node:
        """O_TMPFILE: an unnamed file made in this directory's upper part (copied up first)."""
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        self.copy_up()
        assert self.upper is not None
        up = self.upper.tmpfile(mode, uid, gid, linkable=linkable)   # type: ignore[attr-defined]
        return OvNode(self.fs, self, "", up, None)                 # in no directory's cache

    def link(self, name: str, target: Node) -> None:
        if not isinstance(target, OvNode) or target.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        if target.is_dir():
            raise SyscallError(errno.EPERM)
        self._check_absent(name)
        target.copy_up()
        up = target.upper

        def make(u: Node) -> Node:
            u.link(name, up)                         # type: ignore[arg-type]
            return up                                # type: ignore[return-value]
        self._new(name, make)

    def opaque_dir(self, name: str, mode: int, uid: int = 0, gid: int = 0) -> Node:
        """An empty directory `name` hiding whatever the lower layer has there (mount points
        such as /proc, /sys and /dev, whose host contents must never show); EEXIST if the
        upper layer already has the name."""
        self.copy_up()
        assert self.upper is not None
        try:
            self.upper.lookup(name)
            raise SyscallError(errno.EEXIST)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
        self._forget(name)
        self._whiteout(name)
        assert isinstance(self.upper, TmpDir)
        before = self.upper.times()
        up = self.upper.mkdir(name, mode, uid, gid)
        # Setting up the sandbox is not a change the guest made: keep the parent's times.
        self.upper.put_times(before)
        return self._keep(name, OvNode(self.fs, self, name, up, None))

    def unlink(self, name: str) -> None:
        c = self.lookup(name)
        if c.is_dir():
            raise SyscallError(errno.EISDIR)
        self._remove(name, c, lambda u: u.unlink(name))

    def rmdir(self, name: str) -> None:
        c = self.lookup(name)
        if not c.is_dir():
            raise SyscallError(errno.ENOTDIR)
        if c.entries():
            raise SyscallError(errno.ENOTEMPTY)
        self._remove(name, c, lambda u: u.rmdir(name))

    def _remove(self, name: str, c: Node, remove) -> None:
        self.copy_up()
        assert isinstance(c, OvNode)
        if c.upper is not None:
            remove(self.upper)                       # stamps the directory
        elif self.upper is not None:
            self.upper.modified()                    # only a whiteout: the name still went
        if self._lower_has(name):
            self._whiteout(name)
        self._forget(name)

    def rename(self, old: str, newdir: Node, new: str, flags: int = 0) -> None:
        if not isinstance(newdir, OvNode) or newdir.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or \
                (flags & RENAME_NOREPLACE and flags & RENAME_EXCHANGE):
            raise SyscallError(errno.EINVAL)
        src = self.lookup(old)
        assert isinstance(src, OvNode)
        try:
            dst: OvNode | None = newdir.lookup(new)          # type: ignore[assignment]
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
            dst = None
        exchange = bool(flags & RENAME_EXCHANGE)
        if exchange and dst is None:
            raise SyscallError(errno.ENOENT)
        if dst is src or (dst is not None and src.upper is not None and dst.upper is src.upper):
            return
        if dst is not None and flags & RENAME_NOREPLACE:
            raise SyscallError(errno.EEXIST)
        for n in (src, dst if exchange else None):
            if n is not None and n.is_dir() and n.lower is not None:
                raise SyscallError(errno.EXDEV)          # no redirect_dir: mv copies instead
        if not exchange and dst is not None:
            if src.is_dir():
                if not dst.is_dir():
                    raise SyscallError(errno.ENOTDIR)
                if dst.entries():
                    raise SyscallError(errno.ENOTEMPTY)
            elif dst.is_dir():
                raise SyscallError(errno.EISDIR)
        self.copy_up()
        newdir.copy_up()
        src.copy_up()
        if exchange:
            assert dst is not None
            dst.copy_up()
        assert self.upper is not None and newdir.upper is not None
        self.upper.rename(old, newdir.upper, new, flags & RENAME_EXCHANGE)
        self._forget(old)
        newdir._forget(new)
        if exchange:
            assert dst is not None
            dst.parent, dst.name = self, old
            self._keep(old, dst)
        # Whiteouts hide the lower names at both ends: the old name is gone (or holds the
        # exchanged object), and a directory moved over a lower one must not merge with it.
        if self._lower_has(old):
            self._whiteout(old)
        if newdir._lower_has(new):
            newdir._whiteout(new)
        src.parent, src.name = newdir, new
        newdir._keep(new, src)
