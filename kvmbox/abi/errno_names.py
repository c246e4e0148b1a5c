"""Linux errno numbers -> their symbolic names and strerror(3) texts, as data."""
from __future__ import annotations

import errno as _errno
import os as _os
from types import MappingProxyType

# Linux x86-64 errno values (asm-generic/errno*.h); Python's errno module may lack a few.
_LINUX_ERRNOS: tuple[tuple[int, str], ...] = (
    (1, "EPERM"), (2, "ENOENT"), (3, "ESRCH"), (4, "EINTR"), (5, "EIO"), (6, "ENXIO"),
    (7, "E2BIG"), (8, "ENOEXEC"), (9, "EBADF"), (10, "ECHILD"), (11, "EAGAIN"),
    (12, "ENOMEM"), (13, "EACCES"), (14, "EFAULT"), (15, "ENOTBLK"), (16, "EBUSY"),
    (17, "EEXIST"), (18, "EXDEV"), (19, "ENODEV"), (20, "ENOTDIR"), (21, "EISDIR"),
    (22, "EINVAL"), (23, "ENFILE"), (24, "EMFILE"), (25, "ENOTTY"), (26, "ETXTBSY"),
    (27, "EFBIG"), (28, "ENOSPC"), (29, "ESPIPE"), (30, "EROFS"), (31, "EMLINK"),
    (32, "EPIPE"), (33, "EDOM"), (34, "ERANGE"), (35, "EDEADLK"), (36, "ENAMETOOLONG"),
    (37, "ENOLCK"), (38, "ENOSYS"), (39, "ENOTEMPTY"), (40, "ELOOP"), (42, "ENOMSG"),
    (43, "EIDRM"), (61, "ENODATA"), (62, "ETIME"), (71, "EPROTO"), (74, "EBADMSG"),
    (75, "EOVERFLOW"), (84, "EILSEQ"), (88, "ENOTSOCK"), (89, "EDESTADDRREQ"),
    (90, "EMSGSIZE"), (91, "EPROTOTYPE"), (92, "ENOPROTOOPT"), (93, "EPROTONOSUPPORT"),
    (95, "EOPNOTSUPP"), (97, "EAFNOSUPPORT"), (98, "EADDRINUSE"), (99, "EADDRNOTAVAIL"),
    (100, "ENETDOWN"), (101, "ENETUNREACH"), (103, "ECONNABORTED"), (104, "ECONNRESET"),
    (105, "ENOBUFS"), (106, "EISCONN"), (107, "ENOTCONN"), (110, "ETIMEDOUT"),
    (111, "ECONNREFUSED"), (113, "EHOSTUNREACH"), (114, "EALREADY"), (115, "EINPROGRESS"),
    (116, "ESTALE"), (122, "EDQUOT"), (125, "ECANCELED"), (130, "EOWNERDEAD"),
    (131, "ENOTRECOVERABLE"),
    # Kernel-internal values that leak to strace output (include/linux/errno.h).
    (512, "ERESTARTSYS"), (513, "ERESTARTNOINTR"), (514, "ERESTARTNOHAND"),
    (516, "ERESTART_RESTARTBLOCK"),
)

ERRNO_NAMES: MappingProxyType = MappingProxyType(
    {**dict(_errno.errorcode), **dict(_LINUX_ERRNOS)})

ERRNO_TEXT: MappingProxyType = MappingProxyType(
    {n: _os.strerror(n) for n in ERRNO_NAMES if n < 512})


def errno_name(err: int) -> str:
    """'ENOENT' for 2; the number as text when unknown."""
    return ERRNO_NAMES.get(err, str(err))


def errno_text(err: int) -> str:
    """strerror(3) text for err ('No such file or directory'); 'Unknown error N' if unknown."""
    return ERRNO_TEXT.get(err, f"Unknown error {err}")
