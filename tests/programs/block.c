/*
 * block KIND DIR: start one wait that nothing in this process can satisfy, and stay in it.
 *
 * Prints "blocking KIND" and then blocks; if the wait ever returns it prints what it
 * returned and exits 1.  The harness checks natively that each KIND really blocks, and in
 * the sandbox that --timeout and Sandbox.kill() end every one of them at once.  DIR is a
 * writable directory for the FIFO and lock file.
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>

#ifndef F_OFD_SETLKW
#define F_OFD_SETLKW 38
#endif

static char path[4096];

static void returned(const char *what, long r)
{
    printf("%s returned %ld (%s)\n", what, r, r < 0 ? errname(errno) : "-");
    exit(1);
}

static int fifo(int flags)
{
    unlink(path);
    if (mkfifo(path, 0600) < 0) returned("mkfifo", -1);
    return open(path, flags);
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    const char *k = argv[1];
    snprintf(path, sizeof path, "%s/block-%s", argv[2], k);
    printf("blocking %s\n", k);
    fflush(stdout);
    int p[2];
    char buf[65536];
    if (!strcmp(k, "pipe_read")) {
        if (pipe(p)) return 2;
        returned("read", read(p[0], buf, 1));
    } else if (!strcmp(k, "pipe_write")) {
        if (pipe(p)) return 2;
        memset(buf, 'x', sizeof buf);
        for (;;) { long r = write(p[1], buf, sizeof buf); if (r <= 0) returned("write", r); }
    } else if (!strcmp(k, "fifo_open_read")) {
        returned("open", fifo(O_RDONLY));
    } else if (!strcmp(k, "fifo_open_write")) {
        returned("open", fifo(O_WRONLY));
    } else if (!strcmp(k, "fifo_rdwr_read")) {
        int fd = fifo(O_RDWR);
        returned("read", read(fd, buf, 1));
    } else if (!strcmp(k, "fifo_rdwr_write")) {
        int fd = fifo(O_RDWR);
        memset(buf, 'x', sizeof buf);
        for (;;) { long r = write(fd, buf, sizeof buf); if (r <= 0) returned("write", r); }
    } else if (!strcmp(k, "eventfd_read")) {
        uint64_t v;
        returned("read", read(eventfd(0, 0), &v, 8));
    } else if (!strcmp(k, "eventfd_write")) {
        uint64_t v = 0xfffffffffffffffeULL;
        int fd = eventfd(0, 0);
        if (write(fd, &v, 8) != 8) return 2;
        v = 1;
        returned("write", write(fd, &v, 8));
    } else if (!strcmp(k, "poll")) {
        if (pipe(p)) return 2;
        struct pollfd pfd = { p[0], POLLIN, 0 };
        returned("poll", poll(&pfd, 1, -1));
    } else if (!strcmp(k, "select")) {
        if (pipe(p)) return 2;
        fd_set r;
        FD_ZERO(&r);
        FD_SET(p[0], &r);
        returned("select", select(p[0] + 1, &r, NULL, NULL, NULL));
    } else if (!strcmp(k, "epoll")) {
        if (pipe(p)) return 2;
        int ep = epoll_create1(0);
        struct epoll_event ev = { EPOLLIN, { 0 } };
        epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
        returned("epoll_wait", epoll_wait(ep, &ev, 1, -1));
    } else if (!strcmp(k, "nanosleep")) {
        struct timespec ts = { 100000, 0 };
        returned("nanosleep", nanosleep(&ts, NULL));
    } else if (!strcmp(k, "clock_nanosleep_abs")) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 100000;
        returned("clock_nanosleep", clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL));
    } else if (!strcmp(k, "pause")) {
        returned("pause", pause());
    } else if (!strcmp(k, "sigsuspend")) {
        sigset_t none;
        sigemptyset(&none);
        returned("sigsuspend", sigsuspend(&none));
    } else if (!strcmp(k, "sigtimedwait")) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        returned("sigwaitinfo", sigwaitinfo(&set, NULL));
    } else if (!strcmp(k, "futex")) {
        int word = 0;
        returned("futex", syscall(SYS_futex, &word, 128 /* FUTEX_WAIT_PRIVATE */, 0, NULL, NULL, 0));
    } else if (!strcmp(k, "flock")) {
        int a = open(path, O_RDWR | O_CREAT, 0600), b = open(path, O_RDWR);
        if (flock(a, LOCK_EX)) return 2;
        returned("flock", flock(b, LOCK_EX));
    } else if (!strcmp(k, "ofd_lock")) {
        int a = open(path, O_RDWR | O_CREAT, 0600), b = open(path, O_RDWR);
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
        if (fcntl(a, F_OFD_SETLKW, &fl)) return 2;
        returned("fcntl", fcntl(b, F_OFD_SETLKW, &fl));
    } else if (!strcmp(k, "timerfd_read")) {
        uint64_t n;
        returned("read", read(timerfd_create(CLOCK_MONOTONIC, 0), &n, 8));   /* never armed */
    } else if (!strcmp(k, "signalfd_read")) {
        struct signalfd_siginfo si;
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        returned("read", read(signalfd(-1, &set, 0), &si, sizeof si));
    } else if (!strcmp(k, "stdin")) {
        returned("read", read(0, buf, 1));
    } else {
        return 2;
    }
    return 1;
}
