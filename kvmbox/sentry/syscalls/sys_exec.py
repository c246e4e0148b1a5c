"""execve(2) and execveat(2): a new program image in the same task (no new process).

The new image is built completely in a fresh MemoryManager first (the program,
a "#!" script's interpreter, PT_INTERP, the stack with argv/envp/auxv, the
vDSO), exactly as a run starts (kvmbox.sentry.program.load_program).  Any
failure up to there returns -errno to the old image, which is untouched.
Then comes the point of no return: the task gets the new address space,
close-on-exec descriptors close, caught signals go back to SIG_DFL (ignored
ones stay ignored), the alternate signal stack, TLS and robust list are
cleared, and the registers and FPU start afresh at the new entry point.  The
handler raises ImageReplaced; the run loop switches to the new address space
and releases the old one.  The pid, cwd, umask, rlimits, signal mask and
pending signals carry over, as on Linux.
"""
from __future__ import annotations

import errno
import os

from kvmbox.abi import signals as S
from kvmbox.abi.structs import SIGACTION, U64
from kvmbox.errors import CannotExecute, ProgramNotFound, SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.sentry import caps
from kvmbox.sentry.signals.frame import init_fpu_image
from kvmbox.sentry.stack import MAX_ARG_STRLEN, arg_space_limit
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import PARTIAL, Entry
from kvmbox.sentry.task import ImageReplaced, exec_comm
from kvmbox.sentry.vfs import at
from kvmbox.sentry.vfs.path import FsContext

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH = 0x100, 0x1000
START_RFLAGS = 0x202                 # IF and the always-one bit, as start_thread() leaves them
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
        "r14", "r15")


def read_strings(t: "Task", addr: int, budget: int) -> list[str]:
    """A NULL-terminated array of string pointers (argv or envp); NULL is an empty array.

    E2BIG once the strings and pointers pass `budget` bytes or one string passes
    MAX_ARG_STRLEN, as Linux's count()/copy_strings() do; EFAULT for bad memory.
    """
    out: list[str] = []
    if not addr:
        return out
    used = 0
    while True:
        (ptr,) = U64.unpack(t.mm.copy_in(addr + 8 * len(out), 8))
        if not ptr:
            return out
        try:
            raw = t.mm.read_cstring(ptr, MAX_ARG_STRLEN)
        except SyscallError as e:
            raise SyscallError(errno.E2BIG if e.errno == errno.ENAMETOOLONG else e.errno) from None
        used += len(raw) + 1 + 8
        if used > budget:
            raise SyscallError(errno.E2BIG)
        out.append(os.fsdecode(raw))


def _reset_signals(t: "Task") -> None:
    """flush_signal_handlers(): caught signals to SIG_DFL, ignored ones stay ignored with
    their flags and masks cleared; no alternate stack."""
    kept = {}
    for signo, raw in t.sigactions.items():
        handler = SIGACTION.unpack(raw)[0]
        if handler == S.SIG_IGN:
            kept[signo] = SIGACTION.pack(S.SIG_IGN, 0, 0, 0)
    from kvmbox.sentry.threadgroup import SignalHandlers
    t.sighand.detach()
    t.sighand = SignalHandlers(kept)       # unshared: a vfork parent keeps its own handlers
    t.sighand.attach()
    t.altstack = (0, S.SS_DISABLE, 0)
    t.saved_sigmask = None


def _open_for_writing(t: "Task", node) -> bool:
    """Whether an open file of the (one) process writes to `node`: exec then gives ETXTBSY."""
    return any(f.writable and getattr(f, "node", None) is node for _fd, f in t.fds.items())


def do_execve(t: "Task", dirfd: int, path: str, argv_addr: int, envp_addr: int, flags: int) -> int:
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    budget = arg_space_limit(L.STACK_MAX)
    argv = read_strings(t, argv_addr, budget)
    envp = read_strings(t, envp_addr, budget)
    if not argv:
        argv = [""]                  # Linux >= 5.18 gives argc 0 programs an empty argv[0]
    kernel = t.kernel
    vfs = kernel.vfs
    name = exec_comm(path)
    if not path:
        if not flags & AT_EMPTY_PATH:
            raise SyscallError(errno.ENOENT)
        loc = t.fds.get(dirfd).location            # fexecve: the open file itself
        if loc is None:
            raise SyscallError(errno.EACCES)
        path = loc.path
        name = exec_comm(path)             # the file's own name, as Linux 6.14 on (was the fd number)
    start = t.fs.cwd if path.startswith("/") else at.dir_of(t, dirfd)
    if flags & AT_SYMLINK_NOFOLLOW:
        if vfs.resolve(start, path, follow=False, root=t.fs.root, creds=t.creds).node.is_symlink():
            raise SyscallError(errno.ELOOP)
    fsctx = FsContext(t.fs.root, start, t.fs.umask)
    try:
        mm, image = kernel.load_image(path, argv, envp, fsctx, creds=t.creds, limit=t.mm.limit)
    except (ProgramNotFound, CannotExecute) as e:
        raise SyscallError(e.errno) from None
    if _open_for_writing(t, image.exe_node):
        mm.release()
        raise SyscallError(errno.ETXTBSY)          # deny_write_access() at exec
    # --- the point of no return ---------------------------------------------------
    from kvmbox.sentry import lifecycle
    try:
        lifecycle.de_thread(t)                     # the other threads end; t is the leader
    except BaseException:
        mm.release()
        raise
    lifecycle.mm_release(t)
    old_mm, t.mm = t.mm, mm
    mm.rlimit = t.soft_rlimit
    if getattr(t.fds, "users", 1) > 1:            # unshare_files(): CLONE_FILES sharers keep theirs
        old_fds, t.fds = t.fds, t.fds.copy()
        lifecycle.drop(old_fds)
    t.fds.close_on_exec()
    _reset_signals(t)
    if t.timers is not None:
        t.timers.on_exec()                         # POSIX timers go; itimers stay
    t.exe_path, t.exe_node = image.exe_path, image.exe_node
    t.comm = name                                  # PR_SET_NAME does not survive execve
    t.argv, t.envp, t.auxv = list(image.argv or argv), envp, image.auxv
    caps.exec_creds(t.creds)                       # set-id bits and file capabilities ignored
    t.clear_child_tid, t.robust_list, t.fs_base, t.fault_regs = 0, (0, 0), 0, (0, 0, 0)
    ctx = t.ctx
    ctx.restore_regs(**dict.fromkeys(GPRS, 0), rip=image.entry, rsp=image.initial_sp,
                     rflags=START_RFLAGS, fs_base=0, gs_base=0)
    ctx.set_fpu(init_fpu_image(ctx.fpu_layout()[0]))
    t.tg.exec_done = True                          # setpgid by its parent: EACCES now
    raise ImageReplaced(old_mm)


def execve(t: "Task", a: Args) -> int:
    """Implements Linux syscall execve(2)."""
    return do_execve(t, at.AT_FDCWD, at.read_path(t, a[0]), a[1], a[2], 0)


def execveat(t: "Task", a: Args) -> int:
    """Implements Linux syscall execveat(2)."""
    dirfd, path_addr, argv, envp, flags = s32(a[0]), a[1], a[2], a[3], s32(a[4])
    path = os.fsdecode(t.mm.read_cstring(path_addr, 4096)) if path_addr else ""
    return do_execve(t, dirfd, path, argv, envp, flags)


ENTRIES = (
    Entry("execve", execve, PARTIAL,
          "replaces the image in place (ELF, PT_INTERP, #! scripts); ETXTBSY for a program "
          "open for writing; capability sets recomputed as for a file without set-id bits or "
          "file capabilities (those are ignored)"),
    Entry("execveat", execveat, PARTIAL,
          "as execve; AT_EMPTY_PATH runs the open file by its path, AT_SYMLINK_NOFOLLOW"),
)
