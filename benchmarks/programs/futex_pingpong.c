/*
 * Two threads hand a token back and forth argv[1] times through raw futexes (WAIT until
 * the word changes, WAKE the other): each round trip is two waits and two wakes.
 */
#include "bench.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_int turn;       /* 0: main's turn, 1: the other's */
static long rounds;

static void wait_for(int want)
{
    int v;
    while ((v = atomic_load(&turn)) != want)
        syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void give(int to)
{
    atomic_store(&turn, to);
    syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *other(void *arg)
{
    for (long i = 0; i < rounds; i++) {
        wait_for(1);
        give(0);
    }
    return arg;
}

int main(int argc, char **argv)
{
    rounds = arg_count(argc, argv, 1000);
    pthread_t t;
    pthread_create(&t, NULL, other, NULL);
    for (long i = 0; i < rounds; i++) {
        give(1);
        wait_for(0);
    }
    pthread_join(t, NULL);
    printf("round trips %ld\n", rounds);
    return 0;
}
