/* clock_gettime(CLOCK_MONOTONIC) N times (vDSO natively). Prints "clock N monotonic ok". */
#include "bench.h"
#include <time.h>

int main(int argc, char **argv)
{
    long n = arg_count(argc, argv, 100000);
    struct timespec prev = {0, 0}, t;
    int ok = 1;
    for (long i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec < prev.tv_sec || (t.tv_sec == prev.tv_sec && t.tv_nsec < prev.tv_nsec))
            ok = 0;
        prev = t;
    }
    printf("clock %ld monotonic %s\n", n, ok ? "ok" : "BACKWARDS");
    return ok ? 0 : 1;
}
