"""File locks for x86-64: fcntl(2)'s record-lock commands, struct flock, and flock(2)'s
operations (asm-generic/fcntl.h, uapi/linux/fcntl.h): data, no logic.  The record-lock
commands and l_type values are defined once, in abi/fcntl.py, and re-exported here."""
import struct

from kvmbox.abi.fcntl import (F_GETLK, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW,  # noqa: F401
                              F_RDLCK, F_SETLK, F_SETLKW, F_UNLCK, F_WRLCK)  # the commands: fcntl.py
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2        # l_whence

# struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
FLOCK = struct.Struct("<hh4xqqi4x")

LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8  # flock(2) operations
LOCK_MAND = 32                                # obsolete "mandatory" flock: Linux ignores it

OFFSET_MAX = (1 << 63) - 1                    # the last byte a lock can cover (loff_t max)
