"""Linux x86-64 signal numbers, names and default actions (signal(7)), as data."""
from __future__ import annotations

import enum


class DefaultAction(enum.Enum):
    TERMINATE = "term"
    IGNORE = "ign"
    CORE = "core"
    STOP = "stop"
    CONTINUE = "cont"


SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE = 1, 2, 3, 4, 5, 6, 7, 8
SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM = 9, 10, 11, 12, 13, 14, 15
SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU = 16, 17, 18, 19, 20, 21, 22
SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO = 23, 24, 25, 26, 27, 28, 29
SIGPWR, SIGSYS = 30, 31
SIGRTMIN, SIGRTMAX = 32, 64
NSIG = 64                         # highest valid signal number
SIGSET_SIZE = 8                   # sizeof(kernel sigset_t) on x86-64

_T, _I, _C, _S, _K = (DefaultAction.TERMINATE, DefaultAction.IGNORE, DefaultAction.CORE,
                      DefaultAction.STOP, DefaultAction.CONTINUE)

# signo -> (name, default action) for the 31 standard signals.
STANDARD_SIGNALS: dict[int, tuple[str, DefaultAction]] = {
    1: ("SIGHUP", _T), 2: ("SIGINT", _T), 3: ("SIGQUIT", _C), 4: ("SIGILL", _C),
    5: ("SIGTRAP", _C), 6: ("SIGABRT", _C), 7: ("SIGBUS", _C), 8: ("SIGFPE", _C),
    9: ("SIGKILL", _T), 10: ("SIGUSR1", _T), 11: ("SIGSEGV", _C), 12: ("SIGUSR2", _T),
    13: ("SIGPIPE", _T), 14: ("SIGALRM", _T), 15: ("SIGTERM", _T), 16: ("SIGSTKFLT", _T),
    17: ("SIGCHLD", _I), 18: ("SIGCONT", _K), 19: ("SIGSTOP", _S), 20: ("SIGTSTP", _S),
    21: ("SIGTTIN", _S), 22: ("SIGTTOU", _S), 23: ("SIGURG", _I), 24: ("SIGXCPU", _C),
    25: ("SIGXFSZ", _C), 26: ("SIGVTALRM", _T), 27: ("SIGPROF", _T), 28: ("SIGWINCH", _I),
    29: ("SIGIO", _T), 30: ("SIGPWR", _T), 31: ("SIGSYS", _C),
}


def _rt_name(signo: int) -> str:
    return "SIGRTMIN" if signo == SIGRTMIN else f"SIGRT_{signo - SIGRTMIN}"


# signo -> name for 1..64 (real-time signals as strace names them: SIGRTMIN, SIGRT_1...).
SIGNAL_NAMES: dict[int, str] = {
    **{n: name for n, (name, _) in STANDARD_SIGNALS.items()},
    **{n: _rt_name(n) for n in range(SIGRTMIN, NSIG + 1)},
}

# signo -> default action for 1..64 (real-time signals terminate).
DEFAULT_ACTIONS: dict[int, DefaultAction] = {
    **{n: act for n, (_, act) in STANDARD_SIGNALS.items()},
    **{n: _T for n in range(SIGRTMIN, NSIG + 1)},
}

# Signals that can be neither caught, blocked nor ignored.
UNBLOCKABLE_MASK = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))

# rt_sigprocmask `how` values.
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2

# sa_flags bits (asm/signal.h).
SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO = 0x1, 0x2, 0x4
SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x0800_0000, 0x1000_0000, 0x4000_0000, 0x8000_0000
SA_RESTORER = 0x0400_0000
SIG_DFL, SIG_IGN = 0, 1

# sigaltstack ss_flags and sizes.
SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
MINSIGSTKSZ = 2048


def sigbit(signo: int) -> int:
    """The bit of signo in a 64-bit sigset_t."""
    return 1 << (signo - 1)
