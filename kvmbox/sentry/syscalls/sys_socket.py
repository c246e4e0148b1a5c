"""Sockets: none yet, refused on purpose.

The sandbox has no network and no Unix-domain sockets until a network
issue lands.  socket(2) and socketpair(2) fail with EACCES, the errno a
security policy (seccomp, an LSM) gives for a socket it forbids, rather
than ENOSYS: programs such as `id` and `whoami` (glibc's nscd probe) or
curl then take their no-socket path quietly, and `kvmbox syscalls` and
--strace still show the refusal.
"""
from __future__ import annotations

import errno

from kvmbox.sentry.syscalls.table import ERROR, Entry

ENTRIES = (
    Entry("socket", None, ERROR, "no sockets yet (no network, no AF_UNIX): refused as policy",
          errno.EACCES),
    Entry("socketpair", None, ERROR, "no sockets yet (no network, no AF_UNIX): refused as policy",
          errno.EACCES),
)
