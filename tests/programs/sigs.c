/*
 * Signal delivery to handlers: siginfo and ucontext contents, the mask inside a
 * handler, SA_RESETHAND, SA_NODEFER nesting, sigaltstack, FPU state restored
 * after a handler, pending/blocked signals, sigpending, sigtimedwait,
 * sigsuspend, ignored signals and kill/tgkill/tkill argument checks.
 */
#include "common.h"
#include <signal.h>
#include <stdint.h>
#include <setjmp.h>
#include <ucontext.h>
#include <time.h>

#ifndef SI_TKILL
#define SI_TKILL (-6)
#endif
#define FP_XSTATE_MAGIC1 0x46505853U
#define FP_XSTATE_MAGIC2 0x46505845U

static volatile int hits, depth, max_depth, last_sig, last_code, pid_ok, uid_ok;
static volatile int frame_ok, flags_val, mask_has_self, mask_has_extra, ucmask_empty;
static volatile int fp_ok, alt_ok, alt_query, order[8], norder;

static unsigned long cur_mask(void)
{
    unsigned long m = 0;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, 8);
    return m;
}

static void info_handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    hits++;
    last_sig = si->si_signo;
    last_code = si->si_code;
    pid_ok = si->si_pid == getpid();
    uid_ok = si->si_uid == getuid();
    /* the kernel frame: ucontext 16-aligned (rsp+8 aligned at entry), siginfo right after it */
    frame_ok = ((uintptr_t)uc & 15) == 0 && (char *)si - (char *)uc == 304;
    flags_val = (int)uc->uc_flags;
    unsigned long m = cur_mask();
    mask_has_self = (m >> (sig - 1)) & 1;
    mask_has_extra = (m >> (SIGUSR2 - 1)) & 1;
    ucmask_empty = ((unsigned long *)&uc->uc_sigmask)[0] == 0;
    unsigned char *fp = (unsigned char *)uc->uc_mcontext.fpregs;
    fp_ok = 0;
    if (fp && ((uintptr_t)fp & 63) == 0) {
        unsigned int magic1, xsize, magic2;
        memcpy(&magic1, fp + 464, 4);
        memcpy(&xsize, fp + 464 + 16, 4);
        memcpy(&magic2, fp + xsize, 4);
        fp_ok = magic1 == FP_XSTATE_MAGIC1 && magic2 == FP_XSTATE_MAGIC2 &&
                (char *)fp > (char *)si && uc->uc_mcontext.gregs[REG_RSP] > (greg_t)(uintptr_t)fp;
    }
}

static void plain_handler(int sig)
{
    hits++;
    last_sig = sig;
}

static void nest_handler(int sig)
{
    depth++;
    if (depth > max_depth)
        max_depth = depth;
    if (norder < 8)
        order[norder++] = depth;
    if (hits++ == 0)
        raise(sig);            /* with SA_NODEFER: runs nested now; without: after we return */
    depth--;
}

static char altstack[65536] __attribute__((aligned(16)));

static void alt_handler(int sig)
{
    char local;
    alt_ok = &local > altstack && &local < altstack + sizeof altstack;
    stack_t q;
    sigaltstack(NULL, &q);
    alt_query = q.ss_flags;
    stack_t n = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    errno = 0;
    long r = sigaltstack(&n, NULL);
    alt_query |= (r == -1 && errno == EPERM) ? 0x100 : 0;
    hits++;
}

static volatile unsigned int handler_mxcsr;

static void fpu_handler(int sig)
{
    unsigned int m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    handler_mxcsr = m;
    /* clobber vector and x87 state */
    __asm__ volatile("pcmpeqd %%xmm8, %%xmm8\n\tpcmpeqd %%xmm0, %%xmm0\n\tfninit\n\tfld1\n\tfld1" ::: "xmm8", "xmm0", "st", "st(1)");
    unsigned int z = 0x7f80;     /* all exceptions masked, round toward zero */
    __asm__ volatile("ldmxcsr %0" ::"m"(z));
    hits++;
}

static void install(int sig, void (*h)(int), void (*sh)(int, siginfo_t *, void *), int flags, int extra)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (sh)
        sa.sa_sigaction = sh;
    else
        sa.sa_handler = h;
    sa.sa_flags = flags | (sh ? SA_SIGINFO : 0);
    sigemptyset(&sa.sa_mask);
    if (extra)
        sigaddset(&sa.sa_mask, extra);
    check(sigaction(sig, &sa, NULL) == 0, "sigaction(%d)", sig);
}

int main(void)
{
    /* 1. kill() to self with SA_SIGINFO: SI_USER, sender pid/uid, frame layout, masks */
    install(SIGUSR1, NULL, info_handler, 0, SIGUSR2);
    hits = 0;
    check(kill(getpid(), SIGUSR1) == 0, "kill(getpid(), SIGUSR1)");
    check(hits == 1, "handler ran once");
    printf("signo %d code %d pid_ok %d uid_ok %d\n", last_sig, last_code, pid_ok, uid_ok);
    printf("frame aligned %d uc_flags %#x fpstate magics %d\n", frame_ok, flags_val, fp_ok);
    printf("mask in handler: self %d sa_mask %d; uc_sigmask empty %d; after %lx\n",
           mask_has_self, mask_has_extra, ucmask_empty, cur_mask());

    /* 2. tgkill and raise: SI_TKILL */
    hits = 0;
    check(syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGUSR1) == 0, "tgkill self");
    printf("tgkill: hits %d code is SI_TKILL %d\n", hits, last_code == SI_TKILL);
    hits = 0;
    raise(SIGUSR1);
    printf("raise: hits %d code is SI_TKILL %d pid_ok %d\n", hits, last_code == SI_TKILL, pid_ok);
    check(syscall(SYS_tkill, (pid_t)syscall(SYS_gettid), SIGUSR1) == 0, "tkill self");

    /* 3. SA_RESETHAND: the second signal gets the default action (SIGURG: ignore) */
    install(SIGURG, plain_handler, NULL, SA_RESETHAND, 0);
    hits = 0;
    raise(SIGURG);
    struct sigaction q;
    sigaction(SIGURG, NULL, &q);
    printf("resethand: hits %d now SIG_DFL %d\n", hits, q.sa_handler == SIG_DFL);
    raise(SIGURG);
    printf("second SIGURG ignored by default: hits %d\n", hits);

    /* 4. nesting: SA_NODEFER runs the re-raised signal inside; otherwise after return */
    install(SIGUSR2, nest_handler, NULL, SA_NODEFER, 0);
    hits = depth = max_depth = norder = 0;
    raise(SIGUSR2);
    printf("nodefer: hits %d max depth %d order %d,%d\n", hits, max_depth, order[0], order[1]);
    install(SIGUSR2, nest_handler, NULL, 0, 0);
    hits = depth = max_depth = norder = 0;
    raise(SIGUSR2);
    printf("defer: hits %d max depth %d order %d,%d\n", hits, max_depth, order[0], order[1]);

    /* 5. sigaltstack */
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0}, old;
    check(sigaltstack(&ss, &old) == 0, "sigaltstack set");
    printf("old altstack disabled %d\n", old.ss_flags == SS_DISABLE);
    install(SIGWINCH, alt_handler, NULL, SA_ONSTACK, 0);
    hits = 0;
    raise(SIGWINCH);
    printf("altstack: hits %d handler on alt stack %d flags in handler %#x\n", hits, alt_ok, alt_query);
    check(sigaltstack(NULL, &old) == 0 && old.ss_flags == 0 && old.ss_size == sizeof altstack,
          "altstack enabled and not on it after return");
    stack_t small = {.ss_sp = altstack, .ss_size = 100, .ss_flags = 0};
    errno = 0;
    check_err(sigaltstack(&small, NULL), ENOMEM, "sigaltstack(size 100)");
    stack_t bad = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 8};
    errno = 0;
    check_err(sigaltstack(&bad, NULL), EINVAL, "sigaltstack(flags 8)");
    stack_t dis = {.ss_flags = SS_DISABLE};
    check(sigaltstack(&dis, NULL) == 0, "sigaltstack disable");
    hits = 0;
    raise(SIGWINCH);
    printf("disabled altstack: hits %d on alt stack %d\n", hits, alt_ok);

    /* 6. FPU state: xmm8, x87 stack and MXCSR survive a handler that clobbers them */
    install(SIGUSR1, fpu_handler, NULL, 0, 0);
    unsigned long long in = 0x0123456789abcdefULL, out = 0;
    double pi_out = 0;
    unsigned int mx_before = 0x3f80 | 0x4000, mx_after = 0;   /* masked, round up */
    long tid = syscall(SYS_gettid);
    hits = 0;
    __asm__ volatile(
        "ldmxcsr %[mxb]\n\t"
        "movq %[in], %%xmm8\n\t"
        "fldpi\n\t"
        "mov %[nr], %%eax\n\t"
        "mov %[pid], %%rdi\n\t"
        "mov %[tid], %%rsi\n\t"
        "mov %[sig], %%edx\n\t"
        "syscall\n\t"
        "movq %%xmm8, %[out]\n\t"
        "fstpl %[pi]\n\t"
        "stmxcsr %[mxa]\n\t"
        : [out] "=m"(out), [pi] "=m"(pi_out), [mxa] "=m"(mx_after)
        : [in] "m"(in), [mxb] "m"(mx_before), [nr] "i"(SYS_tgkill), [pid] "r"((long)getpid()),
          [tid] "r"(tid), [sig] "i"(SIGUSR1)
        : "rax", "rdi", "rsi", "rdx", "rcx", "r11", "xmm8", "memory", "st");
    unsigned int reset = 0x1f80;
    __asm__ volatile("ldmxcsr %0" ::"m"(reset));
    printf("fpu: hits %d xmm8 kept %d x87 kept %d mxcsr kept %d handler mxcsr %#x\n", hits,
           out == in, pi_out > 3.14159 && pi_out < 3.1416, mx_after == mx_before, handler_mxcsr);

    /* 7. blocked signals stay pending; sigpending; sigtimedwait takes them */
    install(SIGUSR1, NULL, info_handler, 0, 0);
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    hits = 0;
    raise(SIGUSR1);
    raise(SIGUSR1);       /* a standard signal is pending once */
    sigpending(&pend);
    printf("blocked: hits %d pending %d\n", hits, sigismember(&pend, SIGUSR1));
    siginfo_t si;
    memset(&si, 0, sizeof si);
    struct timespec zero = {0, 0}, short_ts = {0, 20 * 1000 * 1000};
    int r = sigtimedwait(&set, &si, &zero);
    printf("sigtimedwait -> %d si_signo %d code SI_TKILL %d pid_ok %d\n", r, si.si_signo,
           si.si_code == SI_TKILL, si.si_pid == getpid());
    errno = 0;
    check_err(sigtimedwait(&set, &si, &zero), EAGAIN, "sigtimedwait(nothing, 0)");
    errno = 0;
    check_err(sigtimedwait(&set, &si, &short_ts), EAGAIN, "sigtimedwait(nothing, 20ms)");
    struct timespec badts = {0, 2000000000L};
    errno = 0;
    check_err(syscall(SYS_rt_sigtimedwait, &set, NULL, &badts, 8), EINVAL, "rt_sigtimedwait(bad timespec)");
    errno = 0;
    check_err(syscall(SYS_rt_sigtimedwait, &set, NULL, &zero, 4), EINVAL, "rt_sigtimedwait(sigsetsize 4)");
    errno = 0;
    check_err(syscall(SYS_rt_sigpending, &pend, 16), EINVAL, "rt_sigpending(sigsetsize 16)");

    /* 8. unblocking delivers the pending signal at once */
    raise(SIGUSR1);
    printf("still blocked: hits %d\n", hits);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    printf("after unblock: hits %d\n", hits);

    /* 9. sigsuspend: returns EINTR after the handler, mask restored */
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR1);
    sigset_t empty;
    sigemptyset(&empty);
    hits = 0;
    errno = 0;
    r = sigsuspend(&empty);
    printf("sigsuspend -> %d %s hits %d ucmask had SIGUSR1 %d; mask after %lx\n", r, errname(errno), hits,
           !ucmask_empty, cur_mask());
    sigprocmask(SIG_UNBLOCK, &set, NULL);

    /* 10. ignored signals */
    signal(SIGUSR1, SIG_IGN);
    raise(SIGUSR1);
    sigpending(&pend);
    printf("SIG_IGN: continues, pending %d\n", sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR1);
    sigpending(&pend);
    printf("SIG_IGN but blocked: pending %d\n", sigismember(&pend, SIGUSR1));
    signal(SIGUSR1, SIG_IGN);
    sigpending(&pend);
    printf("after re-ignoring: pending %d\n", sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    signal(SIGUSR1, SIG_DFL);
    raise(SIGCHLD);
    raise(SIGURG);
    raise(SIGWINCH + 0 * (signal(SIGWINCH, SIG_DFL) == SIG_ERR));
    raise(SIGCONT);
    printf("default-ignored SIGCHLD SIGURG SIGWINCH SIGCONT: still running\n");

    /* 11. kill/tgkill/tkill arguments */
    check(kill(getpid(), 0) == 0, "kill(self, 0)");
    check(kill(0, 0) == 0, "kill(0, 0)");
    check(getpgrp() == 1 || kill(-getpgrp(), 0) == 0, "kill(-pgrp, 0) (pgrp 1 means kill(-1): not here)");
    errno = 0;
    check_err(kill(getpid(), 65), EINVAL, "kill(self, 65)");
    errno = 0;
    check_err(kill(0x3fffffff, 0), ESRCH, "kill(no such pid, 0)");
    errno = 0;
    check_err(syscall(SYS_tgkill, 0, 1, 0), EINVAL, "tgkill(0, 1, 0)");
    errno = 0;
    check_err(syscall(SYS_tgkill, getpid(), 0x3fffffff, 0), ESRCH, "tgkill(self, no such tid, 0)");
    errno = 0;
    check_err(syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), -1), EINVAL, "tgkill(sig -1)");
    errno = 0;
    check_err(syscall(SYS_tkill, -1, 0), EINVAL, "tkill(-1, 0)");
    check(syscall(SYS_tkill, (pid_t)syscall(SYS_gettid), 0) == 0, "tkill(self, 0)");
    return finish();
}
