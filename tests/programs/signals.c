/*
 * rt_sigaction and rt_sigprocmask: install actions and masks, then read
 * them back through the old-value arguments. No signal is delivered here.
 */
#include "common.h"
#include <signal.h>

static void handler(int sig) { (void)sig; }
static void handler2(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; }

struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

int main(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    check(sigaction(SIGUSR1, NULL, &old) == 0, "sigaction read SIGUSR1");
    printf("SIGUSR1 initially SIG_DFL %s\n", old.sa_handler == SIG_DFL ? "yes" : "no");

    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    check(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction install SIGUSR1 handler");
    memset(&old, 0, sizeof old);
    check(sigaction(SIGUSR1, NULL, &old) == 0, "sigaction read back");
    printf("handler matches %s\n", old.sa_handler == handler ? "yes" : "no");
    printf("SA_RESTART kept %s\n", (old.sa_flags & SA_RESTART) ? "yes" : "no");
    printf("SA_SIGINFO clear %s\n", (old.sa_flags & SA_SIGINFO) ? "no" : "yes");
    printf("mask has SIGUSR2 %s, not SIGINT %s\n", sigismember(&old.sa_mask, SIGUSR2) ? "yes" : "no",
           sigismember(&old.sa_mask, SIGINT) ? "no" : "yes");

    /* replace with SA_SIGINFO; old-action argument returns the previous one */
    struct sigaction si;
    memset(&si, 0, sizeof si);
    si.sa_sigaction = handler2;
    si.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&si.sa_mask);
    memset(&old, 0, sizeof old);
    check(sigaction(SIGUSR1, &si, &old) == 0, "sigaction swap in SA_SIGINFO handler");
    printf("old action was the first handler %s\n", old.sa_handler == handler ? "yes" : "no");
    check(sigaction(SIGUSR1, NULL, &old) == 0, "sigaction read SA_SIGINFO action");
    printf("sa_sigaction matches %s, SA_SIGINFO %s, SA_NODEFER %s\n",
           old.sa_sigaction == handler2 ? "yes" : "no", (old.sa_flags & SA_SIGINFO) ? "yes" : "no",
           (old.sa_flags & SA_NODEFER) ? "yes" : "no");

    /* SIG_IGN round trip */
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    check(sigaction(SIGPIPE, &sa, NULL) == 0, "ignore SIGPIPE");
    check(sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_IGN, "SIGPIPE reads back SIG_IGN");

    /* raw rt_sigaction */
    struct ksigaction k = {0}, kold;
    k.handler = (void *)handler;
    k.flags = SA_RESTART;
    k.mask = 1UL << (SIGTERM - 1);
    /* no SA_RESTORER: fine, no signal is delivered */
    check(syscall(SYS_rt_sigaction, SIGUSR2, &k, NULL, 8) == 0, "raw rt_sigaction SIGUSR2");
    memset(&kold, 0, sizeof kold);
    check(syscall(SYS_rt_sigaction, SIGUSR2, NULL, &kold, 8) == 0, "raw rt_sigaction read back");
    printf("raw: handler %s, flags %s, mask %s\n", kold.handler == (void *)handler ? "same" : "differs",
           kold.flags == SA_RESTART ? "same" : "differs", kold.mask == k.mask ? "same" : "differs");

    errno = 0;
    check_err(syscall(SYS_rt_sigaction, SIGUSR2, &k, NULL, 4), EINVAL, "rt_sigaction(sigsetsize 4)");
    errno = 0;
    check_err(syscall(SYS_rt_sigaction, SIGKILL, &k, NULL, 8), EINVAL, "rt_sigaction(SIGKILL)");
    errno = 0;
    check_err(syscall(SYS_rt_sigaction, SIGSTOP, &k, NULL, 8), EINVAL, "rt_sigaction(SIGSTOP)");
    errno = 0;
    check_err(syscall(SYS_rt_sigaction, 0, &k, NULL, 8), EINVAL, "rt_sigaction(0)");
    errno = 0;
    check_err(syscall(SYS_rt_sigaction, 65, &k, NULL, 8), EINVAL, "rt_sigaction(65)");
    errno = 0;
    check_err(syscall(SYS_rt_sigaction, SIGUSR2, BADPTR, NULL, 8), EFAULT, "rt_sigaction(bad act)");
    check(syscall(SYS_rt_sigaction, SIGKILL, NULL, &kold, 8) == 0, "reading SIGKILL's action is allowed");

    /* rt_sigprocmask */
    unsigned long m0 = ~0UL, m1, m2;
    check(syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m0, 8) == 0, "read initial mask");
    printf("initial mask empty %s\n", m0 == 0 ? "yes" : "no");
    unsigned long blk = (1UL << (SIGUSR1 - 1)) | (1UL << (SIGKILL - 1)) | (1UL << (SIGSTOP - 1));
    check(syscall(SYS_rt_sigprocmask, SIG_BLOCK, &blk, &m1, 8) == 0, "block SIGUSR1+SIGKILL+SIGSTOP");
    check(syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m2, 8) == 0, "read mask");
    printf("SIGUSR1 blocked %s, SIGKILL blocked %s, SIGSTOP blocked %s\n",
           (m2 >> (SIGUSR1 - 1)) & 1 ? "yes" : "no", (m2 >> (SIGKILL - 1)) & 1 ? "yes" : "no",
           (m2 >> (SIGSTOP - 1)) & 1 ? "yes" : "no");
    unsigned long u2 = 1UL << (SIGUSR2 - 1);
    check(syscall(SYS_rt_sigprocmask, SIG_SETMASK, &u2, &m1, 8) == 0, "SIG_SETMASK {SIGUSR2}");
    printf("old mask was {SIGUSR1} %s\n", m1 == 1UL << (SIGUSR1 - 1) ? "yes" : "no");
    check(syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &u2, &m1, 8) == 0, "SIG_UNBLOCK SIGUSR2");
    check(syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m2, 8) == 0 && m2 == 0, "mask empty again");

    sigset_t ss, sold;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    check(sigprocmask(SIG_BLOCK, &ss, NULL) == 0, "libc sigprocmask block SIGTERM");
    check(sigprocmask(SIG_SETMASK, NULL, &sold) == 0 && sigismember(&sold, SIGTERM), "libc reads SIGTERM blocked");
    sigprocmask(SIG_UNBLOCK, &ss, NULL);

    errno = 0;
    check_err(syscall(SYS_rt_sigprocmask, 99, &u2, NULL, 8), EINVAL, "rt_sigprocmask(how 99)");
    errno = 0;
    check_err(syscall(SYS_rt_sigprocmask, SIG_BLOCK, &u2, NULL, 4), EINVAL, "rt_sigprocmask(sigsetsize 4)");
    errno = 0;
    check_err(syscall(SYS_rt_sigprocmask, SIG_BLOCK, BADPTR, NULL, 8), EFAULT, "rt_sigprocmask(bad set)");
    return finish();
}
