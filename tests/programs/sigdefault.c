/*
 * Default actions and forced signals, one per run (the argument picks it); the
 * run is expected to end the way Linux ends it (see tests/syscalls/test_signals.py):
 *   term SIGNO     raise(SIGNO) with SIG_DFL: terminate, core or ignore
 *   abort          abort(): SIGABRT, core
 *   ignored SIGNO  SIG_IGN then raise: continues, exit 0
 *   pending-term   SIGTERM raised while blocked, then unblocked: dies at the unblock
 *   fault-blocked  NULL write with SIGSEGV blocked although handled: killed by SIGSEGV
 *   fault-nested   a SIGSEGV handler that faults again (no SA_NODEFER): killed by SIGSEGV
 *   badframe       a handler corrupts its frame's fpstate pointer: rt_sigreturn -> SIGSEGV
 *   no-restorer    raw rt_sigaction without SA_RESTORER, then the signal: SIGSEGV
 *   pipe           write to a pipe with no reader: SIGPIPE right after the write
 *   kill           kill(getpid(), SIGKILL)
 */
#include "common.h"
#include <signal.h>
#include <ucontext.h>

static int *volatile bad_ptr = (int *)8;

static void segv_again(int sig)
{
    *bad_ptr = 1;
}

static void corrupt(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    uc->uc_mcontext.fpregs = (void *)8;
}

static void nothing(int sig) { }

struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    int signo = argc > 2 ? atoi(argv[2]) : 0;
    printf("mode %s %d\n", mode, signo);
    fflush(stdout);
    if (!strcmp(mode, "term")) {
        raise(signo);
        printf("survived\n");
    } else if (!strcmp(mode, "abort")) {
        abort();
    } else if (!strcmp(mode, "ignored")) {
        signal(signo, SIG_IGN);
        raise(signo);
        printf("survived\n");
    } else if (!strcmp(mode, "pending-term")) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGTERM);
        sigprocmask(SIG_BLOCK, &s, NULL);
        raise(SIGTERM);
        printf("still alive while blocked\n");
        fflush(stdout);
        sigprocmask(SIG_UNBLOCK, &s, NULL);
        printf("survived\n");
    } else if (!strcmp(mode, "fault-blocked")) {
        signal(SIGSEGV, nothing);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGSEGV);
        sigprocmask(SIG_BLOCK, &s, NULL);
        *(volatile int *)0 = 1;
        printf("survived\n");
    } else if (!strcmp(mode, "fault-nested")) {
        signal(SIGSEGV, segv_again);
        *(volatile int *)0 = 1;
        printf("survived\n");
    } else if (!strcmp(mode, "badframe")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = corrupt;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGUSR1, &sa, NULL);
        raise(SIGUSR1);
        printf("survived\n");
    } else if (!strcmp(mode, "no-restorer")) {
        struct ksigaction k = {.handler = (void *)nothing};
        syscall(SYS_rt_sigaction, SIGUSR1, &k, NULL, 8);
        syscall(SYS_kill, getpid(), SIGUSR1);
        printf("survived\n");
    } else if (!strcmp(mode, "pipe")) {
        int p[2];
        if (pipe(p) == 0) {
            close(p[0]);
            long r = write(p[1], "x", 1);
            printf("survived write -> %ld\n", r);
        }
    } else if (!strcmp(mode, "kill")) {
        kill(getpid(), SIGKILL);
        printf("survived\n");
    }
    return 0;
}
