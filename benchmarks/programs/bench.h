/* Shared argument parsing for the benchmark workloads. */
#ifndef KVMBOX_BENCH_H
#define KVMBOX_BENCH_H
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

/* argv[1] as a positive count, or dflt when absent; exits 2 on garbage. */
static inline long arg_count(int argc, char **argv, long dflt)
{
    if (argc < 2)
        return dflt;
    char *end;
    long n = strtol(argv[1], &end, 0);
    if (*argv[1] == 0 || *end != 0 || n < 0) {
        fprintf(stderr, "usage: %s [COUNT]\n", argv[0]);
        exit(2);
    }
    return n;
}
/* mmap `size` bytes private and anonymous, write one byte per 4 KiB page (the page number);
 * prints why and returns NULL when the mapping fails. */
static inline volatile unsigned char *map_touched(unsigned long size)
{
    volatile unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("mmap %lu MiB failed\n", size >> 20);
        return NULL;
    }
    for (unsigned long off = 0; off < size; off += 4096)
        p[off] = (unsigned char)(off >> 12);
    return p;
}
#endif
