"""Mounts and path resolution: Location, Mount, MountTable, and a task's FsContext.

Every guest path is walked here, one component at a time, on the Sentry's own
mount table.  Symlinks are followed by the Sentry (at most 40 per walk, an
absolute target restarting at the task's root), `..` never climbs above the
root, and a walk that reaches a mount point continues at the mounted file
system's root.  The same walk applies openat2's RESOLVE_* restrictions when
given WalkRules.  File systems behind the table never see a path, only names.
"""
from __future__ import annotations

import errno
from collections.abc import Callable

from kvmbox.errors import SyscallError
from kvmbox.record import record
from kvmbox.sentry.vfs import perm
from kvmbox.sentry.vfs.node import NAME_MAX, PATH_MAX, Filesystem, Node

MAXSYMLINKS = 40
DIR_CACHE_SIZE = 4096          # directory prefixes remembered by a MountTable (then cleared)


@record(eq=False)
class Mount:
    """One file system mounted at the canonical guest path `path`."""
    fs: Filesystem
    path: str                   # mount point, canonical ("/" for the root)
    readonly: bool = False      # the mount's own flag (EROFS for writes through it)
    source: str = "none"        # for /proc/mounts ("none", "tmpfs" ...; never a host path)
    parent: "Mount | None" = None
    point: Node | None = None   # the directory this mount covers (in `parent`)


@record(frozen=True, slots=True)
class Location:
    """A node as reached through the mount table: which mount, which node, at which path."""
    mount: Mount
    node: Node
    path: str                   # canonical absolute guest path: no symlinks, no . or ..


@record(frozen=True, slots=True)
class WalkRules:
    """Restrictions on one walk: openat2's RESOLVE_* flags (the defaults restrict nothing).

    `beneath` and `in_root` make the starting directory the walk's root.  With
    `in_root`, "/", absolute symlinks and ".." stop there as at a chroot; with
    `beneath`, leaving it (an absolute path or symlink, ".." above it) is EXDEV.
    Both refuse procfs magic links (EXDEV).  `no_xdev`: EXDEV for crossing a mount
    either way (a walk may still start at an absolute path's root); `no_symlinks`
    and `no_magiclinks`: ELOOP for following one.
    """
    beneath: bool = False
    in_root: bool = False
    no_xdev: bool = False
    no_symlinks: bool = False
    no_magiclinks: bool = False


NO_RULES = WalkRules()


@record
class FsContext:
    """A task's view of the file system: its root (chroot), working directory and umask."""
    root: Location
    cwd: Location
    umask: int = 0o022

    def copy(self) -> "FsContext":
        """fork without CLONE_FS: an independent copy."""
        return FsContext(self.root, self.cwd, self.umask)


def join(parent: str, name: str) -> str:
    """The canonical path of `name` inside the canonical directory path `parent`."""
    return parent + name if parent == "/" else parent + "/" + name


class MountTable:
    """The mounts of one Kernel, and resolution over them."""

    def __init__(self, root_fs: Filesystem, *, readonly: bool = False, source: str = "none") -> None:
        self._root_mount = Mount(root_fs, "/", readonly, source)
        self._mounts: list[Mount] = [self._root_mount]
        self._by_path: dict[str, Mount] = {}     # mount point -> the topmost mount there
        # Walked directory prefixes -> (root node, start node, Location, symlinks followed):
        # a deep path's walk repeats only its last component.  Cleared by names_changed().
        self._dirs: dict[tuple, tuple] = {}

    # --- the table ------------------------------------------------------------------
    def root(self) -> Location:
        m = self._root_mount
        return Location(m, m.fs.root, "/")

    def mounts(self) -> list[Mount]:
        """Every mount, in mount order (the root first)."""
        return list(self._mounts)

    def mount(self, path: str, fs: Filesystem, *, readonly: bool = False,
              source: str = "none") -> Mount:
        """Mount `fs` on the existing directory `path` (absolute); stacks over an earlier mount."""
        root = self.root()
        loc = self.resolve(root, path, root=root)
        if not loc.node.is_dir():
            raise SyscallError(errno.ENOTDIR)
        m = Mount(fs, loc.path, readonly, source, loc.mount, loc.node)
        self._mounts.append(m)
        self._by_path[loc.path] = m
        self.names_changed()
        return m

    def is_mount_point(self, loc: Location) -> bool:
        """Whether `loc` is the root of a mount (EBUSY for rmdir/rename of it)."""
        return loc.node is loc.mount.fs.root

    # --- single steps -----------------------------------------------------------------
    def child(self, parent: Location, name: str, node: Node) -> Location:
        """The Location of `node`, found as `name` in directory `parent`, crossing mounts."""
        path = join(parent.path, name)
        m = self._by_path.get(path) if self._by_path else None
        if m is not None and m.point is node:
            return Location(m, m.fs.root, path)
        return Location(parent.mount, node, path)

    def parent_of(self, loc: Location, root: Location | None = None) -> Location:
        """`..` of a directory Location; never above `root` (default: the table's root)."""
        if root is None:
            root = self.root()
        while True:
            if loc.path == root.path and loc.node is root.node:
                return loc
            m = loc.mount
            if loc.node is m.fs.root and m.parent is not None and m.point is not None:
                loc = Location(m.parent, m.point, m.path)     # to the covered mount point
                continue
            break
        if loc.node is loc.mount.fs.root:
            return loc                    # the table's root file system root
        ppath = loc.path.rsplit("/", 1)[0] or "/"
        return self._walk_within(loc.mount, ppath)

    def _walk_within(self, m: Mount, path: str) -> Location:
        """The Location of canonical `path` inside mount `m` (no symlinks, no mounts)."""
        node = m.fs.root
        rel = path[len(m.path):] if m.path != "/" else path
        for name in rel.split("/"):
            if name:
                node = node.lookup(name)
        return Location(m, node, path)

    # --- walks ------------------------------------------------------------------------
    def resolve(self, start: Location, path: str, *, follow: bool = True,
                root: Location | None = None, creds=None, rules: WalkRules | None = None,
                create: Callable[[Location, str], Location] | None = None) -> Location:
        """The Location `path` names, relative to `start` (absolute paths start at `root`).

        `follow` governs only the last component (a trailing "/" always follows and
        requires a directory).  With `creds`, search (x) permission is checked on every
        directory walked through (EACCES), as Linux does.  `rules` restricts the walk
        (openat2); with `rules.beneath` or `rules.in_root`, `start` is the root.
        `create` (O_CREAT) is called with (directory, name) when the last component is
        missing, and its Location is the result; a trailing "/" there is EISDIR.
        """
        if root is None:
            root = self.root()
        if not path:
            raise SyscallError(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        # Search permission on a directory never fails for euid 0 (CAP_DAC_OVERRIDE), so the
        # walk skips the attr() it would cost; a sandbox running as root walks much faster.
        search_creds = creds if creds is not None and creds.euid != 0 else None
        if rules is None:
            if create is None and search_creds is None:
                head, _, last = path.rpartition("/")
                if head and last and last != "." and last != "..":
                    parent, links = self._dir_of(start, root, head)
                    return self._walk(parent, last, follow, root, None, NO_RULES, None, links)[0]
            rules = NO_RULES
        elif rules.beneath or rules.in_root:
            root = start
        if path[0] == "/":
            if rules.beneath:
                raise SyscallError(errno.EXDEV)
            start = root
        return self._walk(start, path, follow, root, search_creds, rules, create, 0)[0]

    def _dir_of(self, start: Location, root: Location, head: str) -> tuple[Location, int]:
        """The directory `head` names (and the symlinks followed to it), from the cache of
        earlier walks when it holds one (see names_changed)."""
        absolute = head[0] == "/"
        key = (id(root.node), head) if absolute else (id(root.node), id(start.node), start.path, head)
        hit = self._dirs.get(key)
        if hit is not None and hit[0] is root.node and (absolute or hit[1] is start.node):
            return hit[2], hit[3]
        loc, links, stable = self._walk(root if absolute else start, head + "/", True, root,
                                        None, NO_RULES, None, 0, track=True)
        if stable:
            if len(self._dirs) >= DIR_CACHE_SIZE:
                self._dirs.clear()
            self._dirs[key] = (root.node, start.node, loc, links)
        return loc, links

    def names_changed(self) -> None:
        """Forget cached directory walks: a name was removed or renamed (unlink, rmdir,
        rename), so a cached path may now lead elsewhere or nowhere."""
        self._dirs.clear()

    def _walk(self, cur: Location, path: str, follow: bool, root: Location, search_creds,
              rules: WalkRules, create: Callable[[Location, str], Location] | None,
              links: int, track: bool = False) -> tuple[Location, int, bool]:
        """resolve()'s component loop from `cur`: (Location, symlinks followed, stable).

        With `track`, `stable` says whether the result may be cached: every directory
        walked through is on a file system whose names change only through the Sentry,
        and no procfs magic link was taken.
        """
        must_dir = path.endswith("/")
        todo = [c for c in path.split("/") if c]
        todo.reverse()                 # a stack: the next component is todo[-1]
        stack: list[Location] = []     # directories walked through, for cheap ".."
        by_path = self._by_path        # mount point -> mount (see child())
        stable = True
        while todo:
            name = todo.pop()
            if len(name) > NAME_MAX:
                raise SyscallError(errno.ENAMETOOLONG)
            node = cur.node
            if not node.is_dir():
                raise SyscallError(errno.ENOTDIR)
            if track and not cur.mount.fs.stable_names:
                stable = False
            if search_creds is not None and not perm.may_access(node.attr(), search_creds,
                                                                perm.MAY_EXEC):
                raise SyscallError(errno.EACCES)
            if name == ".":
                continue
            if name == "..":
                if stack:
                    nxt = stack.pop()
                elif rules.beneath:
                    # Under `beneath` nothing resets the stack, so an empty one means
                    # `cur` is the starting directory: ".." would leave it.
                    raise SyscallError(errno.EXDEV)
                else:
                    nxt = self.parent_of(cur, root)
                if rules.no_xdev and nxt.mount is not cur.mount:
                    raise SyscallError(errno.EXDEV)
                cur = nxt
                continue
            try:
                nnode = node.lookup(name)
            except SyscallError as e:
                if create is None or todo or e.errno != errno.ENOENT:
                    raise
                if must_dir:
                    raise SyscallError(errno.EISDIR) from None
                return create(cur, name), links, False
            if nnode.is_symlink() and (todo or follow or must_dir):
                if rules.no_symlinks:
                    raise SyscallError(errno.ELOOP)
                links += 1
                if links > MAXSYMLINKS:
                    raise SyscallError(errno.ELOOP)
                jump = nnode.jump()
                if jump is not None:           # a procfs magic link: straight to its object
                    if rules.no_magiclinks:
                        raise SyscallError(errno.ELOOP)
                    if rules.no_xdev and jump.mount is not cur.mount:
                        raise SyscallError(errno.EXDEV)
                    if rules.beneath or rules.in_root:
                        raise SyscallError(errno.EXDEV)
                    cur, stack, stable = jump, [], False
                    continue
                target = nnode.readlink()
                if not target:
                    raise SyscallError(errno.ENOENT)
                if len(target) >= PATH_MAX:
                    raise SyscallError(errno.ENAMETOOLONG)
                if target[0] == "/":
                    if rules.beneath:
                        raise SyscallError(errno.EXDEV)
                    if rules.no_xdev and cur.mount is not root.mount:
                        raise SyscallError(errno.EXDEV)
                    cur, stack = root, []
                if not todo and target.endswith("/"):
                    must_dir = True          # the last component's target names a directory
                todo.extend(reversed([c for c in target.split("/") if c]))
                continue
            # child(), inlined: this is every open's and stat's inner loop.
            cpath = cur.path
            npath = cpath + name if cpath == "/" else cpath + "/" + name
            m = by_path.get(npath) if by_path else None
            stack.append(cur)
            if m is not None and m.point is nnode:
                if rules.no_xdev:
                    raise SyscallError(errno.EXDEV)
                cur = Location(m, m.fs.root, npath)
            else:
                cur = Location(cur.mount, nnode, npath)
        if must_dir and not cur.node.is_dir():
            raise SyscallError(errno.EISDIR if create is not None else errno.ENOTDIR)
        if track and not cur.mount.fs.stable_names:
            stable = False
        return cur, links, stable

    def resolve_parent(self, start: Location, path: str, *, root: Location | None = None,
                       creds=None) -> tuple[Location, str]:
        """The directory holding the last component of `path`, and that component's name.

        The name may be "." or ".." (callers reject those as Linux does) or "" for "/"
        itself; a trailing "/" is dropped from the name (callers that care look at `path`).
        """
        if root is None:
            root = self.root()
        if not path:
            raise SyscallError(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        stripped = path.rstrip("/")
        if not stripped:
            return root, ""
        head, _, name = stripped.rpartition("/")
        if len(name) > NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        if not _:
            parent = start
        elif not head:
            parent = root
        elif creds is None or creds.euid == 0:
            parent = self._dir_of(start, root, head)[0]     # no search check: the walk cache
        else:
            parent = self.resolve(start, head + "/", root=root, creds=creds)
        if not parent.node.is_dir():
            raise SyscallError(errno.ENOTDIR)
        if creds is not None and not perm.may_access(parent.node.attr(), creds, perm.MAY_EXEC):
            raise SyscallError(errno.EACCES)
        return parent, name
