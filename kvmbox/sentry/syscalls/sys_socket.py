"""Sockets: none yet, refused on purpose; calls on descriptors answer ENOTSOCK.

The sandbox has no network and no Unix-domain sockets until a network
issue lands.  socket(2) and socketpair(2) fail with EACCES, the errno a
security policy (seccomp, an LSM) gives for a socket it forbids, rather
than ENOSYS: programs such as `id` and `whoami` (glibc's nscd probe) or
curl then take their no-socket path quietly, and `kvmbox syscalls` and
--strace still show the refusal.
"""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import ERROR, PARTIAL, Entry


def _on_a_descriptor(name: str):
    """The handler of socket call `name` on a descriptor (connect, getpeername, ...): with no
    sockets in the sandbox every open descriptor answers ENOTSOCK, a closed one EBADF."""
    def handler(t, a) -> int:
        t.fds.get(s32(a[0]))
        raise SyscallError(errno.ENOTSOCK)
    handler.__name__ = name
    handler.__doc__ = f"Implements Linux syscall {name}(2)."
    return handler


SOCKET_FD_CALLS = ("connect", "accept", "accept4", "bind", "listen", "getsockname", "getpeername",
                   "getsockopt", "setsockopt", "shutdown", "sendto", "recvfrom", "sendmsg",
                   "recvmsg", "sendmmsg", "recvmmsg")

ENTRIES = tuple(Entry(name, _on_a_descriptor(name), PARTIAL, "no sockets exist yet: ENOTSOCK (EBADF "
                      "when closed)") for name in SOCKET_FD_CALLS) + (
    Entry("socket", None, ERROR, "no sockets yet (no network, no AF_UNIX): refused as policy",
          errno.EACCES),
    Entry("socketpair", None, ERROR, "no sockets yet (no network, no AF_UNIX): refused as policy",
          errno.EACCES),
)
