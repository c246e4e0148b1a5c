"""What the guest may do to host files on a mount: nosuid, nodev and ownership.

The guest runs as root and the Sentry may too, so a read-write host mount must
not give a host user who later uses its files more than the user who ran kvmbox
has (docs/vfs.md "Host mounts"):

- set-id bits never reach a host object from the guest: S_ISUID nowhere, S_ISGID
  only on directories (where it means group inheritance, no privilege);
- a host file with set-id bits loses them before the guest may change it (open
  for writing, truncate), as Linux does for a writer without CAP_FSETID;
- ownership changes are what that user could make natively (HostOwner), unless
  the mount allows them (--mount HOST:GUEST:rw,chown).

Device nodes are refused where they are made and opened (fsimpl/host.py).
"""
from __future__ import annotations

import errno
import os
import stat as S

from kvmbox.errors import SyscallError


def nosuid_mode(mode: int, kind: int) -> int:
    """The permission bits of `mode` a host object of type `kind` may get from the guest."""
    mode &= 0o7777 & ~S.S_ISUID
    return mode if kind == S.S_IFDIR else mode & ~S.S_ISGID


def is_setid(mode: int) -> bool:
    """Whether a regular file's mode makes it run with other ids (as Linux's should_remove_suid:
    S_ISGID counts only with group execute)."""
    return bool(mode & S.S_ISUID or (mode & S.S_ISGID and mode & S.S_IXGRP))


def drop_setid(fd: int, mode: int) -> None:
    """Clear the set-id bits of the open host file `fd` (mode: its current st_mode)."""
    os.fchmod(fd, S.S_IMODE(mode) & ~(S.S_ISUID | (S.S_ISGID if mode & S.S_IXGRP else 0)))


class HostOwner:
    """The user who ran kvmbox (the Sentry's real ids), to whom host files made in the
    sandbox belong, and the ownership changes that user could make natively."""

    __slots__ = ("uid", "gid", "groups", "allow_chown")

    def __init__(self, allow_chown: bool = False) -> None:
        self.uid, self.gid = os.getuid(), os.getgid()
        self.groups = frozenset(os.getgroups()) | {self.gid}
        self.allow_chown = allow_chown

    def check_chown(self, st: os.stat_result, uid: int | None, gid: int | None) -> None:
        """EPERM for a change of owner, or for a group that is not the user's or on a file
        that is not the user's; anything the Sentry may do when chown is allowed."""
        if self.allow_chown:
            return
        if uid is not None and uid != st.st_uid:
            raise SyscallError(errno.EPERM)
        if gid is not None and gid != st.st_gid and (st.st_uid != self.uid or gid not in self.groups):
            raise SyscallError(errno.EPERM)
