/*
 * N rounds of mmap(4 pages) + touch + mprotect(read-only) + mprotect(rw)
 * + munmap. Prints "mmap_churn N ok" and a checksum.
 */
#include "bench.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
    long n = arg_count(argc, argv, 10000);
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) {
        unsigned char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("mmap failed at %ld\n", i);
            return 1;
        }
        p[0] = (unsigned char)i;
        p[3 * 4096 + 5] = (unsigned char)(i >> 3);
        if (mprotect(p, 4 * 4096, PROT_READ) || mprotect(p, 4 * 4096, PROT_READ | PROT_WRITE)) {
            printf("mprotect failed at %ld\n", i);
            return 1;
        }
        sum += p[0] + p[3 * 4096 + 5] + p[4096];
        munmap(p, 4 * 4096);
    }
    printf("mmap_churn %ld ok sum %lu\n", n, sum);
    return 0;
}
