"""Byte layouts of the x86-64 kernel structs the Sentry reads and writes, as struct.Struct data."""
from __future__ import annotations

import struct

# struct timespec { time_t tv_sec; long tv_nsec; }
TIMESPEC = struct.Struct("<qq")
# struct timeval { time_t tv_sec; suseconds_t tv_usec; }
TIMEVAL = struct.Struct("<qq")
# struct timezone { int tz_minuteswest; int tz_dsttime; }
TIMEZONE = struct.Struct("<ii")
# struct tms { clock_t tms_utime, tms_stime, tms_cutime, tms_cstime; }
TMS = struct.Struct("<qqqq")
# struct rusage: ru_utime, ru_stime (timevals), then 14 longs (maxrss .. nivcsw)
RUSAGE = struct.Struct("<qqqq14q")

# struct new_utsname: sysname, nodename, release, version, machine, domainname; 65 bytes each.
UTSNAME_FIELD_LEN = 65
UTSNAME = struct.Struct("<65s65s65s65s65s65s")

# struct rlimit64 { u64 rlim_cur; u64 rlim_max; } (getrlimit/setrlimit/prlimit64 all use it).
RLIMIT = struct.Struct("<QQ")

# struct stat (arch/x86/include/uapi/asm/stat.h, 64-bit): 144 bytes.
#   st_dev, st_ino, st_nlink (u64); st_mode, st_uid, st_gid (u32), __pad0 (int);
#   st_rdev (u64), st_size, st_blksize, st_blocks (s64);
#   st_atime, st_atime_nsec, st_mtime, st_mtime_nsec, st_ctime, st_ctime_nsec (s64);
#   __unused[3] (s64).
STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")

# struct winsize { unsigned short ws_row, ws_col, ws_xpixel, ws_ypixel; }
WINSIZE = struct.Struct("<HHHH")

# Kernel struct termios (TCGETS): c_iflag, c_oflag, c_cflag, c_lflag (u32), c_line (u8),
# c_cc[19] (NCCS = 19): 36 bytes.  (glibc's user struct termios is a different, larger one.)
NCCS = 19
TERMIOS = struct.Struct("<IIIIB19s")

# Kernel struct sigaction (rt_sigaction): sa_handler, sa_flags, sa_restorer, sa_mask (u64 each).
SIGACTION = struct.Struct("<QQQQ")
# stack_t (sigaltstack): void *ss_sp; int ss_flags; (pad) size_t ss_size.
STACK_T = struct.Struct("<QI4xQ")   # ss_flags read unsigned: SS_AUTODISARM is bit 31
# Kernel sigset_t: one u64.
SIGSET = struct.Struct("<Q")

# struct sysinfo (64-bit): uptime, loads[3], totalram, freeram, sharedram, bufferram,
# totalswap, freeswap, procs (u16), pad (u16), totalhigh, freehigh, mem_unit (u32): 112 bytes.
SYSINFO = struct.Struct("<q3Q6QHH4xQQI4x")

# struct robust_list_head { list *next; long futex_offset; list *list_op_pending; }
ROBUST_LIST_HEAD_SIZE = 24

# Plain C scalars.
U32 = struct.Struct("<I")
S32 = struct.Struct("<i")
U64 = struct.Struct("<Q")
S64 = struct.Struct("<q")

# struct iovec { void *iov_base; size_t iov_len; }
IOVEC = struct.Struct("<QQ")
# struct pollfd { int fd; short events; short revents; }
POLLFD = struct.Struct("<ihh")
# struct linux_dirent64 header: d_ino (u64), d_off (s64), d_reclen (u16), d_type (u8); name follows.
DIRENT64_HEADER = struct.Struct("<QqHB")
# One auxv entry: a_type, a_val (u64).
AUXV_ENTRY = struct.Struct("<QQ")
