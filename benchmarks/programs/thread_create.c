/* Thread create + join, argv[1] times, one after another. */
#include "bench.h"
#include <pthread.h>

static void *nothing(void *arg)
{
    return arg;
}

int main(int argc, char **argv)
{
    long n = arg_count(argc, argv, 100);
    for (long i = 0; i < n; i++) {
        pthread_t t;
        void *r;
        if (pthread_create(&t, NULL, nothing, (void *)i) || pthread_join(t, &r) || (long)r != i) {
            printf("thread %ld failed\n", i);
            return 1;
        }
    }
    printf("threads %ld\n", n);
    return 0;
}
