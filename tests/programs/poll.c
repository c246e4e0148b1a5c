/*
 * Readiness: poll/ppoll/select/pselect on pipe ends (empty, with data, full,
 * after the other end closed), a regular file, an eventfd; timeouts that
 * expire; eventfd counter and semaphore semantics; the signal masks of
 * ppoll and pselect6 (a pending signal they unblock interrupts the wait, the
 * handler runs under their mask, and the old mask is back afterwards).
 */
#include "common.h"
#include "sigprobe.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void show(const char *what, int fd, short events)
{
    struct pollfd p = {fd, events, 0};
    int n = poll(&p, 1, 0);
    printf("%s: poll %d revents 0x%x\n", what, n, p.revents);
}

static void masked_waits(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t both, none, only1;
    sigemptyset(&none);
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGUSR2);
    sigemptyset(&only1);
    sigaddset(&only1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &both, NULL);
    int p[2];
    pipe(p);
    struct pollfd w = {p[0], POLLIN, 0};
    struct timespec ts = {2, 0};

    raise(SIGUSR1);
    double t0 = now();
    errno = 0;
    int n = ppoll(&w, 1, &ts, &none);
    printf("ppoll unblocking a pending signal: %d %s quick %d handler %d usr2 blocked in it %d\n",
           n, n < 0 && errno == EINTR ? "EINTR" : "?", now() - t0 < 1, usr1_calls,
           usr2_blocked_in_handler);
    printf("after ppoll: usr1 blocked %d usr2 blocked %d usr1 pending %d\n",
           blocked(SIGUSR1), blocked(SIGUSR2), pending(SIGUSR1));

    raise(SIGUSR1);
    struct timespec zero = {0, 0};
    n = ppoll(&w, 1, &zero, &only1);
    printf("ppoll keeping it blocked: %d handler %d pending %d\n", n, usr1_calls, pending(SIGUSR1));
    write(p[1], "x", 1);
    n = ppoll(&w, 1, &ts, &none);
    printf("ppoll with data ready: %d handler %d pending %d\n", n, usr1_calls, pending(SIGUSR1));
    read(p[0], &n, 1);

    fd_set rs;
    FD_ZERO(&rs); FD_SET(p[0], &rs);
    t0 = now();
    errno = 0;
    n = pselect(p[0] + 1, &rs, NULL, NULL, &ts, &none);
    printf("pselect unblocking it: %d %s quick %d handler %d\n", n,
           n < 0 && errno == EINTR ? "EINTR" : "?", now() - t0 < 1, usr1_calls);
    printf("after pselect: usr1 blocked %d usr2 blocked %d\n", blocked(SIGUSR1), blocked(SIGUSR2));

    /* no handler and default-ignored: the call just goes on (restarts) */
    signal(SIGURG, SIG_DFL);
    sigset_t urg;
    sigemptyset(&urg);
    sigaddset(&urg, SIGURG);
    sigprocmask(SIG_BLOCK, &urg, NULL);
    raise(SIGURG);
    struct timespec short_ts = {0, 50000000};
    errno = 0;
    n = ppoll(&w, 1, &short_ts, &none);
    printf("ppoll over an ignored signal: %d errno %d urg pending %d\n", n, n < 0 ? errno : 0,
           pending(SIGURG));
    sigprocmask(SIG_UNBLOCK, &both, NULL);
    sigprocmask(SIG_UNBLOCK, &urg, NULL);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int p[2];
    pipe(p);
    show("empty read end", p[0], POLLIN);
    show("empty write end", p[1], POLLOUT);
    write(p[1], "abc", 3);
    show("read end with data", p[0], POLLIN | POLLOUT);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    char buf[65536];
    while (write(p[1], buf, sizeof buf) > 0) {}
    show("full write end", p[1], POLLOUT);
    struct pollfd two[3] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}, {-1, POLLIN, 7}};
    printf("poll both %d: 0x%x 0x%x negative fd 0x%x\n", poll(two, 3, 0), two[0].revents, two[1].revents, two[2].revents);
    int shut = dup(0);
    close(shut);
    struct pollfd bad = {shut, POLLIN, 0};
    int nbad = poll(&bad, 1, 0);
    printf("closed fd: %d 0x%x\n", nbad, bad.revents);
    while (read(p[0], buf, sizeof buf) > 0) {}
    close(p[1]);
    show("read end, writer closed", p[0], POLLIN);
    close(p[0]);
    pipe(p);
    close(p[0]);
    show("write end, reader closed", p[1], POLLOUT);
    close(p[1]);

    /* timeouts */
    pipe(p);
    double t0 = now();
    struct pollfd w = {p[0], POLLIN, 0};
    int n = poll(&w, 1, 100);
    double dt = now() - t0;
    printf("poll timeout: %d after >=0.09s %d <2s %d\n", n, dt >= 0.09, dt < 2);
    struct timespec ts = {0, 50000000};
    t0 = now();
    n = ppoll(&w, 1, &ts, NULL);
    printf("ppoll timeout: %d waited %d\n", n, now() - t0 >= 0.04);
    fd_set rs, ws;
    FD_ZERO(&rs); FD_ZERO(&ws);
    FD_SET(p[0], &rs); FD_SET(p[1], &ws);
    struct timeval tv = {0, 0};
    n = select(p[1] + 1, &rs, &ws, NULL, &tv);
    printf("select timeout 0: %d read %d write %d\n", n, FD_ISSET(p[0], &rs), FD_ISSET(p[1], &ws));
    write(p[1], "x", 1);
    FD_ZERO(&rs); FD_SET(p[0], &rs);
    tv.tv_sec = 5;
    n = select(p[0] + 1, &rs, NULL, NULL, &tv);
    printf("select ready: %d read %d\n", n, FD_ISSET(p[0], &rs));
    FD_ZERO(&rs); FD_SET(p[0], &rs);
    struct timespec pts = {0, 30000000};
    read(p[0], buf, 1);
    t0 = now();
    n = pselect(p[0] + 1, &rs, NULL, NULL, &pts, NULL);
    printf("pselect timeout: %d waited %d\n", n, now() - t0 >= 0.02);
    /* A number just closed is surely closed and below 64, so inside every fd
     * table; select(2) silently ignores bits past the table's size, which
     * natively depends on how many fds the parent had open. */
    int gone = dup(0);
    close(gone);
    FD_ZERO(&rs); FD_SET(gone, &rs);
    tv.tv_sec = 0; tv.tv_usec = 0;
    errno = 0; check_err(select(gone + 1, &rs, NULL, NULL, &tv), EBADF, "select on a closed fd");
    errno = 0; check_err(syscall(SYS_poll, BADPTR, 1, 0), EFAULT, "poll bad pointer");
    int f = open("/proc/self/stat", O_RDONLY);
    show("regular file", f, POLLIN | POLLOUT);
    close(f);

    /* eventfd */
    int e = eventfd(3, EFD_NONBLOCK);
    unsigned long long v = 0;
    show("eventfd 3", e, POLLIN | POLLOUT);
    check(read(e, &v, 8) == 8 && v == 3, "read takes the count");
    errno = 0; check_err(read(e, &v, 8), EAGAIN, "empty eventfd");
    show("eventfd 0", e, POLLIN | POLLOUT);
    v = 5;
    write(e, &v, 8);
    write(e, &v, 8);
    check(read(e, &v, 8) == 8 && v == 10, "writes add");
    errno = 0; check_err(read(e, &v, 4), EINVAL, "short read");
    v = ~0ULL;
    errno = 0; check_err(write(e, &v, 8), EINVAL, "write 2^64-1");
    v = ~0ULL - 1;
    check(write(e, &v, 8) == 8, "write up to the maximum");
    show("eventfd at max", e, POLLIN | POLLOUT);
    v = 1;
    errno = 0; check_err(write(e, &v, 8), EAGAIN, "overflowing write");
    close(e);
    e = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
    printf("semaphore reads %d", read(e, &v, 8) == 8 ? (int)v : -1);
    printf(" %d", read(e, &v, 8) == 8 ? (int)v : -1);
    printf(" %d\n", read(e, &v, 8) == 8 ? (int)v : -errno);
    printf("eventfd FD_CLOEXEC %d F_GETFL rdwr|nonblock %d\n", fcntl(e, F_GETFD),
           fcntl(e, F_GETFL) == (O_RDWR | O_NONBLOCK));
    errno = 0; check_err(eventfd(0, 0x40), EINVAL, "eventfd bad flags");
    masked_waits();
    return finish();
}
