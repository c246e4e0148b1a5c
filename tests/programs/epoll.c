/*
 * epoll: epoll_create/epoll_create1, epoll_ctl (ADD, MOD, DEL and its errors),
 * epoll_wait/epoll_pwait/epoll_pwait2 on pipes and eventfds: level-triggered,
 * edge-triggered (a new write re-arms, a partial read does not, a read of a
 * full pipe re-arms its write end), EPOLLONESHOT, the order of ready events
 * across calls, the interest list keyed by (open file, fd number) with close
 * removing a file only once its last descriptor goes, timeouts, nested epoll
 * fds (poll/select on one, ELOOP, the nesting limit), and epoll_pwait's signal
 * mask (a pending signal it unblocks ends the wait with EINTR).
 */
#include "common.h"
#include "sigprobe.h"
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <time.h>

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif
#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1u << 28)
#endif
#ifndef O_PATH
#define O_PATH 010000000
#endif
#define ELOOP_NAME(e) ((e) == ELOOP ? "ELOOP" : errname(e))

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int ctl(int ep, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(ep, op, fd, &ev);
}

/* One epoll_wait with timeout 0, printed as "label: n [events:data ...]". */
static int show(const char *label, int ep, int max)
{
    struct epoll_event evs[8];
    memset(evs, 0, sizeof evs);
    int n = epoll_wait(ep, evs, max, 0);
    printf("%s: %d", label, n);
    if (n < 0)
        printf(" %s", errname(errno));
    for (int i = 0; i < n; i++)
        printf(" 0x%x:%llx", evs[i].events, (unsigned long long)evs[i].data.u64);
    printf("\n");
    return n;
}

/* epoll_wait as a raw syscall: the error cases pass what glibc's prototype warns about */
static long raw_wait(long ep, void *events, long max, long timeout)
{
    return syscall(SYS_epoll_wait, ep, events, max, timeout);
}

static void efd_add(int fd, uint64_t v)
{
    if (write(fd, &v, 8) != 8)
        printf("eventfd write failed\n");
}

static void efd_take(int fd)
{
    uint64_t v;
    if (read(fd, &v, 8) != 8)
        printf("eventfd read failed\n");
}

static void creation(void)
{
    /* raw syscalls: some musl versions' epoll_create() ignores its argument */
    errno = 0; check_err(syscall(SYS_epoll_create, 0), EINVAL, "epoll_create(0)");
    errno = 0; check_err(syscall(SYS_epoll_create, -1), EINVAL, "epoll_create(-1)");
    errno = 0; check_err(epoll_create1(1), EINVAL, "epoll_create1 bad flags");
    int a = epoll_create(1);
    int b = epoll_create1(EPOLL_CLOEXEC);
    check(a >= 0 && b >= 0, "epoll_create(1) and epoll_create1(EPOLL_CLOEXEC)");
    printf("FD_CLOEXEC: %d %d\n", fcntl(a, F_GETFD), fcntl(b, F_GETFD));
    printf("F_GETFL is O_RDWR: %d %d\n", fcntl(a, F_GETFL) == O_RDWR, fcntl(b, F_GETFL) == O_RDWR);
    struct stat st;
    fstat(a, &st);
    printf("fstat mode 0%o size %lld nlink %d\n", (unsigned)st.st_mode, (long long)st.st_size,
           (int)st.st_nlink);
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", a);
    ssize_t k = readlink(path, link, sizeof link - 1);
    link[k > 0 ? k : 0] = 0;
    printf("readlink: %s\n", link);
    char c;
    errno = 0; check_err(read(a, &c, 1), EINVAL, "read on an epoll fd");
    errno = 0; check_err(write(a, "x", 1), EINVAL, "write on an epoll fd");
    printf("lseek on an epoll fd: %lld\n", (long long)lseek(a, 5, SEEK_SET));
    printf("sizeof(struct epoll_event) %d\n", (int)sizeof(struct epoll_event));
    close(a);
    close(b);
}

static void ctl_errors(void)
{
    int ep = epoll_create1(0);
    int p[2];
    pipe(p);
    errno = 0; check_err(ctl(ep, EPOLL_CTL_ADD, ep, EPOLLIN, 0), EINVAL, "ADD the epoll fd to itself");
    errno = 0; check_err(ctl(p[0], EPOLL_CTL_ADD, p[1], EPOLLIN, 0), EINVAL, "epfd is a pipe");
    int gone = dup(0);
    close(gone);
    errno = 0; check_err(ctl(gone, EPOLL_CTL_ADD, p[0], EPOLLIN, 0), EBADF, "closed epfd");
    errno = 0; check_err(ctl(ep, EPOLL_CTL_ADD, gone, EPOLLIN, 0), EBADF, "closed target fd");
    errno = 0; check_err(epoll_ctl(gone, EPOLL_CTL_ADD, p[0], BADPTR), EFAULT,
                         "bad event pointer is checked before the fds");
    errno = 0; check_err(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], BADPTR), EFAULT, "MOD bad event pointer");
    const char *files[] = {"/etc/passwd", "/", "/proc/self/stat", "/dev/null", "/dev/zero", NULL};
    for (int i = 0; files[i]; i++) {
        int f = open(files[i], O_RDONLY);
        char label[80];
        snprintf(label, sizeof label, "ADD %s", files[i]);
        errno = 0; check_err(ctl(ep, EPOLL_CTL_ADD, f, EPOLLIN, 0), EPERM, label);
        close(f);
    }
    int f = open("/dev/random", O_RDONLY);
    printf("ADD /dev/random: %d\n", ctl(ep, EPOLL_CTL_ADD, f, EPOLLIN, 0));
    close(f);
    f = open("/etc", O_PATH);
    errno = 0; check_err(ctl(ep, EPOLL_CTL_ADD, f, EPOLLIN, 0), EBADF, "ADD an O_PATH fd");
    close(f);
    errno = 0; check_err(ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN, 0), ENOENT, "MOD before ADD");
    errno = 0; check_err(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL), ENOENT, "DEL before ADD");
    check(ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1) == 0, "ADD the read end");
    errno = 0; check_err(ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1), EEXIST, "ADD it again");
    errno = 0; check_err(ctl(ep, 99, p[0], EPOLLIN, 1), EINVAL, "unknown op");
    errno = 0; check_err(ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLEXCLUSIVE, 1), EINVAL,
                         "MOD with EPOLLEXCLUSIVE");
    errno = 0; check_err(ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT | EPOLLEXCLUSIVE | EPOLLONESHOT, 2),
                         EINVAL, "EPOLLEXCLUSIVE with EPOLLONESHOT");
    check(ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT | EPOLLEXCLUSIVE, 2) == 0, "ADD EPOLLEXCLUSIVE");
    errno = 0; check_err(ctl(ep, EPOLL_CTL_MOD, p[1], EPOLLOUT, 2), EINVAL,
                         "MOD an EPOLLEXCLUSIVE entry");
    int inner = epoll_create1(0);
    errno = 0; check_err(ctl(ep, EPOLL_CTL_ADD, inner, EPOLLIN | EPOLLEXCLUSIVE, 3), EINVAL,
                         "EPOLLEXCLUSIVE on an epoll fd");
    check(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL) == 0, "DEL with a NULL event");
    errno = 0; check_err(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL), ENOENT, "DEL again");
    show("only the exclusive write end", ep, 8);

    /* epoll_wait's own errors */
    struct epoll_event ev;
    errno = 0; check_err(raw_wait(ep, &ev, 0, 0), EINVAL, "maxevents 0");
    errno = 0; check_err(raw_wait(ep, &ev, -1, 0), EINVAL, "maxevents -1");
    errno = 0; check_err(raw_wait(ep, &ev, INT_MAX / 12 + 1, 0), EINVAL, "maxevents INT_MAX/12+1");
    errno = 0; check_err(raw_wait(gone, &ev, 0, 0), EINVAL, "maxevents is checked before the fd");
    gone = dup(0);
    close(gone);
    errno = 0; check_err(raw_wait(gone, &ev, 1, 0), EBADF, "closed epfd");
    errno = 0; check_err(raw_wait(p[0], &ev, 1, 0), EINVAL, "epfd is a pipe");
    errno = 0; check_err(raw_wait(ep, (void *)0xffff800000000000ULL, 1, 0), EFAULT,
                         "kernel address for events");
    errno = 0; check_err(raw_wait(ep, BADPTR, 1, 0), EFAULT, "bad events with one ready");
    errno = 0; check_err(raw_wait(ep, BADPTR, 1, 0), EFAULT, "and still ready afterwards");
    check(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL) == 0, "DEL the write end");
    printf("NULL events, nothing ready: %d\n", (int)raw_wait(ep, NULL, 1, 0));
    close(inner);
    close(p[0]);
    close(p[1]);
    close(ep);
}

static void level_triggered(void)
{
    int ep = epoll_create1(0);
    int p[2];
    pipe(p);
    ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN | EPOLLRDHUP | EPOLLPRI, 0x1122334455667788ULL);
    show("LT empty pipe", ep, 8);
    write(p[1], "abc", 3);
    show("LT after a write", ep, 8);
    show("LT again", ep, 8);
    char buf[8];
    read(p[0], buf, 1);
    show("LT after a partial read", ep, 8);
    read(p[0], buf, 2);
    show("LT drained", ep, 8);
    ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT | EPOLLIN, 2);
    show("LT write end", ep, 8);
    ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLOUT, 3);
    write(p[1], "x", 1);
    show("read end MODed to EPOLLOUT", ep, 8);
    ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLOUT, 4);
    show("read end MODed back", ep, 8);
    close(p[1]);
    show("writer closed, data left", ep, 8);
    read(p[0], buf, 1);
    show("writer closed, drained", ep, 8);
    close(p[0]);
    pipe(p);
    ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT, 5);
    close(p[0]);
    show("reader closed", ep, 8);
    close(p[1]);
    show("all closed", ep, 8);
    close(ep);
}

static void edge_triggered(void)
{
    int ep = epoll_create1(0);
    int p[2];
    pipe2(p, O_NONBLOCK);
    ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN | EPOLLET, 10);
    show("ET empty", ep, 8);
    write(p[1], "abc", 3);
    show("ET after a write", ep, 8);
    show("ET again", ep, 8);
    write(p[1], "d", 1);
    show("ET after a second write", ep, 8);
    char buf[4096];
    read(p[0], buf, 1);
    show("ET after a partial read", ep, 8);
    read(p[0], buf, sizeof buf);
    show("ET drained", ep, 8);
    ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLET, 11);
    show("ET MOD while empty", ep, 8);
    write(p[1], "e", 1);
    show("ET written", ep, 8);
    ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLET, 12);
    show("ET MOD re-arms", ep, 8);
    read(p[0], buf, sizeof buf);

    ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT | EPOLLET, 13);
    show("ET write end", ep, 8);
    show("ET write end again", ep, 8);
    write(p[1], "f", 1);
    show("ET write end after a write", ep, 8);
    read(p[0], buf, 1);
    show("ET write end after a read (pipe was not full)", ep, 8);
    int chunks = 0;
    while (write(p[1], buf, sizeof buf) > 0)
        chunks++;
    printf("filled with %d pages\n", chunks);
    show("ET full pipe", ep, 8);
    read(p[0], buf, 1);
    show("ET one byte read from a full pipe", ep, 8);
    read(p[0], buf, sizeof buf - 1);
    show("ET a page read from a full pipe", ep, 8);
    while (read(p[0], buf, sizeof buf) > 0) {}
    show("ET drained again", ep, 8);
    close(p[1]);
    show("ET writer closed", ep, 8);
    show("ET writer closed, again", ep, 8);
    close(p[0]);

    int e = eventfd(0, EFD_NONBLOCK);
    ctl(ep, EPOLL_CTL_ADD, e, EPOLLIN | EPOLLOUT | EPOLLET, 14);
    show("ET eventfd", ep, 8);
    efd_add(e, 1);
    show("ET eventfd written", ep, 8);
    efd_add(e, 0);
    show("ET eventfd written 0", ep, 8);
    efd_take(e);
    show("ET eventfd read", ep, 8);
    show("ET eventfd again", ep, 8);
    close(e);
    close(ep);
}

static void oneshot(void)
{
    int ep = epoll_create1(0);
    int e = eventfd(0, EFD_NONBLOCK);
    ctl(ep, EPOLL_CTL_ADD, e, EPOLLIN | EPOLLONESHOT, 20);
    show("ONESHOT nothing yet", ep, 8);
    efd_add(e, 1);
    show("ONESHOT written", ep, 8);
    show("ONESHOT disabled", ep, 8);
    efd_add(e, 1);
    show("ONESHOT disabled after another write", ep, 8);
    errno = 0; check_err(ctl(ep, EPOLL_CTL_ADD, e, EPOLLIN, 21), EEXIST, "ONESHOT entry still there");
    ctl(ep, EPOLL_CTL_MOD, e, EPOLLIN | EPOLLONESHOT, 22);
    show("ONESHOT re-armed by MOD", ep, 8);
    show("ONESHOT disabled again", ep, 8);
    ctl(ep, EPOLL_CTL_MOD, e, EPOLLIN, 23);
    show("MOD to level-triggered", ep, 8);
    show("MOD to level-triggered, again", ep, 8);
    ctl(ep, EPOLL_CTL_MOD, e, EPOLLIN | EPOLLET | EPOLLONESHOT, 24);
    show("ET|ONESHOT", ep, 8);
    efd_add(e, 1);
    show("ET|ONESHOT after a write", ep, 8);
    close(e);
    close(ep);
}

static void order_and_close(void)
{
    int ep = epoll_create1(0);
    int a = eventfd(0, EFD_NONBLOCK), b = eventfd(0, EFD_NONBLOCK), c = eventfd(0, EFD_NONBLOCK);
    ctl(ep, EPOLL_CTL_ADD, a, EPOLLIN, 0xa);
    ctl(ep, EPOLL_CTL_ADD, b, EPOLLIN, 0xb);
    ctl(ep, EPOLL_CTL_ADD, c, EPOLLIN, 0xc);
    efd_add(c, 1);
    efd_add(a, 1);
    efd_add(b, 1);
    show("order, 2 at a time", ep, 2);
    show("order, 2 more", ep, 2);
    show("order, 2 more again", ep, 2);
    show("order, all", ep, 8);
    efd_take(a);
    show("a read", ep, 8);
    close(b);
    close(c);

    int d = dup(a);
    efd_add(a, 1);
    close(a);
    show("closed but dup'd", ep, 8);
    errno = 0; check_err(epoll_ctl(ep, EPOLL_CTL_DEL, a, NULL), EBADF, "DEL the closed number");
    errno = 0; check_err(epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL), ENOENT, "DEL the dup's number");
    check(ctl(ep, EPOLL_CTL_ADD, d, EPOLLIN, 0xd) == 0, "ADD the dup (another key)");
    show("both keys", ep, 8);
    close(d);
    show("last descriptor closed", ep, 8);
    int again = eventfd(1, 0);
    check(ctl(ep, EPOLL_CTL_ADD, again, EPOLLIN, 0xe) == 0, "ADD a new file (no EEXIST)");
    show("the new file", ep, 8);
    close(again);
    close(ep);
}

static void timeouts(void)
{
    int ep = epoll_create1(0);
    int p[2];
    pipe(p);
    ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1);
    struct epoll_event ev;
    double t0 = now();
    int n = epoll_wait(ep, &ev, 1, 100);
    double dt = now() - t0;
    printf("epoll_wait 100 ms: %d after >=0.09s %d <2s %d\n", n, dt >= 0.09, dt < 2);
    struct timespec ts = {0, 50000000};
    t0 = now();
    n = syscall(SYS_epoll_pwait2, ep, &ev, 1, &ts, NULL, 8);
    printf("epoll_pwait2 50 ms: %d waited %d\n", n, now() - t0 >= 0.04);
    struct timespec bad = {0, 2000000000};
    errno = 0; check_err(syscall(SYS_epoll_pwait2, ep, &ev, 1, &bad, NULL, 8), EINVAL,
                         "epoll_pwait2 bad timespec");
    struct timespec neg = {-1, 0};
    errno = 0; check_err(syscall(SYS_epoll_pwait2, ep, &ev, 1, &neg, NULL, 8), EINVAL,
                         "epoll_pwait2 negative timespec");
    errno = 0; check_err(syscall(SYS_epoll_pwait2, ep, &ev, 1, BADPTR, NULL, 8), EFAULT,
                         "epoll_pwait2 bad timespec pointer");
    write(p[1], "x", 1);
    memset(&ev, 0, sizeof ev);
    n = syscall(SYS_epoll_pwait2, ep, &ev, 1, NULL, NULL, 8);
    printf("epoll_pwait2 no timeout, ready: %d 0x%x %llu\n", n, ev.events, (unsigned long long)ev.data.u64);
    n = epoll_wait(ep, &ev, 1, -1);
    printf("epoll_wait -1, ready: %d\n", n);
    close(p[0]);
    close(p[1]);
    close(ep);
}

static void nested(void)
{
    int outer = epoll_create1(0), inner = epoll_create1(0);
    int p[2];
    pipe(p);
    ctl(inner, EPOLL_CTL_ADD, p[0], EPOLLIN, 1);
    check(ctl(outer, EPOLL_CTL_ADD, inner, EPOLLIN | EPOLLOUT, 2) == 0, "ADD an epoll fd");
    show("outer, inner empty", outer, 8);
    struct pollfd pf = {inner, POLLIN | POLLOUT, 0};
    int n;
    n = poll(&pf, 1, 0);
    printf("poll inner: %d 0x%x\n", n, pf.revents);
    write(p[1], "x", 1);
    show("outer, inner ready", outer, 8);
    show("outer again (LT)", outer, 8);
    pf.revents = 0;
    n = poll(&pf, 1, 0);
    printf("poll inner: %d 0x%x\n", n, pf.revents);
    fd_set rs, ws;
    FD_ZERO(&rs); FD_ZERO(&ws);
    FD_SET(inner, &rs); FD_SET(inner, &ws);
    struct timeval tv = {0, 0};
    n = select(inner + 1, &rs, &ws, NULL, &tv);
    printf("select inner: %d read %d write %d\n", n, FD_ISSET(inner, &rs), FD_ISSET(inner, &ws));
    show("inner", inner, 8);
    char c;
    read(p[0], &c, 1);
    show("outer, inner drained", outer, 8);
    ctl(outer, EPOLL_CTL_MOD, inner, EPOLLIN | EPOLLET, 3);
    write(p[1], "y", 1);
    show("outer ET", outer, 8);
    show("outer ET again", outer, 8);
    write(p[1], "z", 1);
    show("outer ET after another write", outer, 8);
    read(p[0], &c, 1);
    read(p[0], &c, 1);
    errno = 0; check_err(ctl(inner, EPOLL_CTL_ADD, outer, EPOLLIN, 4), ELOOP, "a loop");
    /* a chain e[0] <- e[1] <- ... : which link is refused */
    int e[8];
    for (int i = 0; i < 8; i++)
        e[i] = epoll_create1(0);
    ctl(e[0], EPOLL_CTL_ADD, p[0], EPOLLIN, 0);
    for (int i = 1; i < 8; i++) {
        int r = ctl(e[i], EPOLL_CTL_ADD, e[i - 1], EPOLLIN, i);
        printf("chain link %d: %d %s\n", i, r, r < 0 ? ELOOP_NAME(errno) : "");
    }
    /* the other way round: putting an existing chain under a new top */
    int f[8];
    for (int i = 0; i < 8; i++)
        f[i] = epoll_create1(0);
    for (int i = 6; i >= 0; i--) {
        int r = ctl(f[i], EPOLL_CTL_ADD, f[i + 1], EPOLLIN, i);
        printf("chain from the bottom %d: %d %s\n", i, r, r < 0 ? ELOOP_NAME(errno) : "");
    }
    write(p[1], "w", 1);
    for (int i = 0; i < 5; i++) {
        char label[32];
        snprintf(label, sizeof label, "chain level %d", i);
        show(label, e[i], 8);
    }
    for (int i = 0; i < 8; i++) {
        close(e[i]);
        close(f[i]);
    }
    close(p[0]);
    close(p[1]);
    close(inner);
    show("outer after inner closed", outer, 8);
    close(outer);
}

static void masked_waits(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;            /* epoll_wait is never restarted anyway */
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t both, none, only1;
    sigemptyset(&none);
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGUSR2);
    sigemptyset(&only1);
    sigaddset(&only1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &both, NULL);
    int ep = epoll_create1(0);
    int p[2];
    pipe(p);
    ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1);
    struct epoll_event ev;

    raise(SIGUSR1);
    double t0 = now();
    errno = 0;
    int n = epoll_pwait(ep, &ev, 1, 2000, &none);
    printf("epoll_pwait unblocking a pending signal: %d %s quick %d handler %d usr2 blocked in it %d\n",
           n, n < 0 ? errname(errno) : "-", now() - t0 < 1, usr1_calls, usr2_blocked_in_handler);
    printf("after: usr1 blocked %d usr2 blocked %d usr1 pending %d\n",
           blocked(SIGUSR1), blocked(SIGUSR2), pending(SIGUSR1));

    raise(SIGUSR1);
    n = epoll_pwait(ep, &ev, 1, 0, &none);
    printf("epoll_pwait timeout 0 with it pending: %d handler %d pending %d\n", n, usr1_calls,
           pending(SIGUSR1));
    n = epoll_pwait(ep, &ev, 1, 30, &only1);
    printf("epoll_pwait keeping it blocked: %d handler %d pending %d\n", n, usr1_calls, pending(SIGUSR1));
    write(p[1], "x", 1);
    n = epoll_pwait(ep, &ev, 1, 2000, &none);
    printf("epoll_pwait with data ready: %d handler %d pending %d\n", n, usr1_calls, pending(SIGUSR1));
    read(p[0], &n, 1);

    raise(SIGUSR1);
    struct timespec ts = {2, 0};
    t0 = now();
    errno = 0;
    n = syscall(SYS_epoll_pwait2, ep, &ev, 1, &ts, &none, 8);
    printf("epoll_pwait2 unblocking it: %d %s quick %d handler %d\n", n, n < 0 ? errname(errno) : "-",
           now() - t0 < 1, usr1_calls);
    printf("after epoll_pwait2: usr1 blocked %d usr2 blocked %d\n", blocked(SIGUSR1), blocked(SIGUSR2));
    errno = 0; check_err(syscall(SYS_epoll_pwait2, ep, &ev, 1, &ts, &none, 4), EINVAL,
                         "epoll_pwait2 bad sigsetsize");
    errno = 0; check_err(epoll_pwait(ep, &ev, 1, 0, BADPTR), EFAULT, "epoll_pwait bad sigmask");

    /* a default-ignored signal, blocked and pending, unblocked by the mask */
    signal(SIGURG, SIG_DFL);
    sigset_t urg;
    sigemptyset(&urg);
    sigaddset(&urg, SIGURG);
    sigprocmask(SIG_BLOCK, &urg, NULL);
    raise(SIGURG);
    errno = 0;
    n = epoll_pwait(ep, &ev, 1, 50, &none);
    printf("epoll_pwait over an ignored signal: %d %s urg pending %d\n", n, n < 0 ? errname(errno) : "-",
           pending(SIGURG));
    sigprocmask(SIG_UNBLOCK, &both, NULL);
    sigprocmask(SIG_UNBLOCK, &urg, NULL);
    close(p[0]);
    close(p[1]);
    close(ep);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    creation();
    ctl_errors();
    level_triggered();
    edge_triggered();
    oneshot();
    order_and_close();
    timeouts();
    nested();
    masked_waits();
    return finish();
}
