/*
 * A SIGUSR1 handler that records what the masked waits (ppoll, pselect,
 * epoll_pwait) must show: how often it ran and whether SIGUSR2 was blocked
 * while it ran; and queries of the current mask and pending set.
 */
#ifndef SIGPROBE_H
#define SIGPROBE_H
#include <signal.h>

static volatile int usr1_calls;
static volatile int usr2_blocked_in_handler = -1;

static inline void on_usr1(int sig)
{
    (void)sig;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    usr1_calls++;
    usr2_blocked_in_handler = sigismember(&cur, SIGUSR2);
}

static inline int blocked(int sig)
{
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig);
}

static inline int pending(int sig)
{
    sigset_t set;
    sigpending(&set);
    return sigismember(&set, sig);
}

#endif
