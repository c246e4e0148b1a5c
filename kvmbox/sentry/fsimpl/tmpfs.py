"""tmpfs: an in-memory file system (directories, regular files in PageData, symlinks, FIFOs).

It is /tmp and /dev/shm, and the writable upper layer of the root overlay.
Regular files keep their bytes in MemoryFile frames (vfs/pagecache.py), so
MAP_SHARED of a tmpfs file shares the file's own frames.  Hard links count in
nlink; an unlinked file lives on while open or mapped; O_TMPFILE makes one with
no name (TmpDir.tmpfile) that linkat may name later.  Every object keeps
extended attributes in memory (vfs/xattr.py).  Inode numbers are allocated per
file system and never reused.

Space: every inode, every extra hard link and every extended attribute is charged
to the FsSpace the Kernel's in-memory file systems share (vfs/space.py), and file
pages and long symlink targets to its blocks; ENOSPC past either limit, as a
tmpfs mounted with size= and nr_inodes=.  A regular file's inode goes back with
its data (the last name and the last open file); other objects' with their last
name.
"""
from __future__ import annotations

import errno
import os
import stat as S
import time

from kvmbox.abi.fcntl import O_TRUNC
from kvmbox.errors import SyscallError
from kvmbox.sentry.vfs.node import (RENAME_EXCHANGE, RENAME_NOREPLACE, Attr, Filesystem, Node,
                                    StatFs, dtype_of)
from kvmbox.sentry.vfs.pagecache import PageData
from kvmbox.sentry.vfs.regular import DirFile, RegularFile, opens_for_write
from kvmbox.sentry.vfs.space import BOGO_INODE_SIZE, SHORT_SYMLINK_LEN, FsSpace
from kvmbox.sentry.vfs.xattr import InMemoryXattrs

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.frames import FrameAllocator
    from kvmbox.mm.memfile import MemoryFile
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.vfs.path import Location

TMPFS_MAGIC = 0x01021994
BOGO_DIRENT_SIZE = 20          # what a tmpfs directory's st_size counts per entry


class Tmpfs(Filesystem):
    """One tmpfs instance; its regular files' frames come from `frames` of `memfile`, and
    everything it holds is charged to `space` (shared with the Kernel's other in-memory
    file systems; by default a space of its own as large as the frame pool)."""

    fstype = "tmpfs"

    def __init__(self, dev: int, memfile: "MemoryFile", frames: "FrameAllocator", *,
                 mode: int = 0o1777, uid: int = 0, gid: int = 0, readonly: bool = False,
                 space: FsSpace | None = None) -> None:
        super().__init__(dev)
        self.memfile = memfile
        self.frames = frames
        self.readonly = readonly
        self.space = space if space is not None else FsSpace.for_memory(None, frames)
        self.xattr_space = self.space          # attributes are charged to the inode space
        self._next_ino = 1
        root = TmpDir(self, S.S_IFDIR | (mode & 0o7777), uid, gid, None)
        root.parent = root
        self.root = root

    def new_ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def statfs(self) -> StatFs:
        return self.space.statfs(TMPFS_MAGIC)

    def super_options(self) -> str:
        return self.space.options()


class TmpNode(InMemoryXattrs, Node):
    """What every tmpfs object has: mode, owner, link count, times, extended attributes."""

    __slots__ = ("_mode", "uid", "gid", "nlink", "atime_ns", "mtime_ns", "ctime_ns", "btime_ns",
                 "xattrs")

    def __init__(self, fs: Tmpfs, mode: int, uid: int, gid: int) -> None:
        fs.space.take_inode()                  # ENOSPC before anything exists
        super().__init__(fs, fs.new_ino())
        self._mode = mode
        self.uid, self.gid = uid, gid
        self.nlink = 1
        self.xattrs = None
        now = time.time_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = self.btime_ns = now

    def xattr_changed(self) -> None:
        self.ctime_ns = time.time_ns()

    @property
    def mode(self) -> int:
        return self._mode

    def size(self) -> int:
        return 0

    def blocks(self) -> int:
        return 0

    def rdev(self) -> int:
        return 0

    def attr(self) -> Attr:
        return Attr(dev=self.fs.dev, ino=self.ino, mode=self._mode, nlink=self.nlink, uid=self.uid,
                    gid=self.gid, size=self.size(), rdev=self.rdev(), blocks=self.blocks(),
                    atime_ns=self.atime_ns, mtime_ns=self.mtime_ns, ctime_ns=self.ctime_ns,
                    btime_ns=self.btime_ns)

    def setattr(self, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, now: int | None = None) -> None:
        if now is None:
            now = time.time_ns()
        if size is not None:
            self.set_size(size, now)
        if mode is not None:
            self._mode = S.S_IFMT(self._mode) | (mode & 0o7777)
        if uid is not None:
            self.uid = uid
        if gid is not None:
            self.gid = gid
        if atime_ns is not None:
            self.atime_ns = atime_ns
        if mtime_ns is not None:
            self.mtime_ns = mtime_ns
        self.ctime_ns = now

    def set_size(self, size: int, now: int | None = None) -> None:
        raise SyscallError(errno.EISDIR if S.S_ISDIR(self._mode) else errno.EINVAL)

    def modified(self, now: int | None = None) -> None:
        self.mtime_ns = self.ctime_ns = time.time_ns() if now is None else now

    def times(self) -> tuple[int, int, int]:
        """(atime, mtime, ctime): what put_times() restores (the overlay's copy-up)."""
        return self.atime_ns, self.mtime_ns, self.ctime_ns

    def put_times(self, times: tuple[int, int, int]) -> None:
        """Set all three times as they were: no change a guest can see happened."""
        self.atime_ns, self.mtime_ns, self.ctime_ns = times

    def unlinked(self) -> None:
        """The last name went (nlink 0): drop what only the name kept alive (the inode)."""
        self.fs.space.give_inode()


class TmpFile(TmpNode):
    """A regular file; its bytes live in a PageData.

    An O_TMPFILE file (TmpDir.tmpfile) starts with no name (nlink 0): its PageData's
    creator hold passes to its first open description, so it goes with the last one
    unless linkat names it first.  `linkable` says it may still get a first name (not
    with O_EXCL; Linux's I_LINKABLE); once named, an nlink of 0 is final again.
    """

    __slots__ = ("data", "linkable", "unopened")

    def __init__(self, fs: Tmpfs, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, mode, uid, gid)
        # The data holds the inode's charge: it goes with the last name or open file.
        self.data = PageData(fs.memfile, fs.frames, fs.space, BOGO_INODE_SIZE)
        self.linkable = False
        self.unopened = False          # an O_TMPFILE file before its first open

    def size(self) -> int:
        return self.data.size

    def blocks(self) -> int:
        return self.data.blocks

    def set_size(self, size: int, now: int | None = None) -> None:
        self.data.truncate(size)
        self.modified(now)

    def open(self, flags: int, loc: "Location") -> "FileDescription":
        if flags & O_TRUNC:
            self.set_size(0)                   # stamps mtime and ctime even when already empty
        f = RegularFile(self, self.data, flags, loc)
        if self.unopened:
            self.unopened = False
            self.data.release()        # the creator's hold is now the open description's
        return f

    def named(self) -> None:
        """A link gave an O_TMPFILE file its first name: the name holds the data again."""
        self.linkable = False
        self.data.acquire()

    def unlinked(self) -> None:
        self.data.release()


class TmpSymlink(TmpNode):
    """A symlink: a short target is kept as it is, a longer one in a page of data (charged
    to the blocks, as Linux's shmem_symlink keeps it in a page-cache page)."""

    __slots__ = ("target", "data")

    def __init__(self, fs: Tmpfs, target: str, uid: int, gid: int) -> None:
        super().__init__(fs, S.S_IFLNK | 0o777, uid, gid)
        raw = os.fsencode(target)
        self.data: PageData | None = None
        self.target = target
        if len(raw) > SHORT_SYMLINK_LEN:
            data = PageData(fs.memfile, fs.frames, fs.space)
            try:
                if data.write(0, raw) != len(raw):
                    raise SyscallError(errno.ENOSPC)
            except BaseException:
                data.release()
                fs.space.give_inode()
                raise
            self.data, self.target = data, ""

    def size(self) -> int:
        return self.data.size if self.data is not None else len(os.fsencode(self.target))

    def readlink(self) -> str:
        if self.data is not None:
            return os.fsdecode(self.data.read(0, self.data.size))
        return self.target

    def unlinked(self) -> None:
        if self.data is not None:
            self.data.release()
            self.data = None
        super().unlinked()

    def open(self, flags: int, loc: "Location") -> "FileDescription":
        raise SyscallError(errno.ELOOP)


class TmpSpecial(TmpNode):
    """A FIFO or a socket node.  `pipe` is a slot for kvmbox.sentry.pipe to keep the FIFO's
    shared buffer in; opening a FIFO asks kvmbox.sentry.pipe.open_fifo(node, flags, loc)."""

    __slots__ = ("pipe",)

    def __init__(self, fs: Tmpfs, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, mode, uid, gid)
        self.pipe = None

    def open(self, flags: int, loc: "Location") -> "FileDescription":
        if not S.S_ISFIFO(self._mode):
            raise SyscallError(errno.ENXIO)
        try:
            from kvmbox.sentry.pipe import open_fifo   # type: ignore[attr-defined]
        except ImportError:
            raise SyscallError(errno.ENXIO) from None
        return open_fifo(self, flags, loc)


class TmpDir(TmpNode):
    """A directory: an ordered name -> node map and a parent link (for rename loop checks)."""

    __slots__ = ("children", "parent")

    def __init__(self, fs: Tmpfs, mode: int, uid: int, gid: int, parent: "TmpDir | None") -> None:
        super().__init__(fs, mode, uid, gid)
        self.nlink = 2
        self.children: dict[str, TmpNode] = {}
        self.parent = parent

    def size(self) -> int:
        return (len(self.children) + 2) * BOGO_DIRENT_SIZE

    def open(self, flags: int, loc: "Location") -> "FileDescription":
        if opens_for_write(flags):
            raise SyscallError(errno.EISDIR)
        return DirFile(self, flags, loc, self.parent.ino if self.parent is not None else None)

    # --- reading ----------------------------------------------------------------------
    def lookup(self, name: str) -> Node:
        try:
            return self.children[name]
        except KeyError:
            raise SyscallError(errno.ENOENT) from None

    def entries(self) -> list[tuple[str, int, int]]:
        return [(name, n.ino, dtype_of(n._mode)) for name, n in self.children.items()]

    # --- making -----------------------------------------------------------------------
    def _add(self, name: str, node: TmpNode) -> TmpNode:
        """Give `node` (made after _check_new passed) the name `name`."""
        self.children[name] = node
        self.modified()
        return node

    def create(self, name: str, mode: int, uid: int, gid: int) -> Node:
        self._check_new(name)
        return self._add(name, TmpFile(self.fs, S.S_IFREG | (mode & 0o7777), uid, gid))

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        self._check_new(name)
        d = self._add(name, TmpDir(self.fs, S.S_IFDIR | (mode & 0o7777), uid, gid, self))
        self.nlink += 1
        return d

    def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        self._check_new(name)
        kind = S.S_IFMT(mode) or S.S_IFREG
        if kind == S.S_IFREG:
            return self.create(name, mode, uid, gid)
        if kind not in (S.S_IFIFO, S.S_IFSOCK):
            raise SyscallError(errno.EPERM)
        return self._add(name, TmpSpecial(self.fs, kind | (mode & 0o7777), uid, gid))

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        self._check_new(name)
        return self._add(name, TmpSymlink(self.fs, target, uid, gid))

    def tmpfile(self, mode: int, uid: int, gid: int, *, linkable: bool) -> Node:
        """O_TMPFILE: a regular file with no name (nlink 0) that the caller opens at once;
        `linkable` False (O_EXCL) means linkat can never name it."""
        if self.fs.readonly:
            raise SyscallError(errno.EROFS)
        f = TmpFile(self.fs, S.S_IFREG | (mode & 0o7777), uid, gid)
        f.nlink = 0
        f.linkable = linkable
        f.unopened = True
        return f

    def link(self, name: str, target: Node) -> None:
        if target.fs is not self.fs or not isinstance(target, TmpNode):
            raise SyscallError(errno.EXDEV)
        if isinstance(target, TmpDir):
            raise SyscallError(errno.EPERM)
        self._check_new(name)
        first = isinstance(target, TmpFile) and target.linkable
        if target.nlink == 0 and not first:
            raise SyscallError(errno.ENOENT)     # an unlinked file cannot get a name again
        if not first:
            self.fs.space.take_inode()           # as tmpfs: every extra link costs an inode
        self._add(name, target)
        if first:
            target.named()                       # type: ignore[union-attr]
        target.nlink += 1
        target.ctime_ns = time.time_ns()

    def _check_new(self, name: str) -> None:
        """What must hold before a name is made here (and its inode charged)."""
        if self.fs.readonly:
            raise SyscallError(errno.EROFS)
        if name in self.children:
            raise SyscallError(errno.EEXIST)
        if self.nlink == 0:
            raise SyscallError(errno.ENOENT)       # a removed directory stays empty

    # --- removing ---------------------------------------------------------------------
    def _drop(self, node: TmpNode) -> None:
        """One name of `node` is gone."""
        if isinstance(node, TmpDir):
            node.nlink = 0
            self.nlink -= 1
            node.ctime_ns = time.time_ns()
            node.unlinked()
            return
        node.nlink -= 1
        node.ctime_ns = time.time_ns()
        if node.nlink == 0:
            node.unlinked()
        else:
            self.fs.space.give_inode()           # an extra link went

    def unlink(self, name: str) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS)
        node = self.lookup(name)
        if isinstance(node, TmpDir):
            raise SyscallError(errno.EISDIR)
        del self.children[name]
        self.modified()
        self._drop(node)

    def rmdir(self, name: str) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS)
        node = self.lookup(name)
        if not isinstance(node, TmpDir):
            raise SyscallError(errno.ENOTDIR)
        if node.children:
            raise SyscallError(errno.ENOTEMPTY)
        del self.children[name]
        self.modified()
        self._drop(node)

    # --- rename -----------------------------------------------------------------------
    def rename(self, old: str, newdir: Node, new: str, flags: int = 0) -> None:
        if not isinstance(newdir, TmpDir) or newdir.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or \
                (flags & RENAME_NOREPLACE and flags & RENAME_EXCHANGE):
            raise SyscallError(errno.EINVAL)
        if self.fs.readonly:
            raise SyscallError(errno.EROFS)
        src = self.lookup(old)
        dst = newdir.children.get(new)
        if flags & RENAME_EXCHANGE:
            if dst is None:
                raise SyscallError(errno.ENOENT)
            self._exchange(old, src, newdir, new, dst)
            return
        if dst is src:
            return                          # two names of one inode: rename does nothing
        if dst is not None and flags & RENAME_NOREPLACE:
            raise SyscallError(errno.EEXIST)
        if isinstance(src, TmpDir):
            if _within(newdir, src):
                raise SyscallError(errno.EINVAL)
            if dst is not None:
                if not isinstance(dst, TmpDir):
                    raise SyscallError(errno.ENOTDIR)
                if dst.children:
                    raise SyscallError(errno.ENOTEMPTY)
        elif isinstance(dst, TmpDir):
            raise SyscallError(errno.EISDIR)
        if dst is not None:
            del newdir.children[new]
            newdir._drop(dst)
        del self.children[old]
        newdir.children[new] = src
        if isinstance(src, TmpDir) and newdir is not self:
            src.parent = newdir
            self.nlink -= 1
            newdir.nlink += 1
        now = time.time_ns()
        src.ctime_ns = now
        self.mtime_ns = self.ctime_ns = newdir.mtime_ns = newdir.ctime_ns = now

    def _exchange(self, old: str, src: TmpNode, newdir: "TmpDir", new: str, dst: TmpNode) -> None:
        if src is dst:
            return
        if isinstance(src, TmpDir) and _within(newdir, src):
            raise SyscallError(errno.EINVAL)
        if isinstance(dst, TmpDir) and _within(self, dst):
            raise SyscallError(errno.EINVAL)
        self.children[old], newdir.children[new] = dst, src
        if newdir is not self:
            for node, frm, to in ((src, self, newdir), (dst, newdir, self)):
                if isinstance(node, TmpDir):
                    node.parent = to
                    frm.nlink -= 1
                    to.nlink += 1
        now = time.time_ns()
        src.ctime_ns = dst.ctime_ns = now
        self.mtime_ns = self.ctime_ns = newdir.mtime_ns = newdir.ctime_ns = now


def _within(d: TmpDir, ancestor: TmpDir) -> bool:
    """Whether directory `d` is `ancestor` or lies below it."""
    while True:
        if d is ancestor:
            return True
        if d.parent is None or d.parent is d:
            return False
        d = d.parent
