/*
 * Creates threads that sleep until it has made argv[1] of them or pthread_create fails,
 * then says which, and ends them all with exit_group.  Under a pids limit the failure is
 * EAGAIN after limit-1 threads (the first thread counts).
 */
#include "common.h"
#include <pthread.h>

static void *sleeper(void *arg)
{
    for (;;)
        pause();
    return arg;
}

int main(int argc, char **argv)
{
    long cap = argc > 1 ? atol(argv[1]) : 100;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    long n = 0;
    int err = 0;
    for (; n < cap; n++) {
        pthread_t t;
        err = pthread_create(&t, &a, sleeper, NULL);
        if (err)
            break;
    }
    if (err)
        printf("created %ld, then %s\n", n, errname(err));
    else
        printf("created %ld (cap)\n", n);
    return 0;
}
