/*
 * Compute-bound work split over threads: argv[1] threads share 1.6e9 LCG steps (argv[2]
 * scales it, in hundred-millions), no syscalls while they work.  Prints the combined state.
 */
#include "bench.h"
#include <pthread.h>

static long steps;
static unsigned long results[64];

static void *work(void *arg)
{
    long id = (long)arg;
    unsigned long x = (unsigned long)id + 1;
    for (long i = 0; i < steps; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    results[id] = x;
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = arg_count(argc, argv, 1);
    long hundreds = argc > 2 ? atol(argv[2]) : 16;
    if (threads < 1 || threads > 64)
        return 2;
    steps = hundreds * 100000000L / threads;
    pthread_t t[64];
    for (long i = 1; i < threads; i++)
        pthread_create(&t[i], NULL, work, (void *)i);
    work(0);
    unsigned long all = results[0];
    for (long i = 1; i < threads; i++) {
        pthread_join(t[i], NULL);
        all ^= results[i];
    }
    printf("threads %ld state %lx\n", threads, all & 0xff);
    return 0;
}
