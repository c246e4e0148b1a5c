/*
 * futex without other threads: WAKE with no waiters returns 0, WAIT on a
 * mismatched value gives EAGAIN, WAIT with a timeout gives ETIMEDOUT after
 * at least the timeout, plus the error cases.
 */
#include "common.h"
#include <stdint.h>
#include <time.h>

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAIT_BITSET 9
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256

static long futex(void *uaddr, int op, uint32_t val, const struct timespec *ts, void *uaddr2, uint32_t val3)
{
    return syscall(SYS_futex, uaddr, op, val, ts, uaddr2, val3);
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(void)
{
    static uint32_t word = 7;

    printf("FUTEX_WAKE no waiters -> %ld\n", futex(&word, FUTEX_WAKE, 1, NULL, NULL, 0));
    printf("FUTEX_WAKE private no waiters -> %ld\n",
           futex(&word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 100, NULL, NULL, 0));

    errno = 0;
    check_err(futex(&word, FUTEX_WAIT, 8, NULL, NULL, 0), EAGAIN, "FUTEX_WAIT mismatched value");
    errno = 0;
    check_err(futex(&word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0, NULL, NULL, 0), EAGAIN,
              "FUTEX_WAIT private mismatched value");

    struct timespec ts = {0, 20000000L};
    long long t0 = now_ns();
    errno = 0;
    long r = futex(&word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 7, &ts, NULL, 0);
    int e = errno;
    long long t1 = now_ns();
    errno = e;
    check_err(r, ETIMEDOUT, "FUTEX_WAIT 20ms timeout");
    printf("waited >= 20ms %s\n", t1 - t0 >= 20000000LL ? "yes" : "no");

    /* WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline */
    struct timespec abs;
    long long dl = now_ns() + 10000000LL;
    abs.tv_sec = dl / 1000000000LL;
    abs.tv_nsec = dl % 1000000000LL;
    errno = 0;
    r = futex(&word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 7, &abs, NULL, 0xffffffff);
    e = errno;
    t1 = now_ns();
    errno = e;
    check_err(r, ETIMEDOUT, "FUTEX_WAIT_BITSET absolute deadline");
    printf("woke after the deadline %s\n", t1 >= dl ? "yes" : "no");

    /* errors */
    struct timespec badts = {0, 1000000000L};
    errno = 0;
    check_err(futex(&word, FUTEX_WAIT, 7, &badts, NULL, 0), EINVAL, "FUTEX_WAIT(tv_nsec 1e9)");
    errno = 0;
    check_err(futex((char *)&word + 1, FUTEX_WAIT, 7, &ts, NULL, 0), EINVAL, "FUTEX_WAIT(unaligned)");
    errno = 0;
    check_err(futex((void *)8, FUTEX_WAIT, 7, &ts, NULL, 0), EFAULT, "FUTEX_WAIT(unmapped address)");
    errno = 0;
    check_err(futex(&word, FUTEX_WAIT, 7, BADPTR, NULL, 0), EFAULT, "FUTEX_WAIT(bad timeout pointer)");
    errno = 0;
    check_err(futex(&word, FUTEX_WAIT_BITSET, 7, &ts, NULL, 0), EINVAL, "FUTEX_WAIT_BITSET(bitset 0)");
    errno = 0;
    check_err(futex(&word, 99, 0, NULL, NULL, 0), ENOSYS, "futex(op 99)");
    return finish();
}
