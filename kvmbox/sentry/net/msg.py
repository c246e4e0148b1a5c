"""Message plumbing shared by every socket call: struct msghdr, iovecs, and control messages
(cmsg) in both directions: SCM_RIGHTS and SCM_CREDENTIALS parsed from a send, and built
(descriptors installed) for a receive, with Linux's truncation rules (MSG_CTRUNC)."""
from __future__ import annotations

import errno

from kvmbox.abi.socket import (
    CMSGHDR, MSGHDR, SCM_CREDENTIALS, SCM_MAX_FD, SCM_RIGHTS, SOCKADDR_STORAGE_SIZE,
    SOL_SOCKET, UCRED, MSG_CTRUNC, cmsg_align, cmsg_len, cmsg_space,
)
from kvmbox.abi.structs import IOVEC, S32
from kvmbox.errors import SyscallError
from kvmbox.record import record
from kvmbox.sentry.net.socket import Ancillary, Received, drop, hold

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

UIO_MAXIOV = 1024
INT_MAX = 0x7FFFFFFF
CAP_SETUID, CAP_SETGID, CAP_SYS_ADMIN = 7, 6, 21


@record
class MsgHdr:
    """A guest struct msghdr, read."""
    name: int
    namelen: int
    iov: list[tuple[int, int]]
    control: int
    controllen: int
    flags: int


def read_msghdr(t: "Task", addr: int) -> MsgHdr:
    """Linux's copy_msghdr_from_user: EFAULT, EINVAL for a negative name length (a long one
    is clamped to sockaddr_storage), EMSGSIZE past UIO_MAXIOV iovecs."""
    name, namelen, iov, iovlen, control, controllen, flags = MSGHDR.unpack(
        t.mm.copy_in(addr, MSGHDR.size))
    if not name:
        namelen = 0
    if namelen < 0:
        raise SyscallError(errno.EINVAL)
    namelen = min(namelen, SOCKADDR_STORAGE_SIZE)
    return MsgHdr(name, namelen, read_iovecs(t, iov, iovlen), control, controllen, flags)


def read_iovecs(t: "Task", iov: int, iovlen: int) -> list[tuple[int, int]]:
    """The (base, length) pairs of a guest iovec array (EMSGSIZE, EFAULT, EINVAL)."""
    if iovlen > UIO_MAXIOV:
        raise SyscallError(errno.EMSGSIZE)
    if not iovlen:
        return []
    raw = t.mm.copy_in(iov, iovlen * IOVEC.size)
    vecs = [IOVEC.unpack_from(raw, i * IOVEC.size) for i in range(iovlen)]
    total = 0
    for _base, length in vecs:
        total += length
        if length > INT_MAX * 2 ** 32 or total > 0x7FFF_FFFF_FFFF_FFFF:
            raise SyscallError(errno.EINVAL)
    return vecs


def gather(t: "Task", vecs: list[tuple[int, int]], limit: int = INT_MAX) -> bytes:
    """The bytes the iovecs name (at most `limit`), copied in (EFAULT)."""
    out = bytearray()
    for base, length in vecs:
        if len(out) >= limit:
            break
        n = min(length, limit - len(out))
        if n:
            out += t.mm.copy_in(base, n)
    return bytes(out)


def scatter(t: "Task", vecs: list[tuple[int, int]], data: bytes) -> None:
    """Copy `data` out across the iovecs (EFAULT)."""
    off = 0
    for base, length in vecs:
        if off >= len(data):
            break
        chunk = data[off:off + length]
        if chunk:
            t.mm.copy_out(base, chunk)
        off += len(chunk)


def _capable(t: "Task", cap: int) -> bool:
    return bool(getattr(t.creds, "cap_effective", 0) & (1 << cap))


def parse_control(t: "Task", addr: int, length: int) -> Ancillary | None:
    """A send's control buffer as Ancillary (Linux's __scm_send): EINVAL for a malformed
    header, an unknown SOL_SOCKET type or too many descriptors, EBADF for a closed one,
    EPERM for credentials the sender may not claim.  None when there is none."""
    if length > INT_MAX:
        raise SyscallError(errno.ENOBUFS)
    if length < CMSGHDR.size or not addr:
        return None
    buf = t.mm.copy_in(addr, length)
    anc = Ancillary()
    try:
        off = 0
        while off + CMSGHDR.size <= length:
            clen, level, ctype = CMSGHDR.unpack_from(buf, off)
            if clen < CMSGHDR.size or clen > length - off:
                raise SyscallError(errno.EINVAL)
            body = buf[off + CMSGHDR.size:off + clen]
            if level == SOL_SOCKET:
                if ctype == SCM_RIGHTS:
                    _rights(t, body, anc)
                elif ctype == SCM_CREDENTIALS:
                    anc.creds = _creds(t, clen, body)
                else:
                    raise SyscallError(errno.EINVAL)
            else:
                anc.other.append((level, ctype, body))
            off += cmsg_align(clen)
    except SyscallError:
        release(anc)
        raise
    return anc


def _rights(t: "Task", body: bytes, anc: Ancillary) -> None:
    num = len(body) // 4
    if num <= 0:
        return
    if num + len(anc.rights) > SCM_MAX_FD:
        raise SyscallError(errno.EINVAL)
    for i in range(num):
        f = t.fds.get(S32.unpack_from(body, i * 4)[0])      # EBADF
        hold(f)
        anc.rights.append(f)


def _creds(t: "Task", clen: int, body: bytes) -> tuple[int, int, int]:
    if clen != cmsg_len(UCRED.size):
        raise SyscallError(errno.EINVAL)
    pid, uid, gid = UCRED.unpack_from(body)
    c = t.creds
    if pid != t.tg.tgid and not _capable(t, CAP_SYS_ADMIN):
        raise SyscallError(errno.EPERM)
    if uid not in (c.uid, c.euid, getattr(c, "suid", c.uid)) and not _capable(t, CAP_SETUID):
        raise SyscallError(errno.EPERM)
    if gid not in (c.gid, c.egid, getattr(c, "sgid", c.gid)) and not _capable(t, CAP_SETGID):
        raise SyscallError(errno.EPERM)
    return pid, uid, gid


def release(anc: "Ancillary | Received | None") -> None:
    """Drop the in-flight references of a send that did not happen, or of a receive whose
    caller takes no descriptors (read, recvfrom)."""
    if anc is not None:
        for f in anc.rights or ():
            drop(f)
        anc.rights = []


def build_control(t: "Task", r: Received, passcred: bool, controllen: int,
                  cloexec: bool) -> tuple[bytes, int]:
    """The control bytes a receive returns in a buffer of `controllen` bytes, and the
    msg_flags it adds (MSG_CTRUNC): credentials first (with SO_PASSCRED), then the
    descriptors, installed now (those that do not fit are closed, as Linux's
    scm_detach_fds).  Every right of `r` is consumed."""
    from kvmbox.sentry.syscalls.sys_open import nofile_limit
    out = bytearray()
    flags = 0
    items = []
    if passcred and r.creds is not None:
        items.append((SOL_SOCKET, SCM_CREDENTIALS, UCRED.pack(*r.creds)))
    items.extend(r.other)
    for level, ctype, data in items:
        room = controllen - len(out)
        if room < CMSGHDR.size:
            flags |= MSG_CTRUNC
            break
        clen = cmsg_len(len(data))
        if room < clen:
            flags |= MSG_CTRUNC
            clen = room
        out += (CMSGHDR.pack(cmsg_len(len(data)), level, ctype) + data)[:clen]
        out += bytes(max(min(cmsg_space(len(data)), room) - clen, 0))
    rights = r.rights or []
    r.rights = None
    if rights:
        room = controllen - len(out)
        fdmax = (room - CMSGHDR.size) // 4 if room > CMSGHDR.size else 0
        fds = []
        for f in rights[:fdmax]:
            try:
                fds.append(t.fds.alloc(f, cloexec=cloexec, limit=nofile_limit(t)))
            except SyscallError:
                break
        for f in rights:
            drop(f)                       # installed ones keep their table reference
        if fds:
            body = b"".join(S32.pack(fd) for fd in fds)
            out += CMSGHDR.pack(cmsg_len(len(body)), SOL_SOCKET, SCM_RIGHTS) + body
            out += bytes(max(min(cmsg_space(len(body)), room) - cmsg_len(len(body)), 0))
        if len(fds) < len(rights):
            flags |= MSG_CTRUNC
    return bytes(out), flags
