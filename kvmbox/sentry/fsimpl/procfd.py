"""What /proc/<pid>/fd/N leads to when the open file has no path: pipes, the standard
streams, eventfds, sockets.

Linux's magic link jumps to the open file's own path (f_path), which for a pipe
is an inode of the internal pipefs mount; opening it opens that inode again
(another end of the same pipe), and anonymous inodes and sockets refuse (ENXIO).
Here the walk continues at an OpenFileNode wrapping the FileDescription, on a
mount of its own that no path names: stat follows to the file's attr(), and
open(2) asks the file for a new open file description (FileDescription.reopen).
The node is never a directory to a path walk, even for a stream that is a host
directory (ENOTDIR for "fd/0/name" and "fd/0/.."), has no attributes to change,
and its mount has an empty root: nothing else can be reached through it.
"""
from __future__ import annotations

import errno
import stat as S

from kvmbox.errors import SyscallError
from kvmbox.sentry.files import ANON_INODE_DEV, FileDescription
from kvmbox.sentry.vfs.node import Attr, Filesystem, Node
from kvmbox.sentry.vfs.path import Location, Mount


class OpenFilesFs(Filesystem):
    """The file system of OpenFileNodes (as Linux's pipefs/anon_inodefs, never mounted)."""

    fstype = "anon_inodefs"
    stable_names = False

    def __init__(self) -> None:
        super().__init__(ANON_INODE_DEV)
        self.root = _EmptyRoot(self, 1)
        self.mount = Mount(self, "/", source="none")

    def location(self, f: FileDescription, path: str) -> Location:
        """Where a walk through the magic link of `f` continues; `path` is its readlink text."""
        return Location(self.mount, OpenFileNode(self, f), path)


class OpenFileNode(Node):
    """An open file with no path, as a node: stat and open(2) go to the file."""

    __slots__ = ("file",)

    def __init__(self, fs: OpenFilesFs, f: FileDescription) -> None:
        super().__init__(fs, 0)
        self.file = f

    def attr(self) -> Attr:
        return self.file.attr()

    @property
    def mode(self) -> int:
        return self.file.mode

    def is_dir(self) -> bool:
        return False              # a walk never goes below or above an open file

    def open(self, flags: int, loc: Location) -> FileDescription:
        if self.file.fd_refs <= 0:             # closed while the walk ran
            raise SyscallError(errno.ENOENT)
        return self.file.reopen(flags)


class _EmptyRoot(Node):
    """The root of OpenFilesFs: an empty directory no path leads to."""

    def attr(self) -> Attr:
        return Attr(dev=self.fs.dev, ino=self.ino, mode=S.S_IFDIR | 0o500, nlink=2, uid=0, gid=0,
                    size=0)

    def lookup(self, name: str) -> Node:
        raise SyscallError(errno.ENOENT)

    def entries(self) -> list[tuple[str, int, int]]:
        return []
