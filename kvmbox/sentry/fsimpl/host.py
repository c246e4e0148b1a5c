"""Host directory passthrough: a host directory tree as a Sentry file system.

Every host access is relative to the mount root's O_PATH directory fd and goes
through hostcalls.open_beneath (openat2 with RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): the Sentry resolves symlinks
itself, on its own mount table, so a symlink the host kernel meets on the way
is a race or an attack and fails with ELOOP; nothing reaches outside the
directory.  Names are then used only as single components relative to such an
fd (fstatat/unlinkat/mkdirat ... with AT_SYMLINK_NOFOLLOW where it applies).
Nodes are cached by relative path, so a name keeps its Node; inode numbers are
the host's (files of other host devices below the root get numbers of their
own, stable for the file system's life).  Open files hold a private host fd,
never handed to the guest (open files and mappings: fsimpl/hostfile.py).

Host mounts are nosuid,nodev (the rules: fsimpl/hostpolicy.py): set-id bits never
reach a host file from the guest, device nodes cannot be made or opened, files
the guest creates belong to the user who ran kvmbox, and a chown to another owner
is EPERM unless the mount allows it (--mount HOST:GUEST:rw,chown).
/proc/self/mountinfo shows such a mount as gVisor shows a gofer mount (fstype 9p,
source "none"), never the host path.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat as S
import weakref
from collections import OrderedDict

from kvmbox.abi.fcntl import O_PATH
from kvmbox.errors import KvmboxError, SyscallError
from kvmbox.mm.vma import Backing
from kvmbox.sentry.fsimpl import hostcalls
from kvmbox.sentry.fsimpl.hostpolicy import HostOwner, drop_setid, is_setid, nosuid_mode
from kvmbox.sentry.vfs.node import (DT_DIR, DT_LNK, DT_REG, DT_UNKNOWN, RENAME_EXCHANGE,
                                    RENAME_NOREPLACE, ST_NODEV, ST_NOSUID, ST_RDONLY, Attr,
                                    Filesystem, Node, StatFs, dtype_of)
from kvmbox.sentry.fsimpl.hostfile import HostData, HostFile, HostMapSource
from kvmbox.sentry.vfs.regular import DirFile, access_of

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.vfs.path import Location

V9FS_MAGIC = 0x01021997        # what gVisor reports for host-backed (gofer) mounts
FOREIGN_INO = 1 << 61          # inode numbers given to files of other host devices


_err = hostcalls.guest_error


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise SyscallError(errno.ENOENT)


RECENT_NODES = 8192          # nodes of a read-only host tree kept alive between lookups
PAGE_CACHE_PAGES = 16384     # at most 64 MiB of read-only file pages shared between mappings

class HostFilesystem(Filesystem):
    """The host directory `host_root`, read-only unless `readonly=False`; `allow_chown` lets
    the guest give its files to other owners (as far as the Sentry itself may)."""

    fstype = "9p"              # what gVisor shows for a gofer mount
    mount_flags = "nosuid,nodev"

    @property
    def stable_names(self) -> bool:  # type: ignore[override]
        """A writable host tree can change behind the Sentry's back (other host processes);
        a read-only one is treated as a snapshot, as its cached lookups already do."""
        return self.readonly

    def __init__(self, dev: int, host_root: str, *, readonly: bool = True,
                 allow_chown: bool = False) -> None:
        super().__init__(dev)
        try:
            fd = os.open(host_root, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise KvmboxError(f"kvmbox: {host_root}: {e.strerror}") from None
        self.root_fd = fd
        self.host_root = host_root
        self.readonly = readonly
        self.owner = HostOwner(allow_chown)      # whose files these are (hostpolicy.py)
        st = os.fstat(fd)
        self.host_dev = st.st_dev
        self._foreign: dict[tuple[int, int], int] = {}
        self._nodes: "weakref.WeakValueDictionary[str, HostNode]" = weakref.WeakValueDictionary()
        self._page_cache: dict[tuple[int, int, int, int], Backing] = {}
        # One host descriptor per mapped file (and access), shared by all its mappings.
        self._map_sources: "weakref.WeakValueDictionary[tuple[int, int, bool], HostMapSource]" = \
            weakref.WeakValueDictionary()
        # Read-only trees also keep the most recently used nodes alive (their remembered
        # stat results and lookups with them), so the next run of a program finds them.
        self._recent: "OrderedDict[str, HostNode]" = OrderedDict()
        self.root = HostNode(self, self.ino_of(st.st_dev, st.st_ino), "", st.st_mode)

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def ino_of(self, dev: int, ino: int) -> int:
        """The inode number the sandbox sees for host (dev, ino)."""
        if dev == self.host_dev:
            return ino
        key = (dev, ino)
        mapped = self._foreign.get(key)
        if mapped is None:
            mapped = self._foreign[key] = FOREIGN_INO | len(self._foreign)
        return mapped

    def open_rel(self, relpath: str, flags: int, mode: int = 0) -> int:
        """A host fd for `relpath` beneath the root; no symlink is followed on the way."""
        try:
            return hostcalls.open_beneath(self.root_fd, relpath, flags, mode)
        except OSError as e:
            raise _err(e) from None

    def page_cache(self, node: "HostNode") -> "Backing | None":
        """The shared page cache of a file of a read-only tree (see MapSource.private_cache);
        None on read-write trees or once PAGE_CACHE_PAGES frames are cached."""
        if not self.readonly or node.kind != S.S_IFREG:
            return None
        st = node._stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        b = self._page_cache.get(key)
        if b is None:
            if sum(c.pages for c in self._page_cache.values()) >= PAGE_CACHE_PAGES:
                return None
            b = self._page_cache[key] = Backing(shared=True, pinned=True)
        return b

    def map_source(self, data: "HostData") -> "HostMapSource":
        """The MapSource every mapping of the host file open as `data` shares: one host
        descriptor per file (and per need to write back), however many mappings there are;
        it closes when the last mapping lets it go."""
        try:
            st = os.fstat(data.fd)
            writable = fcntl.fcntl(data.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        except OSError as e:
            raise _err(e) from None
        for key in ((st.st_dev, st.st_ino, True), (st.st_dev, st.st_ino, writable)):
            found = self._map_sources.get(key)
            if found is not None:
                return found
        src = self._map_sources[(st.st_dev, st.st_ino, writable)] = HostMapSource(data)
        return src

    def cached_frames(self) -> list[tuple[int, int]]:
        """(phys, npages) of every page-cache frame, for whoever frees them at close."""
        return [(phys, n) for b in self._page_cache.values() for _, phys, n in b.extents]

    def node_for(self, relpath: str, st: os.stat_result) -> "HostNode":
        """The cached node of `relpath` if it is still the same host object, else a new one."""
        ino = self.ino_of(st.st_dev, st.st_ino)
        node = self._nodes.get(relpath)
        if node is None or node.ino != ino or S.S_IFMT(node.kind) != S.S_IFMT(st.st_mode):
            node = HostNode(self, ino, relpath, st.st_mode)
            self._nodes[relpath] = node
        if self.readonly:
            if node._st is None:
                node._st = st
            recent = self._recent
            recent[relpath] = node
            recent.move_to_end(relpath)
            if len(recent) > RECENT_NODES:
                recent.popitem(last=False)
        return node

    def moved(self, old: str, new: str) -> None:
        """A rename: cached nodes at and below `old` now live at `new`."""
        prefix = old + "/"
        for rel in [r for r in list(self._nodes.keys()) if r == old or r.startswith(prefix)]:
            node = self._nodes.pop(rel, None)
            if node is not None:
                node.relpath = new + rel[len(old):]
                self._nodes[node.relpath] = node

    def forget(self, relpath: str) -> None:
        self._nodes.pop(relpath, None)

    def statfs(self) -> StatFs:
        flags = ST_NOSUID | ST_NODEV | (ST_RDONLY if self.readonly else 0)
        try:
            v = os.statvfs(self.root_fd)
        except OSError:
            return StatFs(f_type=V9FS_MAGIC, flags=flags)
        return StatFs(f_type=V9FS_MAGIC, bsize=v.f_bsize, blocks=v.f_blocks, bfree=v.f_bfree,
                      bavail=v.f_bavail, files=v.f_files, ffree=v.f_ffree, namelen=v.f_namemax,
                      frsize=v.f_frsize, flags=flags)

    def super_options(self) -> str:
        """gVisor's gofer options, minus its descriptor numbers; a read-only tree is cached
        as a snapshot (fscache), a writable one asked each time (remote_revalidating)."""
        cache = "fscache" if self.readonly else "remote_revalidating"
        return f"trans=fd,aname=/,cache={cache}"


class HostNode(Node):
    """One host object, named by its path relative to the file system root ("" for the root)."""

    __slots__ = ("relpath", "kind", "_st", "_kids")

    fs: HostFilesystem

    def __init__(self, fs: HostFilesystem, ino: int, relpath: str, mode: int) -> None:
        super().__init__(fs, ino)
        self.relpath = relpath
        self.kind = S.S_IFMT(mode)          # the type never changes; permissions may
        # A read-only host tree (the overlay's lower layer) is taken as a snapshot: stat
        # results and lookups, including misses, are remembered, as the overlay already
        # assumes the lower does not change under it.  Start-up of programs that probe
        # hundreds of paths (python3) depends on it.  Read-write mounts ask the host each time.
        self._st: os.stat_result | None = None
        self._kids: dict[str, os.stat_result | None] | None = None

    def is_dir(self) -> bool:
        return self.kind == S.S_IFDIR

    def is_symlink(self) -> bool:
        return self.kind == S.S_IFLNK

    def _child_rel(self, name: str) -> str:
        return f"{self.relpath}/{name}" if self.relpath else name

    def _dirfd(self) -> int:
        return self.fs.open_rel(self.relpath, O_PATH | os.O_DIRECTORY)

    def _parent_fd_name(self) -> tuple[int, str]:
        """(an O_PATH fd of the parent directory, this node's name); "." for the root."""
        if not self.relpath:
            try:
                return os.dup(self.fs.root_fd), "."
            except OSError as e:             # EMFILE: the Sentry's own descriptors ran out
                raise _err(e) from None
        head, _, name = self.relpath.rpartition("/")
        return self.fs.open_rel(head, O_PATH | os.O_DIRECTORY), name

    def _check_rw(self) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS)

    # --- every node -------------------------------------------------------------------
    def _stat(self) -> os.stat_result:
        if self._st is not None:
            return self._st
        try:
            if not self.relpath:
                st = os.fstat(self.fs.root_fd)
            else:
                fd = self.fs.open_rel(self.relpath, O_PATH | os.O_NOFOLLOW)
                try:
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
        except OSError as e:
            raise _err(e) from None
        if self.fs.readonly:
            self._st = st
        return st

    def attr(self) -> Attr:
        return self.attr_of(self._stat())

    def attr_of(self, st: os.stat_result) -> Attr:
        """The guest's view of a host stat result of this node."""
        return Attr(dev=self.fs.dev, ino=self.fs.ino_of(st.st_dev, st.st_ino), mode=st.st_mode,
                    nlink=st.st_nlink, uid=st.st_uid, gid=st.st_gid, size=st.st_size,
                    rdev=st.st_rdev, blksize=st.st_blksize, blocks=st.st_blocks,
                    atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)

    @property
    def mode(self) -> int:
        return self._stat().st_mode

    def readlink(self) -> str:
        if self.kind != S.S_IFLNK:
            raise SyscallError(errno.EINVAL)
        pfd, name = self._parent_fd_name()
        try:
            return os.readlink(name, dir_fd=pfd)
        except OSError as e:
            raise _err(e) from None
        finally:
            os.close(pfd)

    def open(self, flags: int, loc: "Location") -> "FileDescription":
        readable, writable = access_of(flags)
        if self.kind == S.S_IFDIR:
            if writable:
                raise SyscallError(errno.EISDIR)
            return DirFile(self, flags, loc)
        if self.kind == S.S_IFLNK:
            raise SyscallError(errno.ELOOP)
        if self.kind in (S.S_IFCHR, S.S_IFBLK):
            raise SyscallError(errno.EACCES)       # host device nodes: as a nodev mount
        if self.kind != S.S_IFREG:
            raise SyscallError(errno.ENXIO)        # host FIFOs and sockets are not reachable
        if self.fs.readonly and (writable or flags & os.O_TRUNC):
            raise SyscallError(errno.EROFS)
        hflags = (flags & 3) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | (flags & os.O_TRUNC)
        fd = self.fs.open_rel(self.relpath, hflags)
        try:
            st = os.fstat(fd)
            if not S.S_ISREG(st.st_mode):         # swapped on the host since the lookup
                raise SyscallError(errno.ENXIO)
            if (writable or flags & os.O_TRUNC) and is_setid(st.st_mode):
                drop_setid(fd, st.st_mode)       # the guest may change what it runs
        except OSError as e:
            os.close(fd)
            raise _err(e) from None
        except BaseException:
            os.close(fd)
            raise
        return HostFile(self, HostData(fd, self), flags, loc)

    def setattr(self, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, now: int | None = None) -> None:
        self._check_rw()
        try:
            if uid is not None or gid is not None:
                self.fs.owner.check_chown(self._stat(), uid, gid)
            if size is not None:
                if self.kind != S.S_IFREG:
                    raise SyscallError(errno.EISDIR if self.kind == S.S_IFDIR else errno.EINVAL)
                fd = self.fs.open_rel(self.relpath, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                try:
                    st = os.fstat(fd)
                    if not S.S_ISREG(st.st_mode):
                        raise SyscallError(errno.EINVAL)
                    if is_setid(st.st_mode):
                        drop_setid(fd, st.st_mode)
                    os.ftruncate(fd, size)
                finally:
                    os.close(fd)
            if mode is not None:
                self._chmod(nosuid_mode(mode, self.kind))
            if uid is not None or gid is not None or atime_ns is not None or mtime_ns is not None:
                pfd, name = self._parent_fd_name()
                try:
                    if uid is not None or gid is not None:
                        os.chown(name, -1 if uid is None else uid, -1 if gid is None else gid,
                                 dir_fd=pfd, follow_symlinks=False)
                    if atime_ns is not None or mtime_ns is not None:
                        hostcalls.utimens_nofollow(pfd, name, _host_time(atime_ns, now),
                                                   _host_time(mtime_ns, now))
                finally:
                    os.close(pfd)
        except OSError as e:
            raise _err(e) from None

    def _chmod(self, mode: int) -> None:
        """chmod through /proc/self/fd of an O_PATH fd: the exact inode, no path re-walked."""
        if self.kind == S.S_IFLNK:
            raise SyscallError(errno.EOPNOTSUPP)
        fd = self.fs.open_rel(self.relpath, O_PATH | os.O_NOFOLLOW)
        try:
            os.chmod(f"/proc/self/fd/{fd}", mode & 0o7777)
        except OSError as e:
            raise _err(e) from None
        finally:
            os.close(fd)

    def modified(self) -> None:
        pass                                  # the host updates its own times

    # --- directories ----------------------------------------------------------------------
    def lookup(self, name: str) -> Node:
        if self.kind != S.S_IFDIR:
            raise SyscallError(errno.ENOTDIR)
        _check_name(name)
        kids = self._kids
        if kids is not None and name in kids:
            st = kids[name]
            if st is None:
                raise SyscallError(errno.ENOENT)
            return self.fs.node_for(self._child_rel(name), st)
        dfd = self._dirfd()
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError as e:
            if self.fs.readonly and e.errno == errno.ENOENT:
                self._remember(name, None)
            raise _err(e) from None
        finally:
            os.close(dfd)
        if self.fs.readonly:
            self._remember(name, st)
        return self.fs.node_for(self._child_rel(name), st)

    def _remember(self, name: str, st: os.stat_result | None) -> None:
        if self._kids is None:
            self._kids = {}
        if len(self._kids) < 4096:          # bounded: huge directories are asked each time
            self._kids[name] = st

    def entries(self) -> list[tuple[str, int, int]]:
        if self.kind != S.S_IFDIR:
            raise SyscallError(errno.ENOTDIR)
        dfd = self.fs.open_rel(self.relpath, os.O_RDONLY | os.O_DIRECTORY)
        out: list[tuple[str, int, int]] = []
        try:
            dev = os.fstat(dfd).st_dev
            with os.scandir(dfd) as it:
                for e in it:
                    out.append((e.name, self.fs.ino_of(dev, e.inode()), _dtype(e)))
        except OSError as e:
            raise _err(e) from None
        finally:
            os.close(dfd)
        return out

    def _in_dir(self, name: str, fn) -> None:
        """Run the host call fn(dirfd, name) on child `name` of this (writable) directory."""
        self._check_rw()
        _check_name(name)
        dfd = self._dirfd()
        try:
            fn(dfd, name)
        except OSError as e:
            raise _err(e) from None
        finally:
            os.close(dfd)

    def _make(self, name: str, fn) -> Node:
        """Run fn(dirfd, name) to create `name` here, then look the new object up."""
        self._in_dir(name, fn)
        return self.lookup(name)

    # New objects belong to the user who ran kvmbox (the Sentry's own ids: `uid` and `gid`,
    # the guest's, are not given to host files) and get their mode at birth; a chmod follows
    # only when the host's umask took bits off (then ctime lags the birth by a moment).
    def create(self, name: str, mode: int, uid: int, gid: int) -> Node:
        want = nosuid_mode(mode, S.S_IFREG)

        def mk(dfd: int, n: str) -> None:
            fd = os.open(n, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, want, dir_fd=dfd)
            try:
                if S.S_IMODE(os.fstat(fd).st_mode) != want:
                    os.fchmod(fd, want)            # the Sentry's own umask must not apply
            finally:
                os.close(fd)
        return self._make(name, mk)

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        return self._made(self._make(name, lambda dfd, n: os.mkdir(n, mode & 0o1777, dir_fd=dfd)),
                          nosuid_mode(mode, S.S_IFDIR))

    def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        kind = S.S_IFMT(mode) or S.S_IFREG
        if kind == S.S_IFREG:
            return self.create(name, mode, uid, gid)
        if kind not in (S.S_IFIFO, S.S_IFSOCK):
            raise SyscallError(errno.EPERM)        # nodev: no device nodes on the host
        want = nosuid_mode(mode, kind)
        return self._made(self._make(name, lambda dfd, n: os.mknod(n, kind | want, 0, dir_fd=dfd)),
                          want)

    @staticmethod
    def _made(node: "HostNode", want: int) -> "HostNode":
        """`node`, just made, with exactly the permission bits `want`."""
        if S.S_IMODE(node.attr().mode) != want:
            node._chmod(want)
        return node

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        if "\0" in target:
            raise SyscallError(errno.EINVAL)
        return self._make(name, lambda dfd, n: os.symlink(target, n, dir_fd=dfd))

    def link(self, name: str, target: Node) -> None:
        if not isinstance(target, HostNode) or target.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        if target.kind == S.S_IFDIR:
            raise SyscallError(errno.EPERM)
        tfd, tname = target._parent_fd_name()
        try:
            self._make(name, lambda dfd, n: os.link(tname, n, src_dir_fd=tfd, dst_dir_fd=dfd,
                                                    follow_symlinks=False))
        finally:
            os.close(tfd)

    def unlink(self, name: str) -> None:
        self._remove(name, lambda dfd, n: os.unlink(n, dir_fd=dfd))

    def rmdir(self, name: str) -> None:
        self._remove(name, lambda dfd, n: os.rmdir(n, dir_fd=dfd))

    def _remove(self, name: str, fn) -> None:
        self._in_dir(name, fn)
        self.fs.forget(self._child_rel(name))

    def rename(self, old: str, newdir: Node, new: str, flags: int = 0) -> None:
        if not isinstance(newdir, HostNode) or newdir.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE):
            raise SyscallError(errno.EINVAL)
        self._check_rw()
        _check_name(old)
        _check_name(new)
        ofd = self._dirfd()
        try:
            nfd = newdir._dirfd()
            try:
                if flags:
                    hostcalls.renameat2(ofd, old, nfd, new, flags)
                else:
                    os.rename(old, new, src_dir_fd=ofd, dst_dir_fd=nfd)
            finally:
                os.close(nfd)
        except OSError as e:
            raise _err(e) from None
        finally:
            os.close(ofd)
        src, dst = self._child_rel(old), newdir._child_rel(new)
        if src == dst:
            return
        if flags & RENAME_EXCHANGE:
            tmp = "\0swap"
            self.fs.moved(src, tmp)
            self.fs.moved(dst, src)
            self.fs.moved(tmp, dst)
        else:
            self.fs.forget(dst)
            self.fs.moved(src, dst)


def _host_time(t: int | None, now: int | None):
    """A time for utimens_nofollow: the caller's "now" becomes the host's own (UTIME_NOW)."""
    return hostcalls.NOW if t is not None and t == now else t


def _dtype(e: os.DirEntry) -> int:
    try:
        if e.is_symlink():
            return DT_LNK
        if e.is_dir(follow_symlinks=False):
            return DT_DIR
        if e.is_file(follow_symlinks=False):
            return DT_REG
        return dtype_of(e.stat(follow_symlinks=False).st_mode)
    except OSError:
        return DT_UNKNOWN
