/*
 * signalfd: errors, struct signalfd_siginfo for kill, tgkill, an itimer's SIGALRM
 * and a POSIX timer's signal, several signals in one read (in delivery order),
 * signals outside the mask left pending, signalfd4 on an existing descriptor
 * changing its mask, readiness in poll and epoll, a blocking read woken by a
 * timer and one interrupted by a handled signal, and the fdinfo line.
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/time.h>

#define MS 1000000LL

struct ksigevent {
    union sigval value;
    int signo;
    int notify;
    int tid;
    int pad[11];
};

static volatile int hits;

static void on_sig(int s) { (void)s; hits++; }

static void mask_of(sigset_t *s, int a, int b, int c)
{
    sigemptyset(s);
    if (a) sigaddset(s, a);
    if (b) sigaddset(s, b);
    if (c) sigaddset(s, c);
}

static int take(int fd, struct signalfd_siginfo *si)
{
    ssize_t n = read(fd, si, sizeof *si);
    return n == (ssize_t)sizeof *si ? (int)si->ssi_signo : -errno;
}

static void show(const char *what, struct signalfd_siginfo *si)
{
    printf("%s: signo %u code %d pid mine %d uid mine %d tid %u overrun %u int %d ptr %llu "
           "errno %d\n", what, si->ssi_signo, si->ssi_code, si->ssi_pid == (uint32_t)getpid(),
           si->ssi_uid == (uint32_t)getuid(), si->ssi_code == -2 ? si->ssi_tid : 0,
           si->ssi_overrun, si->ssi_int, (unsigned long long)si->ssi_ptr, si->ssi_errno);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigset_t m, all;
    mask_of(&all, SIGUSR1, SIGUSR2, SIGALRM);
    sigaddset(&all, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &all, NULL);

    mask_of(&m, SIGUSR1, SIGRTMIN, SIGKILL);
    errno = 0; check_err(signalfd(-1, &m, 0x1), EINVAL, "signalfd4 flags 1");
    errno = 0; check_err(syscall(SYS_signalfd4, -1, &m, 4, 0), EINVAL, "sizemask 4");
    errno = 0; check_err(syscall(SYS_signalfd4, -1, BADPTR, 8, 0), EFAULT, "bad mask");
    errno = 0; check_err(signalfd(999, &m, 0), EBADF, "bad descriptor");
    int p[2];
    pipe(p);
    errno = 0; check_err(signalfd(p[0], &m, 0), EINVAL, "a pipe");
    int fd = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    check(fd >= 0, "signalfd");
    struct stat st;
    fstat(fd, &st);
    char link[64], path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("st_mode %o, F_GETFL %o, link %s, lseek %ld\n", (unsigned)st.st_mode,
           (unsigned)fcntl(fd, F_GETFL), link, (long)lseek(fd, 0, SEEK_CUR));
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "sigmask", 7) || !strncmp(line, "flags", 5))
            printf("%s", line);
    if (f)
        fclose(f);

    struct signalfd_siginfo si[4];
    char small[100];
    errno = 0; check_err(read(fd, small, sizeof small), EINVAL, "read of 100 bytes");
    errno = 0; check_err(read(fd, si, sizeof si), EAGAIN, "read with nothing pending");
    errno = 0; check_err(write(fd, si, sizeof si[0]), EINVAL, "write");
    struct pollfd pf = {fd, POLLIN, 0};
    printf("poll with nothing: %d\n", poll(&pf, 1, 0));

    kill(getpid(), SIGUSR1);
    int r = poll(&pf, 1, 0);
    printf("poll after kill: %d revents %x\n", r, pf.revents);
    take(fd, si);
    show("kill", si);
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
    take(fd, si);
    show("tgkill", si);

    /* several at once, in delivery order (lowest number first); SIGUSR2 is not in the mask */
    kill(getpid(), SIGRTMIN);
    kill(getpid(), SIGRTMIN);
    kill(getpid(), SIGUSR2);
    kill(getpid(), SIGUSR1);
    n = read(fd, si, sizeof si);
    printf("one read: %zd records:", n / (ssize_t)sizeof si[0]);
    for (int i = 0; i < n / (ssize_t)sizeof si[0]; i++)
        printf(" %u", si[i].ssi_signo);
    printf("\n");
    sigset_t pend;
    sigpending(&pend);
    printf("SIGUSR2 still pending %d, poll %d\n", sigismember(&pend, SIGUSR2), poll(&pf, 1, 0));

    /* signalfd4 on the same descriptor: only the mask changes */
    mask_of(&m, SIGUSR2, SIGALRM, 0);
    r = signalfd(fd, &m, 0);
    printf("new mask: returns the same fd %d, poll %d\n", r == fd, poll(&pf, 1, 0));
    printf("reads SIGUSR2: %d\n", take(fd, si) == SIGUSR2);
    f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "sigmask", 7))
            printf("%s", line);
    if (f)
        fclose(f);

    /* an itimer's SIGALRM, waited for by a blocking read */
    int bfd = signalfd(-1, &m, 0);
    struct itimerval a = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &a, NULL);
    take(bfd, si);
    show("ITIMER_REAL", si);

    /* a POSIX timer's signal: si_tid, si_overrun, si_value */
    mask_of(&m, SIGRTMIN, 0, 0);
    signalfd(bfd, &m, 0);
    struct ksigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.notify = SIGEV_SIGNAL;
    ev.signo = SIGRTMIN;
    ev.value.sival_int = 31337;
    int id = -1;
    syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &id);
    struct itimerspec it = {{0, 10 * MS}, {0, 10 * MS}};
    syscall(SYS_timer_settime, id, 0, &it, NULL);
    struct timespec wait = {0, 55 * MS};
    nanosleep(&wait, NULL);
    take(bfd, si);
    int overrun = (int)si->ssi_overrun;
    si->ssi_overrun = 0;
    show("POSIX timer", si);
    printf("overrun 3..5 %s, timer_getoverrun agrees %s\n", overrun >= 3 && overrun <= 5 ? "yes" : "no",
           syscall(SYS_timer_getoverrun, id) == overrun ? "yes" : "no");

    /* epoll: a blocked epoll_wait woken by the next expiry */
    int ep = epoll_create1(0);
    struct epoll_event e = {EPOLLIN, {.u64 = 5}}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, bfd, &e);
    r = epoll_wait(ep, &out, 1, 2000);
    printf("epoll_wait: %d data %llu events %x\n", r, (unsigned long long)out.data.u64, out.events);
    it.it_value.tv_nsec = it.it_interval.tv_nsec = 0;
    syscall(SYS_timer_settime, id, 0, &it, NULL);
    syscall(SYS_timer_delete, id);
    printf("after the timer is deleted: epoll %d\n", epoll_wait(ep, &out, 1, 0));

    /* a handled signal outside the mask interrupts a blocking read */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGVTALRM, &sa, NULL);
    struct itimerval v = {{0, 0}, {0, 30000}};
    setitimer(ITIMER_VIRTUAL, &v, NULL);
    mask_of(&m, SIGUSR1, 0, 0);
    int cfd = signalfd(-1, &m, 0);
    struct itimerval rt = {{0, 0}, {0, 100000}};
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    sigprocmask(SIG_BLOCK, &m, NULL);
    sa.sa_handler = on_sig;
    sigaction(SIGALRM, &sa, NULL);
    setitimer(ITIMER_REAL, &rt, NULL);
    errno = 0;
    r = take(cfd, si);
    printf("blocking read, SIGALRM handled: %s, handler ran %d\n", r < 0 ? errname(-r) : "a record", hits);
    close(cfd);
    close(bfd);
    close(fd);
    close(ep);
    return finish();
}
