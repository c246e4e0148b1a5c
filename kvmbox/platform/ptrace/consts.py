"""Every magic number of the ptrace platform: syscall numbers, ptrace/wait/seccomp/BPF ABI values.

mmap(2) values come from kvmbox.abi.mman.
"""
from __future__ import annotations

# --- x86-64 syscall numbers the stub makes (asm/unistd_64.h) ----------------
NR_mmap, NR_mprotect, NR_munmap = 9, 10, 11
NR_fork, NR_ptrace, NR_getppid, NR_setpgid = 57, 101, 110, 109
NR_prctl, NR_exit_group, NR_seccomp, NR_rseq, NR_close_range = 157, 231, 317, 334, 436
NR_clone, NR_exit, NR_tgkill = 56, 60, 234
# clone flags of a stub thread: CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM (the filter allows only these)
STUB_THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000

# --- prctl(2), seccomp(2), signals ------------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SIGKILL, SIGSTOP = 9, 19
RSEQ_FLAG_UNREGISTER = 1
RSEQ_SIG = 0x53053053                # glibc's rseq signature on x86
RSEQ_AREA_MIN = 32                    # glibc registers max(__rseq_size, 32) bytes
TASK_SIZE = 0x7FFF_FFFF_F000          # end of a 4-level-paging user address space

# --- classic BPF and seccomp (linux/filter.h, linux/seccomp.h, linux/audit.h) --
BPF_LD_W_ABS = 0x20                   # BPF_LD | BPF_W | BPF_ABS: A = *(u32 *)(data + k)
BPF_JEQ_K = 0x15                      # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06                      # BPF_RET | BPF_K
SECCOMP_RET_KILL_PROCESS = 0x8000_0000
SECCOMP_RET_ALLOW = 0x7FFF_0000
SECCOMP_RET_TRAP = 0x0003_0000          # not executed; SIGSYS (si_code SYS_SECCOMP) instead
AUDIT_ARCH_X86_64 = 0xC000_003E
SD_NR, SD_ARCH, SD_IP, SD_ARGS = 0, 4, 8, 16   # struct seccomp_data field offsets

# --- ptrace(2) requests and options (linux/ptrace.h) -------------------------
PTRACE_CONT = 7
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
PTRACE_GETEVENTMSG = 0x4201
PTRACE_O_TRACECLONE = 0x08            # thread 0 of a stub: its clones come traced and stopped
PTRACE_EVENT_CLONE = 3
PTRACE_KILL = 8
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETSIGINFO = 0x4202
PTRACE_SYSEMU = 31
PTRACE_GETREGSET, PTRACE_SETREGSET = 0x4204, 0x4205
NR_arch_prctl, ARCH_GET_XCOMP_SUPP = 158, 0x1021   # the host's supported user xfeatures
NT_X86_XSTATE = 0x202                 # regset: the XSAVE image (standard format)
XSTATE_MAX = 16384                    # buffer for it; the kernel reports the real length
PTRACE_O_TRACESYSGOOD = 0x01          # syscall stops report SIGTRAP | 0x80
PTRACE_O_EXITKILL = 0x100000          # the stub dies if the tracer exits
SYSCALL_STOP_SIG = 0x85               # SIGTRAP | 0x80
WALL = 0x4000_0000                    # waitpid __WALL

# --- siginfo_t (x86-64) ------------------------------------------------------
SIGINFO_SIZE = 128
SI_SIGNO, SI_CODE, SI_ADDR = 0, 8, 16         # byte offsets of si_signo, si_code, si_addr
SI_USER, SI_KERNEL = 0, 0x80
SEGV_MAPERR, SEGV_ACCERR, SEGV_PKUERR = 1, 2, 4
BUS_ADRALN, BUS_ADRERR = 1, 2
FPE_INTDIV, FPE_INTOVF = 1, 2
TRAP_BRKPT, TRAP_TRACE = 1, 2
SYS_SECCOMP = 1
SI_CALL_ADDR = 16                     # SIGSYS: si_call_addr (where the syscall was made)

# --- struct user_regs_struct (sys/user.h): 27 u64 in this order ---------------
USER_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
             "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
             "gs_base", "ds", "es", "fs", "gs")
REG = {name: i for i, name in enumerate(USER_REGS)}
NUM_REGS = len(USER_REGS)
# The general registers a new guest thread starts with zeroed (segment selectors are kept).
GPRS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
        "rdx", "rsi", "rdi", "fs_base", "gs_base")
INT80_LEN = 2                         # `int 0x80` (cd 80): a 32-bit syscall gate, not ours
INT80_GP_ERROR = 0x80 << 3 | 2        # #GP error code of an absent IDT gate 0x80
PF_PK = 0x20                          # page-fault error bit: protection-key violation
INITIAL_RFLAGS = 0x202                # IF plus the always-one bit, as Linux starts a process
