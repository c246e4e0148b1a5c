/*
 * Clocks and sleeps: clock_gettime on five clocks, clock_getres,
 * gettimeofday, time, nanosleep and clock_nanosleep (relative and
 * TIMER_ABSTIME), getrusage. Only relations are printed, never times.
 */
#include "common.h"
#include <time.h>
#include <sys/time.h>
#include <sys/resource.h>

static long long ns(struct timespec t)
{
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long raw_gettime(clockid_t c, void *ts)
{
    return syscall(SYS_clock_gettime, c, ts);
}

static void rusage(void)
{
    struct rusage self, kids, thread;
    volatile unsigned long spin = 0;
    for (unsigned long i = 0; i < 20000000; i++)
        spin += i;
    check(getrusage(RUSAGE_SELF, &self) == 0, "getrusage self");
    check(getrusage(RUSAGE_THREAD, &thread) == 0, "getrusage thread");
    check(getrusage(RUSAGE_CHILDREN, &kids) == 0, "getrusage children");
    printf("self: maxrss > 0 %d, cpu time > 0 %d, usec < 1e6 %d\n", self.ru_maxrss > 0,
           self.ru_utime.tv_sec + self.ru_utime.tv_usec + self.ru_stime.tv_sec + self.ru_stime.tv_usec > 0,
           self.ru_utime.tv_usec < 1000000 && self.ru_stime.tv_usec < 1000000);
    printf("children (none ran): utime %ld.%06ld maxrss %ld\n", (long)kids.ru_utime.tv_sec,
           (long)kids.ru_utime.tv_usec, kids.ru_maxrss);
    errno = 0; check_err(getrusage(5, &self), EINVAL, "getrusage who=5");
    errno = 0; check_err(syscall(SYS_getrusage, RUSAGE_SELF, (void *)8), EFAULT, "getrusage bad pointer");
}

int main(void)
{
    static const struct {
        clockid_t id;
        const char *name;
    } clocks[] = {
        {CLOCK_REALTIME, "REALTIME"},
        {CLOCK_MONOTONIC, "MONOTONIC"},
        {CLOCK_BOOTTIME, "BOOTTIME"},
        {CLOCK_PROCESS_CPUTIME_ID, "PROCESS_CPUTIME_ID"},
        {CLOCK_THREAD_CPUTIME_ID, "THREAD_CPUTIME_ID"},
    };
    for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        struct timespec a, b, res;
        int r1 = clock_gettime(clocks[i].id, &a);
        /* burn a little CPU so the CPU-time clocks can advance */
        volatile unsigned long x = 0;
        for (int k = 0; k < 100000; k++)
            x += k;
        int r2 = clock_gettime(clocks[i].id, &b);
        check(r1 == 0 && r2 == 0, "clock_gettime %s", clocks[i].name);
        check(a.tv_nsec >= 0 && a.tv_nsec < 1000000000L, "%s tv_nsec in range", clocks[i].name);
        if (clocks[i].id != CLOCK_REALTIME)
            check(ns(b) >= ns(a), "%s non-decreasing", clocks[i].name);
        struct timespec rr;
        long r3 = raw_gettime(clocks[i].id, &rr);
        check(r3 == 0, "raw clock_gettime %s", clocks[i].name);
        check(clock_getres(clocks[i].id, &res) == 0, "clock_getres %s", clocks[i].name);
        printf("%s resolution >0 and <=10ms %s\n", clocks[i].name,
               ns(res) > 0 && ns(res) <= 10000000LL ? "yes" : "no");
    }

    /* monotonic over many reads */
    struct timespec prev, cur;
    clock_gettime(CLOCK_MONOTONIC, &prev);
    int mono_ok = 1;
    for (int i = 0; i < 1000; i++) {
        clock_gettime(CLOCK_MONOTONIC, &cur);
        if (ns(cur) < ns(prev))
            mono_ok = 0;
        prev = cur;
    }
    printf("clock monotonic %s\n", mono_ok ? "ok" : "BACKWARDS");
    struct timespec boot, mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_BOOTTIME, &boot);
    printf("BOOTTIME >= MONOTONIC %s\n", ns(boot) >= ns(mono) ? "yes" : "no");

    /* realtime agrees with time() and gettimeofday() within a day */
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    time_t t = time(NULL);
    time_t t2;
    time(&t2);
    long raw_t = syscall(SYS_time, 0);
    struct timeval tv;
    check(gettimeofday(&tv, NULL) == 0, "gettimeofday");
    long rawtv = syscall(SYS_gettimeofday, &tv, NULL);
    check(rawtv == 0, "raw gettimeofday");
    printf("realtime within a day of time() %s\n", llabs((long long)rt.tv_sec - t) < 86400 ? "yes" : "no");
    printf("raw time within a day of time() %s\n", labs(raw_t - (long)t) < 86400 ? "yes" : "no");
    printf("time(&t) agrees %s\n", llabs((long long)t2 - t) < 86400 ? "yes" : "no");
    printf("gettimeofday within a day of time() %s\n", llabs((long long)tv.tv_sec - t) < 86400 ? "yes" : "no");
    printf("gettimeofday usec in range %s\n", tv.tv_usec >= 0 && tv.tv_usec < 1000000 ? "yes" : "no");
    printf("realtime after 2020 %s\n", t > 1577836800 ? "yes" : "no");

    /* errors: raw syscalls, since the vDSO would fault on a bad pointer */
    struct timespec dummy;
    errno = 0;
    check_err(raw_gettime(12345, &dummy), EINVAL, "clock_gettime(bad clock)");
    errno = 0;
    check_err(raw_gettime(CLOCK_MONOTONIC, BADPTR), EFAULT, "clock_gettime(bad pointer)");
    errno = 0;
    check_err(syscall(SYS_clock_getres, 12345, &dummy), EINVAL, "clock_getres(bad clock)");
    check(syscall(SYS_clock_getres, CLOCK_MONOTONIC, NULL) == 0, "clock_getres(NULL res)");

    /* nanosleep 10 ms */
    struct timespec s0, s1, req = {0, 10000000L};
    clock_gettime(CLOCK_MONOTONIC, &s0);
    check(nanosleep(&req, NULL) == 0, "nanosleep 10ms");
    clock_gettime(CLOCK_MONOTONIC, &s1);
    printf("nanosleep elapsed >= 10ms %s\n", ns(s1) - ns(s0) >= 10000000LL ? "yes" : "no");
    struct timespec bad = {0, 1000000000L};
    errno = 0;
    check_err(syscall(SYS_nanosleep, &bad, NULL), EINVAL, "nanosleep(tv_nsec 1e9)");
    struct timespec neg = {-1, 0};
    errno = 0;
    check_err(syscall(SYS_nanosleep, &neg, NULL), EINVAL, "nanosleep(tv_sec -1)");
    errno = 0;
    check_err(syscall(SYS_nanosleep, BADPTR, NULL), EFAULT, "nanosleep(bad pointer)");

    /* clock_nanosleep relative */
    clock_gettime(CLOCK_MONOTONIC, &s0);
    int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
    clock_gettime(CLOCK_MONOTONIC, &s1);
    check(r == 0, "clock_nanosleep relative 10ms");
    printf("relative elapsed >= 10ms %s\n", ns(s1) - ns(s0) >= 10000000LL ? "yes" : "no");

    /* clock_nanosleep TIMER_ABSTIME, 15 ms ahead */
    struct timespec target;
    clock_gettime(CLOCK_MONOTONIC, &s0);
    long long tns = ns(s0) + 15000000LL;
    target.tv_sec = tns / 1000000000LL;
    target.tv_nsec = tns % 1000000000LL;
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, NULL);
    clock_gettime(CLOCK_MONOTONIC, &s1);
    check(r == 0, "clock_nanosleep TIMER_ABSTIME");
    printf("woke at or after the absolute target %s\n", ns(s1) >= tns ? "yes" : "no");
    /* an absolute time in the past returns at once */
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &s0, NULL);
    check(r == 0, "clock_nanosleep TIMER_ABSTIME in the past");
    /* realtime absolute */
    struct timespec rt0;
    clock_gettime(CLOCK_REALTIME, &rt0);
    rt0.tv_nsec += 5000000L;
    if (rt0.tv_nsec >= 1000000000L) {
        rt0.tv_nsec -= 1000000000L;
        rt0.tv_sec++;
    }
    r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &rt0, NULL);
    check(r == 0, "clock_nanosleep REALTIME TIMER_ABSTIME");
    errno = 0;
    check_err(syscall(SYS_clock_nanosleep, 12345, 0, &req, NULL), EINVAL, "clock_nanosleep(bad clock)");
    errno = 0;
    check_err(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &bad, NULL), EINVAL,
              "clock_nanosleep(tv_nsec 1e9)");

    rusage();
    return finish();
}
