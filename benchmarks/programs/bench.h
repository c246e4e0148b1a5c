/* Shared argument parsing for the benchmark workloads. */
#ifndef KVMBOX_BENCH_H
#define KVMBOX_BENCH_H
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

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
#endif
