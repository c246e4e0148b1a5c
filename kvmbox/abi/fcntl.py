"""open(2) flags and fcntl(2) commands for x86-64 (asm-generic/fcntl.h): data, no logic.

The access mode is the low two bits: O_RDONLY, O_WRONLY, O_RDWR, and 3, which
Linux accepts and opens for neither reading nor writing (ioctl only) while it
still asks for read and write permission.  kvmbox.sentry.vfs.regular.access_of
turns a flags word into (readable, writable).
"""
O_ACCMODE = 0o3
O_RDONLY, O_WRONLY, O_RDWR = 0o0, 0o1, 0o2

O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND = 0o100, 0o200, 0o400, 0o1000, 0o2000
O_NONBLOCK, O_DSYNC, FASYNC, O_DIRECT, O_LARGEFILE = 0o4000, 0o10000, 0o20000, 0o40000, 0o100000
O_DIRECTORY, O_NOFOLLOW, O_NOATIME, O_CLOEXEC = 0o200000, 0o400000, 0o1000000, 0o2000000
O_SYNC, O_PATH = 0o4010000, 0o10000000
O_TMPFILE_BIT = 0o20000000                 # the kernel's __O_TMPFILE
O_TMPFILE = O_TMPFILE_BIT | O_DIRECTORY    # what open(2) callers pass

# fcntl(2) commands and values (asm-generic/fcntl.h, linux/fcntl.h).
FD_CLOEXEC = 1
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_GETLK, F_SETLK, F_SETLKW, F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG = 5, 6, 7, 8, 9, 10, 11
F_SETOWN_EX, F_GETOWN_EX = 15, 16
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_SETLEASE, F_GETLEASE, F_NOTIFY, F_DUPFD_CLOEXEC = 1024, 1025, 1026, 1030
F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS = 1031, 1032, 1033, 1034
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
