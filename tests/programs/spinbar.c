/*
 * 24 threads that spin in user code until all of them have arrived: every one must run
 * at once (on KVM each holds a vCPU while it spins, so the pool must not run dry first).
 * With argument "forever" they go on spinning once all have arrived (for timeout and kill
 * tests: tests/security/test_thread_limits.py).
 */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

#define N 24
static atomic_int arrived;
static int forever;

static void *arrive(void *arg)
{
    atomic_fetch_add(&arrived, 1);
    while (atomic_load(&arrived) < N || forever)
        ;
    return arg;
}

int main(int argc, char **argv)
{
    pthread_t t[N];
    forever = argc > 1 && !strcmp(argv[1], "forever");
    if (forever) {
        for (long i = 0; i < N; i++)
            pthread_create(&t[i], NULL, arrive, (void *)i);
        while (atomic_load(&arrived) < N)
            ;
        printf("spinning\n");
        fflush(stdout);
        for (;;)
            pause();
    }
    for (long i = 1; i < N; i++)
        pthread_create(&t[i], NULL, arrive, (void *)i);
    arrive(NULL);
    long sum = 0;
    for (int i = 1; i < N; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (long)r;
    }
    check(sum == (long)N * (N - 1) / 2, "%d threads spinning until all arrived", N);
    return finish();
}
