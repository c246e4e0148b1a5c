/*
 * 24 threads that spin in user code until all of them have arrived: every one must run
 * at once (on KVM each holds a vCPU while it spins, so the pool must not run dry first).
 */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

#define N 24
static atomic_int arrived;

static void *arrive(void *arg)
{
    atomic_fetch_add(&arrived, 1);
    while (atomic_load(&arrived) < N)
        ;
    return arg;
}

int main(void)
{
    pthread_t t[N];
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
