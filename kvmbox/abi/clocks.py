"""Linux clock ids, timer flags and the timer/signalfd structure layouts (time.h, signal.h,
timerfd.h, signalfd.h), as data."""
from __future__ import annotations

import struct

NSEC_PER_SEC = 1_000_000_000
NSEC_PER_USEC = 1_000
USER_HZ = 100                       # clock_t ticks per second (times(2), /proc/<pid>/stat)
NSEC_PER_CLOCK_T = NSEC_PER_SEC // USER_HZ
# The host kernel's tick (CONFIG_HZ=250 on the distributions kvmbox targets): setitimer adds
# one to CPU itimers, getitimer reports it for one about to fire, clock_getres of the
# PROF/VIRT CPU clocks.
TICK_NSEC = NSEC_PER_SEC // 250
KTIME_MAX = (1 << 63) - 1

# Clock ids.
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI = 8, 9, 11
TIMER_ABSTIME = 1

# CPU-time clock ids for a pid: (~pid << 3) | (perthread ? 4 : 0) | which (posix-timers.h).
CPUCLOCK_PROF, CPUCLOCK_VIRT, CPUCLOCK_SCHED, CPUCLOCK_MAX = 0, 1, 2, 3
CPUCLOCK_PERTHREAD_MASK = 4
CPUCLOCK_CLOCK_MASK = 3

# setitimer(2).
ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2

# struct sigevent's sigev_notify.
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
SI_TIMER = -2                       # si_code of a POSIX timer's signal
DELAYTIMER_MAX = (1 << 31) - 1      # si_overrun and timer_getoverrun saturate here (INT_MAX)

# timerfd_create / timerfd_settime flags, signalfd4 flags (= O_CLOEXEC, O_NONBLOCK).
TFD_CLOEXEC, TFD_NONBLOCK = 0o2000000, 0o4000
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
SFD_CLOEXEC, SFD_NONBLOCK = 0o2000000, 0o4000

# struct layouts.
TIMEVAL = struct.Struct("<qq")                 # tv_sec, tv_usec
ITIMERVAL = struct.Struct("<qqqq")             # it_interval (sec, usec), it_value (sec, usec)
ITIMERSPEC = struct.Struct("<qqqq")            # it_interval (sec, nsec), it_value (sec, nsec)
SIGEVENT = struct.Struct("<Qiii44x")           # sigev_value, signo, notify, _tid; 64 bytes
SIGNALFD_SIGINFO_SIZE = 128
# ssi_signo errno code pid uid fd tid band overrun trapno status int; ptr utime stime addr;
# addr_lsb, pad; syscall; call_addr; arch; 28 bytes of padding.
SIGNALFD_SIGINFO = struct.Struct("<IiiIIiIIIIiiQQQQHHiQI28x")
