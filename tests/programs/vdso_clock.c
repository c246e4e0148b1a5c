/*
 * The vDSO clocks, for tests/syscalls/test_vdso.py:
 *   vdso_clock calls          every vDSO entry once; prints relations only
 *   vdso_clock loop N MS      >= N clock_gettime(MONOTONIC) calls and >= MS ms: never backwards
 *   vdso_clock realtime K     K times: vDSO realtime brackets the raw syscall's within 1 ms
 *   vdso_clock bench N        ns per clock_gettime(MONOTONIC) over N calls
 */
#define _GNU_SOURCE
#include "common.h"
#include <sched.h>
#include <time.h>
#include <sys/time.h>

static long long ns_of(struct timespec t)
{
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return ns_of(t);
}

static long long raw_now(clockid_t c)
{
    struct timespec t;
    syscall(SYS_clock_gettime, c, &t);
    return ns_of(t);
}

static int calls(void)
{
    static const clockid_t ids[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW,
                                    CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME};
    for (unsigned i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        long long a = now(ids[i]), r = raw_now(ids[i]), b = now(ids[i]);
        printf("clock %d: vdso, syscall, vdso within 10ms %s\n", (int)ids[i],
               a - 10000000LL <= r && r <= b + 10000000LL ? "yes" : "no");
    }
    struct timeval tv;
    struct timezone tz = {123, 456};
    check(gettimeofday(&tv, &tz) == 0, "gettimeofday");
    printf("gettimeofday close to realtime %s, tz zero %s\n",
           llabs((long long)tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL - now(CLOCK_REALTIME))
           < 10000000LL ? "yes" : "no", tz.tz_minuteswest == 0 && tz.tz_dsttime == 0 ? "yes" : "no");
    check(gettimeofday(NULL, NULL) == 0, "gettimeofday(NULL, NULL)");
    time_t t1 = time(NULL), t2;
    time(&t2);
    printf("time() agrees %s\n", llabs((long long)t2 - t1) <= 1 ? "yes" : "no");
    printf("sched_getcpu >= 0 %s\n", sched_getcpu() >= 0 ? "yes" : "no");
    /* clocks the vDSO leaves to the kernel */
    struct timespec ts;
    printf("CPUTIME via fallback %s\n", clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0 ? "ok" : "fail");
    printf("TAI via fallback %s\n", clock_gettime(CLOCK_TAI, &ts) == 0 ? "ok" : "fail");
    errno = 0;
    int r = clock_gettime(12345, &ts);
    printf("bad clock: %d %s\n", r, errno == EINVAL ? "EINVAL" : "other");
    return finish();
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "calls"))
        return calls();
    long long n = argc > 2 ? atoll(argv[2]) : 1000;
    if (!strcmp(argv[1], "loop")) {
        long long ms = argc > 3 ? atoll(argv[3]) : 0, calls = 0, back = 0;
        long long start = now(CLOCK_MONOTONIC), prev = start, cur = start;
        while (calls < n || cur - start < ms * 1000000LL) {
            cur = now(CLOCK_MONOTONIC);
            if (cur < prev)
                back++;
            prev = cur;
            calls++;
        }
        printf("calls %lld backwards %lld\n", calls, back);
        return back != 0;
    }
    if (!strcmp(argv[1], "realtime")) {
        long long worst = 0;
        for (long long i = 0; i < n; i++) {
            long long a = now(CLOCK_REALTIME), s = raw_now(CLOCK_REALTIME), b = now(CLOCK_REALTIME);
            long long off = s < a ? a - s : s > b ? s - b : 0;
            if (off > worst)
                worst = off;
            struct timespec req = {0, 30000000L};
            nanosleep(&req, NULL);
        }
        printf("worst realtime offset ns %lld\n", worst);
        return 0;
    }
    if (!strcmp(argv[1], "bench")) {
        struct timespec t;
        long long start = now(CLOCK_MONOTONIC);
        for (long long i = 0; i < n; i++)
            clock_gettime(CLOCK_MONOTONIC, &t);
        long long end = now(CLOCK_MONOTONIC);
        printf("ns_per_call %.1f\n", (double)(end - start) / n);
        return 0;
    }
    fprintf(stderr, "usage: vdso_clock calls|loop N MS|realtime K|bench N\n");
    return 2;
}
