"""Moving whole files between the embedding program and the sandbox (Sandbox.write_file/read_file).

The bytes go through the same VFS path a guest open(2) would take, so they
land in (or come from) the in-memory overlay, a tmpfs or a read-write host
mount, and a read-only mount refuses the write with EROFS.
"""
from __future__ import annotations

import errno
import os

from kvmbox.abi.fcntl import O_RDONLY, O_TRUNC, O_WRONLY
from kvmbox.errors import KvmboxError, SyscallError
from kvmbox.sentry.vfs import perm

CHUNK = 1 << 20


def _fail(path: str, e: SyscallError) -> KvmboxError:
    return KvmboxError(f"kvmbox: {path}: {os.strerror(e.errno)}")


def write_file(vfs, path: str, data: bytes, mode: int = 0o644) -> None:
    """Create or truncate guest `path` and write `data` into it."""
    if not path.startswith("/"):
        raise KvmboxError(f"kvmbox: {path}: the sandbox path must be absolute")
    root = vfs.root()
    try:
        parent, name = vfs.resolve_parent(root, path, root=root)
        if name in ("", ".", ".."):
            raise SyscallError(errno.EISDIR)
        perm.check_writable(parent)
        try:
            loc = vfs.resolve(root, path, follow=True, root=root)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
            node = parent.node.create(name, mode & 0o7777, os.getuid(), os.getgid())
            loc = vfs.child(parent, name, node)
        perm.check_writable(loc)
        if loc.node.is_dir():
            raise SyscallError(errno.EISDIR)
        f = loc.node.open(O_WRONLY | O_TRUNC, loc)
        try:
            f.truncate(0)
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += f.write(bytes(view[done:done + CHUNK]))
        finally:
            f.release()
    except SyscallError as e:
        raise _fail(path, e) from None


def read_file(vfs, path: str) -> bytes:
    """The whole content of guest `path`."""
    if not path.startswith("/"):
        raise KvmboxError(f"kvmbox: {path}: the sandbox path must be absolute")
    root = vfs.root()
    try:
        loc = vfs.resolve(root, path, follow=True, root=root)
        if loc.node.is_dir():
            raise SyscallError(errno.EISDIR)
        f = loc.node.open(O_RDONLY, loc)
        try:
            parts = []
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                parts.append(chunk)
            return b"".join(parts)
        finally:
            f.release()
    except SyscallError as e:
        raise _fail(path, e) from None
