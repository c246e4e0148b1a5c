/*
 * mmtail: issue 7's reduction of "the tail of a large mapping is not mapped".
 * Six rounds of: mmap just past the eager-population limit (64 MiB + 4 KiB),
 * touch the last page first, fill the whole mapping, check it, munmap.  Each
 * round natively gets the same address back; the sandbox once killed the 4th
 * round with SIGSEGV at the last page (its repeated-fault guard outlived the
 * munmap).  Prints only what each round saw.
 */
#include "common.h"
#include <sys/mman.h>

#define PG 4096UL

int main(void)
{
    size_t n = (64UL << 20) + PG;
    for (int i = 0; i < 6; i++) {
        unsigned char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("round %d: mmap -> %s\n", i, errname(errno));
            g_failures++;
            continue;
        }
        int fresh = p[0] == 0 && p[n / 2] == 0;
        memset(p + n - PG, 1, PG);
        int tail = p[n - PG] == 1 && p[n - 1] == 1;
        memset(p, 2, n);
        int filled = p[0] == 2 && p[n / 2] == 2 && p[n - PG] == 2 && p[n - 1] == 2;
        check(fresh && tail && filled, "round %d: zero-filled, tail then whole mapping written", i);
        check(munmap(p, n) == 0, "round %d: munmap", i);
    }
    return finish();
}
