/*
 * timerfd: creation and settime errors, one-shot, periodic and TFD_TIMER_ABSTIME
 * timers, expiration counts on read, blocking and non-blocking reads, a read
 * interrupted by a signal (EINTR, or restarted under SA_RESTART), readiness in
 * poll, select and epoll (a blocked epoll_wait woken by an expiry), and the
 * /proc/self/fdinfo lines.  Only relations and counts are printed.
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/timerfd.h>

#define MS 1000000LL
#ifndef TFD_TIMER_CANCEL_ON_SET
#define TFD_TIMER_CANCEL_ON_SET 2
#endif

static volatile int hits;

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static long long now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return ns(t);
}

static int arm(int fd, int flags, long long value, long long interval, struct itimerspec *old)
{
    struct itimerspec it = {{interval / 1000000000, interval % 1000000000},
                            {value / 1000000000, value % 1000000000}};
    return timerfd_settime(fd, flags, &it, old);
}

static void sleep_ns(long long n)
{
    struct timespec t = {n / 1000000000, n % 1000000000};
    while (nanosleep(&t, &t) == -1 && errno == EINTR) {}
}

static long long ticks(int fd)
{
    uint64_t n = 0;
    if (read(fd, &n, sizeof n) != sizeof n)
        return -errno;
    return (long long)n;
}

static void show_fdinfo(int fd)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("fdinfo: %s\n", errname(errno));
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "mnt_id:", 7) || !strncmp(line, "ino:", 4))
            continue;
        if (!strncmp(line, "it_value:", 9))
            printf("it_value: %s\n", strstr(line, "(0, 0)") ? "zero" : "nonzero");
        else
            printf("%s", line);
    }
    fclose(f);
}

static void on_alarm(int s) { (void)s; hits++; }

static void errors(void)
{
    errno = 0; check_err(timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0), EINVAL, "timerfd on a CPU clock");
    errno = 0; check_err(timerfd_create(CLOCK_MONOTONIC_RAW, 0), EINVAL, "timerfd on MONOTONIC_RAW");
    errno = 0; check_err(timerfd_create(CLOCK_MONOTONIC, 1), EINVAL, "timerfd_create flags 1");
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec it = {{0, 0}, {0, 1000000000}};
    errno = 0; check_err(timerfd_settime(fd, 0, &it, NULL), EINVAL, "settime nsec 1e9");
    it.it_value.tv_nsec = 0;
    errno = 0; check_err(timerfd_settime(fd, 4, &it, NULL), EINVAL, "settime flags 4");
    errno = 0; check_err(syscall(SYS_timerfd_settime, fd, 0, BADPTR, NULL), EFAULT, "settime bad pointer");
    errno = 0; check_err(timerfd_settime(999, 0, &it, NULL), EBADF, "settime bad fd");
    int p[2];
    pipe(p);
    errno = 0; check_err(timerfd_settime(p[0], 0, &it, NULL), EINVAL, "settime on a pipe");
    errno = 0; check_err(timerfd_gettime(p[0], &it), EINVAL, "gettime on a pipe");
    errno = 0; check_err(syscall(SYS_timerfd_gettime, fd, BADPTR), EFAULT, "gettime bad pointer");
    close(p[0]);
    close(p[1]);
    char small[4];
    errno = 0; check_err(read(fd, small, sizeof small), EINVAL, "read of 4 bytes");
    errno = 0; check_err(read(fd, &it, 8), EAGAIN, "read before expiry (O_NONBLOCK)");
    errno = 0; check_err(write(fd, "12345678", 8), EINVAL, "write");
    printf("lseek: %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    struct stat st;
    fstat(fd, &st);
    printf("st_mode %o, F_GETFL %o\n", (unsigned)st.st_mode, (unsigned)fcntl(fd, F_GETFL));
    char link[64], path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("link: %s\n", link);
    close(fd);
}

static void counting(void)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec cur;
    timerfd_gettime(fd, &cur);
    check(!ns(cur.it_value) && !ns(cur.it_interval), "a new timerfd is disarmed");
    long long t0 = now(CLOCK_MONOTONIC);
    arm(fd, 0, 20 * MS, 0, NULL);
    long long n = ticks(fd);
    printf("one-shot: blocking read gives %lld after >= 20 ms %s\n", n,
           now(CLOCK_MONOTONIC) - t0 >= 20 * MS ? "yes" : "no");
    arm(fd, 0, 10 * MS, 10 * MS, NULL);
    sleep_ns(55 * MS);
    n = ticks(fd);
    printf("periodic 10 ms, read after 55 ms: 4..6 expirations %s\n", n >= 4 && n <= 6 ? "yes" : "no");
    timerfd_gettime(fd, &cur);
    check(ns(cur.it_value) > 0 && ns(cur.it_value) <= 10 * MS && ns(cur.it_interval) == 10 * MS,
          "gettime after a read");
    sleep_ns(35 * MS);
    timerfd_gettime(fd, &cur);            /* forwards the timer and keeps the count */
    n = ticks(fd);
    printf("gettime keeps the count: 3..4 %s\n", n >= 3 && n <= 4 ? "yes" : "no");
    struct itimerspec old;
    arm(fd, 0, 0, 0, &old);
    check(ns(old.it_interval) == 10 * MS && ns(old.it_value) <= 10 * MS, "settime returns the old setting");
    timerfd_gettime(fd, &cur);
    check(!ns(cur.it_value), "disarmed");
    arm(fd, 0, 0, 5 * MS, NULL);
    timerfd_gettime(fd, &cur);
    check(!ns(cur.it_value) && ns(cur.it_interval) == 5 * MS, "value 0 keeps the interval, unarmed");
    /* absolute */
    long long target = now(CLOCK_MONOTONIC) + 30 * MS;
    arm(fd, TFD_TIMER_ABSTIME, target, 0, NULL);
    n = ticks(fd);
    check(n == 1 && now(CLOCK_MONOTONIC) >= target, "TFD_TIMER_ABSTIME: not early");
    int rfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    arm(rfd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, now(CLOCK_REALTIME) - 1000 * MS, 0, NULL);
    struct pollfd p = {rfd, POLLIN, 0};
    int r = poll(&p, 1, 1000);
    printf("absolute time in the past: poll %d revents %x", r, p.revents);
    printf(", ticks %lld\n", ticks(rfd));
    show_fdinfo(rfd);
    arm(rfd, 0, 3600000 * MS, 2 * MS, NULL);
    show_fdinfo(rfd);
    close(rfd);
    /* a signal during a blocking read: EINTR, or the read goes on under SA_RESTART */
    set_handler(SIGALRM, on_alarm, 0);
    arm(fd, 0, 3600000 * MS, 0, NULL);
    alarm(0);
    struct itimerval a = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &a, NULL);
    n = ticks(fd);
    printf("blocking read and a signal: %s\n", n < 0 ? errname((int)-n) : "ticks");
    set_handler(SIGALRM, on_alarm, SA_RESTART);
    hits = 0;
    arm(fd, 0, 60 * MS, 0, NULL);
    setitimer(ITIMER_REAL, &a, NULL);
    n = ticks(fd);
    printf("SA_RESTART: the read goes on, %lld expiration after %d signal\n", n, hits);
    close(fd);
}

static void readiness(void)
{
    int fd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
    struct pollfd p = {fd, POLLIN | POLLOUT, 0};
    printf("poll before: %d\n", poll(&p, 1, 0));
    arm(fd, 0, 20 * MS, 0, NULL);
    int r = poll(&p, 1, 2000);
    printf("poll waiting: %d revents %x\n", r, p.revents);
    p.events = POLLRDNORM;
    printf("POLLRDNORM alone: %d\n", poll(&p, 1, 0));
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(fd, &rs);
    struct timeval tv = {0, 0};
    printf("select: %d\n", select(fd + 1, &rs, NULL, NULL, &tv));
    ticks(fd);
    FD_SET(fd, &rs);
    printf("select after the read: %d\n", select(fd + 1, &rs, NULL, NULL, &tv));
    int ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN | EPOLLET, {.u64 = 77}}, out[2];
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    printf("epoll before: %d\n", epoll_wait(ep, out, 2, 0));
    arm(fd, 0, 10 * MS, 10 * MS, NULL);
    r = epoll_wait(ep, out, 2, 2000);
    printf("epoll_wait woken: %d, data %llu, events %x\n", r, (unsigned long long)out[0].data.u64,
           out[0].events);
    ticks(fd);
    r = epoll_wait(ep, out, 2, 2000);
    printf("edge-triggered, next expiry: %d\n", r);
    arm(fd, 0, 0, 0, NULL);
    ticks(fd);
    printf("disarmed: epoll %d\n", epoll_wait(ep, out, 2, 30));
    close(ep);
    close(fd);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    errors();
    counting();
    readiness();
    return finish();
}
