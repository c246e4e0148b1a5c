/*
 * Interval timers, POSIX timers and CPU time: setitimer/getitimer/alarm (REAL,
 * VIRTUAL, PROF), timer_create & co. on wall and CPU clocks with SIGEV_SIGNAL,
 * SIGEV_THREAD_ID and SIGEV_NONE, overruns and the siginfo of a timer signal,
 * signals that interrupt blocking calls (EINTR or restart per SA_RESTART),
 * a spin in user mode ended by a timer, times/getrusage/CPU clocks agreeing
 * with each other, a sleep on the process CPU clock, and what an execve keeps
 * (itimers) and drops (POSIX timers).  Only relations and counts are printed.
 * POSIX timers go through raw syscalls: the C libraries' wrappers differ.
 */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/times.h>

#define MS 1000000LL
#define SEV_THREAD_ID 4
#define SI_TIMER_CODE (-2)

struct ksigevent {                 /* the kernel's struct sigevent */
    union sigval value;
    int signo;
    int notify;
    int tid;
    int pad[11];
};

static volatile int hits, rt_hits, spin_stop;
static volatile int last_code;
static volatile long last_value;
static int pipefd[2];

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static long long now(clockid_t c)
{
    struct timespec t;
    syscall(SYS_clock_gettime, c, &t);
    return ns(t);
}

static long long tv_ns(struct timeval v) { return v.tv_sec * 1000000000LL + v.tv_usec * 1000LL; }

static void spin_cpu(long long cpu_ns)
{
    long long end = now(CLOCK_PROCESS_CPUTIME_ID) + cpu_ns;
    while (now(CLOCK_PROCESS_CPUTIME_ID) < end)
        for (volatile int i = 0; i < 1000000; i++) {}    /* mostly user time: few syscalls */
}

static void on_sig(int s) { (void)s; hits++; }
static void on_stop(int s) { (void)s; spin_stop = 1; }

static void on_info(int s, siginfo_t *si, void *uc)
{
    (void)s; (void)uc;
    rt_hits++;
    last_code = si->si_code;
    last_value = si->si_value.sival_int;
}

static void on_third(int s)
{
    (void)s;
    if (++hits == 3)
        write(pipefd[1], "x", 1);
}

static void handle_info(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_info;
    sa.sa_flags = SA_SIGINFO;
    sigaction(sig, &sa, NULL);
}

static void block(int sig, int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(how, &s, NULL);
}

static int set_itimer(int which, long long value, long long interval)
{
    struct itimerval v = {{interval / 1000000000, interval % 1000000000 / 1000},
                          {value / 1000000000, value % 1000000000 / 1000}};
    return setitimer(which, &v, NULL);
}

static void sleep_ns(long long n)
{
    struct timespec t = {n / 1000000000, n % 1000000000};
    while (nanosleep(&t, &t) == -1 && errno == EINTR) {}
}

static long tcreate(clockid_t c, struct ksigevent *ev, int *id)
{
    return syscall(SYS_timer_create, c, ev, id);
}

static long tset(int id, int flags, long long value, long long interval, struct itimerspec *old)
{
    struct itimerspec it = {{interval / 1000000000, interval % 1000000000},
                            {value / 1000000000, value % 1000000000}};
    return syscall(SYS_timer_settime, id, flags, &it, old);
}

static long long tget(int id, long long *interval)
{
    struct itimerspec it;
    if (syscall(SYS_timer_gettime, id, &it))
        return -1;
    if (interval)
        *interval = ns(it.it_interval);
    return ns(it.it_value);
}

static void itimers(void)
{
    struct itimerval v, o;
    check(getitimer(ITIMER_REAL, &v) == 0 && !v.it_value.tv_sec && !v.it_value.tv_usec,
          "ITIMER_REAL starts disarmed");
    set_itimer(ITIMER_REAL, 10000 * MS, 0);
    getitimer(ITIMER_REAL, &v);
    check(tv_ns(v.it_value) > 9900 * MS && tv_ns(v.it_value) <= 10000 * MS && !tv_ns(v.it_interval),
          "getitimer after setitimer 10 s");
    printf("alarm(5) over a 10 s timer returns %u\n", alarm(5));
    printf("alarm(0) returns %u\n", alarm(0));
    check(setitimer(ITIMER_REAL, NULL, &o) == 0 && !tv_ns(o.it_value), "setitimer(NULL) disarms");
    struct itimerval bad = {{0, 0}, {0, 1000000}};
    errno = 0; check_err(setitimer(ITIMER_REAL, &bad, NULL), EINVAL, "setitimer usec 1000000");
    bad.it_value.tv_sec = -1; bad.it_value.tv_usec = 0;
    errno = 0; check_err(setitimer(ITIMER_REAL, &bad, NULL), EINVAL, "setitimer sec -1");
    errno = 0; check_err(syscall(SYS_setitimer, 3, &v, NULL), EINVAL, "setitimer which 3");
    errno = 0; check_err(syscall(SYS_setitimer, ITIMER_REAL, BADPTR, NULL), EFAULT, "setitimer bad value");
    errno = 0; check_err(syscall(SYS_getitimer, 7, &v), EINVAL, "getitimer which 7");
    errno = 0; check_err(syscall(SYS_getitimer, ITIMER_PROF, BADPTR), EFAULT, "getitimer bad pointer");

    /* VIRTUAL: the interval is kept even with a zero value; a new value gets one tick more */
    set_itimer(ITIMER_VIRTUAL, 0, 1000 * MS);
    getitimer(ITIMER_VIRTUAL, &v);
    check(!tv_ns(v.it_value) && tv_ns(v.it_interval) == 1000 * MS, "VIRTUAL value 0 keeps its interval");
    set_itimer(ITIMER_VIRTUAL, 1000 * MS, 0);
    getitimer(ITIMER_VIRTUAL, &v);
    check(tv_ns(v.it_value) > 990 * MS && tv_ns(v.it_value) <= 1050 * MS, "VIRTUAL 1 s reads about 1 s");
    set_itimer(ITIMER_VIRTUAL, 0, 0);

    /* VIRTUAL and PROF fire after that much CPU time, not before */
    for (int which = ITIMER_VIRTUAL; which <= ITIMER_PROF; which++) {
        int sig = which == ITIMER_VIRTUAL ? SIGVTALRM : SIGPROF;
        set_handler(sig, on_sig, 0);
        hits = 0;
        long long c0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
        set_itimer(which, 60 * MS, 0);
        while (!hits && now(CLOCK_MONOTONIC) - w0 < 20000 * MS)
            for (volatile int i = 0; i < 10000; i++) {}
        long long used = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        /* Linux charges itimers a whole tick per tick that finds the process running, so
           on a busy machine they may fire before the precise CPU clock reaches 60 ms */
        printf("%s: fired %d, after >= 30 ms of CPU %s, within 2 s %s\n",
               which == ITIMER_VIRTUAL ? "ITIMER_VIRTUAL" : "ITIMER_PROF", hits,
               used >= 30 * MS ? "yes" : "no", used < 2000 * MS ? "yes" : "no");
    }

    /* a periodic REAL timer: five signals, five returns from pause */
    set_handler(SIGALRM, on_sig, 0);
    hits = 0;
    set_itimer(ITIMER_REAL, 20 * MS, 20 * MS);
    int pauses = 0;
    while (hits < 5 && pauses < 100) {
        pause();
        pauses++;
    }
    set_itimer(ITIMER_REAL, 0, 0);
    printf("periodic ITIMER_REAL: %d signals\n", hits);

    /* blocked: it fires once and waits for the signal to be taken before it runs again */
    hits = 0;
    block(SIGALRM, SIG_BLOCK);
    set_itimer(ITIMER_REAL, 10 * MS, 10 * MS);
    sleep_ns(100 * MS);
    getitimer(ITIMER_REAL, &v);
    sigset_t pend;
    sigpending(&pend);
    printf("blocked: pending %d, value while pending 0 %s, interval kept %s\n",
           sigismember(&pend, SIGALRM), !tv_ns(v.it_value) ? "yes" : "no",
           tv_ns(v.it_interval) == 10 * MS ? "yes" : "no");
    block(SIGALRM, SIG_UNBLOCK);
    int taken = hits;
    getitimer(ITIMER_REAL, &v);
    printf("unblocked: %d signal, running again %s\n", taken, tv_ns(v.it_value) > 0 ? "yes" : "no");
    set_itimer(ITIMER_REAL, 0, 0);
}

static void interrupts(void)
{
    char c;
    pipe(pipefd);
    /* SA_RESTART: a pipe read goes on after each signal; the third one writes a byte */
    set_handler(SIGALRM, on_third, SA_RESTART);
    hits = 0;
    set_itimer(ITIMER_REAL, 20 * MS, 20 * MS);
    long r = read(pipefd[0], &c, 1);
    set_itimer(ITIMER_REAL, 0, 0);
    printf("SA_RESTART read: returned %ld after %d signals\n", r, hits);
    /* without: EINTR at the first */
    set_handler(SIGALRM, on_sig, 0);
    hits = 0;
    set_itimer(ITIMER_REAL, 20 * MS, 0);
    errno = 0;
    check_err(read(pipefd[0], &c, 1), EINTR, "read without SA_RESTART");
    /* nanosleep: EINTR with the time left, even under SA_RESTART */
    for (int flags = 0; flags <= SA_RESTART; flags += SA_RESTART) {
        set_handler(SIGALRM, on_sig, flags);
        struct timespec req = {2, 0}, rem = {0, 0};
        set_itimer(ITIMER_REAL, 30 * MS, 0);
        errno = 0;
        long rr = nanosleep(&req, &rem);
        printf("nanosleep%s: %s, time left in (1.5 s, 2 s) %s\n", flags ? " SA_RESTART" : "",
               rr ? errname(errno) : "0", ns(rem) > 1500 * MS && ns(rem) < 2000 * MS ? "yes" : "no");
    }
    set_handler(SIGALRM, on_sig, SA_RESTART);
    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_sec += 2;
    set_itimer(ITIMER_REAL, 30 * MS, 0);
    printf("clock_nanosleep TIMER_ABSTIME: %s\n",
           errname(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL) ? errno : 0));
    set_itimer(ITIMER_REAL, 30 * MS, 0);
    struct pollfd p = {pipefd[0], POLLIN, 0};
    errno = 0; check_err(poll(&p, 1, 2000), EINTR, "poll under SA_RESTART");
    set_itimer(ITIMER_REAL, 30 * MS, 0);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(pipefd[0], &rs);
    struct timeval tv = {2, 0};
    errno = 0; check_err(select(pipefd[0] + 1, &rs, NULL, NULL, &tv), EINTR, "select under SA_RESTART");
    set_itimer(ITIMER_REAL, 30 * MS, 0);
    errno = 0; check_err(pause(), EINTR, "pause");
    /* a loop in user mode with no syscall, ended by the handler */
    set_handler(SIGALRM, on_stop, 0);
    spin_stop = 0;
    set_itimer(ITIMER_REAL, 50 * MS, 0);
    while (!spin_stop) {}
    printf("user-mode spin ended by SIGALRM\n");
    set_handler(SIGVTALRM, on_stop, 0);
    spin_stop = 0;
    set_itimer(ITIMER_VIRTUAL, 50 * MS, 0);
    while (!spin_stop) {}
    printf("user-mode spin ended by SIGVTALRM\n");
    close(pipefd[0]);
    close(pipefd[1]);
}

static void posix_timers(void)
{
    int id = -1, id2 = -1, id3 = -1;
    check(tcreate(CLOCK_MONOTONIC, NULL, &id) == 0, "timer_create default sigevent");
    printf("first timer id %d\n", id);
    struct ksigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.notify = 3;
    errno = 0; check_err(tcreate(CLOCK_MONOTONIC, &ev, &id2), EINVAL, "sigev_notify 3");
    ev.notify = SIGEV_SIGNAL; ev.signo = 0;
    errno = 0; check_err(tcreate(CLOCK_MONOTONIC, &ev, &id2), EINVAL, "signo 0");
    ev.signo = 65;
    errno = 0; check_err(tcreate(CLOCK_MONOTONIC, &ev, &id2), EINVAL, "signo 65");
    ev.notify = SEV_THREAD_ID; ev.signo = SIGUSR1; ev.tid = (int)syscall(SYS_gettid) + 1000;
    errno = 0; check_err(tcreate(CLOCK_MONOTONIC, &ev, &id2), EINVAL, "SIGEV_THREAD_ID of another thread");
    errno = 0; check_err(tcreate(99, NULL, &id2), EINVAL, "clock 99");
    errno = 0; check_err(tcreate(CLOCK_MONOTONIC_RAW, NULL, &id2), EOPNOTSUPP, "clock MONOTONIC_RAW");
    errno = 0; check_err(tcreate(CLOCK_MONOTONIC, BADPTR, &id2), EFAULT, "bad sigevent");
    errno = 0; check_err(tcreate(CLOCK_MONOTONIC, NULL, BADPTR), EFAULT, "bad timer id pointer");
    check(tcreate(CLOCK_REALTIME, NULL, &id2) == 0, "timer_create after failures");
    printf("ids used up by the failures after validation: %d\n", id2 - id - 1);
    check(syscall(SYS_timer_delete, id2) == 0, "timer_delete");
    errno = 0; check_err(syscall(SYS_timer_delete, id2), EINVAL, "timer_delete twice");
    check(tcreate(CLOCK_BOOTTIME, NULL, &id3) == 0 && id3 == id2 + 1, "ids are not reused");
    syscall(SYS_timer_delete, id3);
    struct itimerspec it = {{0, 0}, {0, 1000000000}};
    errno = 0; check_err(syscall(SYS_timer_settime, id, 0, &it, NULL), EINVAL, "timer_settime nsec 1e9");
    errno = 0; check_err(syscall(SYS_timer_settime, id, 0, NULL, NULL), EINVAL, "timer_settime NULL");
    errno = 0; check_err(syscall(SYS_timer_settime, 12345, 0, &it, NULL), EINVAL, "timer_settime bad id");
    errno = 0; check_err(syscall(SYS_timer_settime, -1, 0, &it, NULL), EINVAL, "timer_settime id -1");
    errno = 0; check_err(syscall(SYS_timer_gettime, 12345, &it), EINVAL, "timer_gettime bad id");
    errno = 0; check_err(syscall(SYS_timer_gettime, id, BADPTR), EFAULT, "timer_gettime bad pointer");
    errno = 0; check_err(syscall(SYS_timer_getoverrun, 12345), EINVAL, "timer_getoverrun bad id");
    syscall(SYS_timer_delete, id);

    /* SIGEV_NONE: nothing is sent, gettime still counts down, a periodic one wraps */
    ev.notify = SIGEV_NONE; ev.signo = 0;
    check(tcreate(CLOCK_MONOTONIC, &ev, &id) == 0, "SIGEV_NONE timer");
    tset(id, 0, 10000 * MS, 0, NULL);
    long long iv, val = tget(id, &iv);
    check(val > 9900 * MS && val <= 10000 * MS && iv == 0, "SIGEV_NONE gettime counts down");
    tset(id, 0, 10 * MS, 10 * MS, NULL);
    sleep_ns(55 * MS);
    val = tget(id, &iv);
    check(val > 0 && val <= 10 * MS && iv == 10 * MS, "periodic SIGEV_NONE wraps");
    tset(id, 0, 1 * MS, 0, NULL);
    sleep_ns(5 * MS);
    printf("expired one-shot SIGEV_NONE reads %lld\n", tget(id, NULL));
    syscall(SYS_timer_delete, id);

    /* SIGEV_SIGNAL, blocked for 10 periods: one signal, the rest are overruns */
    handle_info(SIGRTMIN);
    block(SIGRTMIN, SIG_BLOCK);
    ev.notify = SIGEV_SIGNAL; ev.signo = SIGRTMIN; ev.value.sival_int = 4242;
    check(tcreate(CLOCK_MONOTONIC, &ev, &id) == 0, "SIGEV_SIGNAL timer");
    tset(id, 0, 10 * MS, 10 * MS, NULL);
    sleep_ns(105 * MS);
    sigset_t rtset;
    sigemptyset(&rtset);
    sigaddset(&rtset, SIGRTMIN);
    siginfo_t first;
    sigwaitinfo(&rtset, &first);
    int first_overrun = *(int *)((char *)&first + 20);
    long getoverrun = syscall(SYS_timer_getoverrun, id);
    tset(id, 0, 0, 0, NULL);              /* anything queued after the dequeue is void now */
    struct timespec none = {0, 0};
    errno = 0;
    int again = sigtimedwait(&rtset, &first, &none);
    printf("blocked periodic timer: one signal %s, SI_TIMER %s, si_timerid %s, si_value %d, "
           "si_overrun >= 5 %s, timer_getoverrun agrees %s\n", again < 0 && errno == EAGAIN ? "yes" : "no",
           first.si_code == SI_TIMER_CODE ? "yes" : "no", *(int *)((char *)&first + 16) == id ? "yes" : "no",
           first.si_value.sival_int, first_overrun >= 5 ? "yes" : "no",
           getoverrun == first_overrun ? "yes" : "no");
    rt_hits = 0;
    tset(id, 0, 10 * MS, 10 * MS, NULL);
    block(SIGRTMIN, SIG_UNBLOCK);
    sleep_ns(45 * MS);
    printf("unblocked it runs on: several signals %s, handler sees SI_TIMER %s and si_value %ld\n",
           rt_hits >= 2 ? "yes" : "no", last_code == SI_TIMER_CODE ? "yes" : "no", last_value);
    tset(id, 0, 0, 0, NULL);
    syscall(SYS_timer_delete, id);

    /* a signal queued before the timer is re-set or deleted is dropped */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    ev.signo = SIGRTMIN + 1; ev.value.sival_int = 7;
    tcreate(CLOCK_MONOTONIC, &ev, &id);
    tset(id, 0, 5 * MS, 0, NULL);
    siginfo_t si;
    int got = sigwaitinfo(&set, &si);
    printf("sigwaitinfo: %s, SI_TIMER %s, si_value %d, si_overrun %d\n",
           got == SIGRTMIN + 1 ? "timer signal" : "other", si.si_code == SI_TIMER_CODE ? "yes" : "no",
           si.si_value.sival_int, *(int *)((char *)&si + 20));
    struct timespec zero = {0, 0};
    for (int i = 0; i < 2; i++) {
        tset(id, 0, 5 * MS, 0, NULL);
        sleep_ns(20 * MS);
        sigset_t p;
        sigpending(&p);
        int was = sigismember(&p, SIGRTMIN + 1);
        if (i == 0)
            tset(id, 0, 3600000 * MS, 0, NULL);
        else
            syscall(SYS_timer_delete, id);
        errno = 0;
        int w = sigtimedwait(&set, &si, &zero);
        printf("%s while its signal is pending (%d): then sigtimedwait %s\n",
               i == 0 ? "re-set" : "deleted", was, w < 0 ? errname(errno) : "got it");
    }

    /* absolute CLOCK_REALTIME, and SIGEV_THREAD_ID to this thread */
    ev.notify = SEV_THREAD_ID; ev.tid = (int)syscall(SYS_gettid);
    check(tcreate(CLOCK_REALTIME, &ev, &id) == 0, "SIGEV_THREAD_ID to this thread");
    long long target = now(CLOCK_REALTIME) + 30 * MS;
    tset(id, TIMER_ABSTIME, target, 0, NULL);
    got = sigwaitinfo(&set, &si);
    check(got == SIGRTMIN + 1 && now(CLOCK_REALTIME) >= target, "absolute REALTIME timer, not early");
    printf("expired one-shot reads %lld\n", tget(id, NULL));
    struct itimerspec old;
    tset(id, 0, 10000 * MS, 20 * MS, NULL);
    tset(id, 0, 0, 0, &old);
    check(ns(old.it_value) > 9000 * MS && ns(old.it_interval) == 20 * MS, "timer_settime's old value");
    syscall(SYS_timer_delete, id);
    sigprocmask(SIG_UNBLOCK, &set, NULL);

    /* CPU clocks: the process's, this thread's, and the encoding of clock_getcpuclockid(0) */
    clockid_t cpu_clocks[] = {CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID, -6};
    for (int i = 0; i < 3; i++) {
        set_handler(SIGUSR1, on_stop, 0);
        spin_stop = 0;
        ev.notify = SIGEV_SIGNAL; ev.signo = SIGUSR1;
        check(tcreate(cpu_clocks[i], &ev, &id) == 0, "timer on CPU clock %d", (int)cpu_clocks[i]);
        long long c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        tset(id, 0, 40 * MS, 0, NULL);
        long long w0 = now(CLOCK_MONOTONIC);
        while (!spin_stop && now(CLOCK_MONOTONIC) - w0 < 20000 * MS) {}
        long long used = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        printf("CPU clock %d timer: fired %s, after >= 35 ms of CPU %s\n", (int)cpu_clocks[i],
               spin_stop ? "yes" : "no", used >= 35 * MS ? "yes" : "no");
        syscall(SYS_timer_delete, id);
    }
}

static void cpu_time(void)
{
    struct tms t0, t1;
    struct rusage r0, r1, rt;
    clock_t c0 = times(&t0);
    getrusage(RUSAGE_SELF, &r0);
    long long p0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
    spin_cpu(300 * MS);
    long long th = now(CLOCK_THREAD_CPUTIME_ID), p1 = now(CLOCK_PROCESS_CPUTIME_ID);
    getrusage(RUSAGE_THREAD, &rt);
    getrusage(RUSAGE_SELF, &r1);
    clock_t c1 = times(&t1);
    long long w1 = now(CLOCK_MONOTONIC);
    long long ru = tv_ns(r1.ru_utime) + tv_ns(r1.ru_stime) - tv_ns(r0.ru_utime) - tv_ns(r0.ru_stime);
    long long tk = (long long)(t1.tms_utime + t1.tms_stime - t0.tms_utime - t0.tms_stime) * 10 * MS;
    printf("process CPU clock advanced >= 300 ms %s, <= wall time %s\n", p1 - p0 >= 300 * MS ? "yes" : "no",
           p1 - p0 <= w1 - w0 + 20 * MS ? "yes" : "no");
    printf("getrusage agrees within 30 ms %s\n", llabs(ru - (p1 - p0)) < 30 * MS ? "yes" : "no");
    printf("times() agrees within 30 ms %s, its clock moved %s\n", llabs(tk - (p1 - p0)) < 30 * MS ? "yes" : "no",
           c1 - c0 >= 25 ? "yes" : "no");
    printf("mostly user time %s\n", tv_ns(r1.ru_utime) - tv_ns(r0.ru_utime) > (p1 - p0) / 2 ? "yes" : "no");
    printf("thread clock <= process clock %s, RUSAGE_THREAD <= RUSAGE_SELF %s\n", th <= p1 ? "yes" : "no",
           tv_ns(rt.ru_utime) + tv_ns(rt.ru_stime) <= tv_ns(r1.ru_utime) + tv_ns(r1.ru_stime) + 1000 ? "yes" : "no");
    printf("no children: %ld %ld\n", (long)t1.tms_cutime, (long)t1.tms_cstime);
    struct timespec res;
    check(syscall(SYS_clock_getres, -6, &res) == 0 && ns(res) == 1, "getres of the process SCHED clock");
    check(syscall(SYS_clock_getres, -8, &res) == 0 && ns(res) >= MS, "getres of the process PROF clock");
    long long thread_clock = (~(long long)syscall(SYS_gettid) << 3) | 4 | 2;
    check(now(thread_clock) >= th, "this thread's clock by tid");
    /* a sleep on the process CPU clock advances with CPU time only: a signal ends it */
    set_handler(SIGALRM, on_sig, 0);
    set_itimer(ITIMER_REAL, 50 * MS, 0);
    struct timespec req = {0, 10 * MS}, rem = {0, 0};
    errno = 0;
    long r = syscall(SYS_clock_nanosleep, CLOCK_PROCESS_CPUTIME_ID, 0, &req, &rem);
    printf("sleep on the process CPU clock: %s, time left in (0, 10 ms] %s\n", r ? errname(errno) : "0",
           ns(rem) > 0 && ns(rem) <= 10 * MS ? "yes" : "no");
    errno = 0;
    check_err(syscall(SYS_clock_nanosleep, CLOCK_THREAD_CPUTIME_ID, 0, &req, &rem), EOPNOTSUPP,
              "sleep on CLOCK_THREAD_CPUTIME_ID");
    errno = 0;
    check_err(syscall(SYS_clock_nanosleep, thread_clock, 0, &req, &rem), EINVAL,
              "sleep on this thread's clock by tid");
}

static int after_exec(void)
{
    struct itimerval v;
    getitimer(ITIMER_REAL, &v);
    check(tv_ns(v.it_value) > 0 && tv_ns(v.it_value) <= 10000 * MS, "execve keeps ITIMER_REAL");
    struct itimerspec it;
    errno = 0; check_err(syscall(SYS_timer_gettime, 0, &it), EINVAL, "execve deletes POSIX timers");
    int id = -1;
    tcreate(CLOCK_MONOTONIC, NULL, &id);
    printf("first id after execve %d\n", id);
    set_itimer(ITIMER_REAL, 0, 0);
    return finish();
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "after-exec"))
        return after_exec();
    setvbuf(stdout, NULL, _IOLBF, 0);
    itimers();
    interrupts();
    posix_timers();
    cpu_time();
    fflush(stdout);
    int id;
    tcreate(CLOCK_MONOTONIC, NULL, &id);
    set_itimer(ITIMER_REAL, 10000 * MS, 0);
    char *args[] = {argv[0], "after-exec", NULL};
    execv(argv[0], args);
    printf("execv failed: %s\n", errname(errno));
    return 1;
}
