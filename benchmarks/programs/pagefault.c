/*
 * Page-fault cost: mmap 256 MiB, write one byte per 4 KiB page, munmap;
 * repeat argv[1] times. Prints "pagefault R x 65536 pages ok".
 */
#include "bench.h"
#include <sys/mman.h>

#define SIZE (256UL << 20)
#define PAGE 4096UL

int main(int argc, char **argv)
{
    long rounds = arg_count(argc, argv, 1);
    for (long r = 0; r < rounds; r++) {
        volatile unsigned char *p = map_touched(SIZE);
        if (!p)
            return 1;
        unsigned long bad = 0;
        for (unsigned long off = 0; off < SIZE; off += PAGE)
            bad += p[off] != (unsigned char)(off >> 12);
        munmap((void *)p, SIZE);
        if (bad) {
            printf("pagefault round %ld: %lu bad pages\n", r, bad);
            return 1;
        }
    }
    printf("pagefault %ld x %lu pages ok\n", rounds, SIZE / PAGE);
    return 0;
}
