/*
 * mremap: grow (in place or moved), move to a fixed address, shrink; data is
 * preserved every time, new tails read zero, the old range is gone after a
 * move. Error cases: EINVAL for bad flags and unaligned addresses, ENOMEM
 * when growing in place is impossible and moving is not allowed.
 */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>

#ifndef MREMAP_MAYMOVE
#define MREMAP_MAYMOVE 1
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PG 4096UL

static long raw_mremap(void *old, size_t oldlen, size_t newlen, int flags, void *new)
{
    errno = 0;
    long r = syscall(SYS_mremap, old, oldlen, newlen, flags, new);
    return r == -1 ? -(long)errno : r;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 13 + seed);
}

static int verify(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 13 + seed))
            return 0;
    return 1;
}

static int zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Is [p, p+len) free? Probe with MAP_FIXED_NOREPLACE and undo. */
static int is_free(void *p, size_t len)
{
    void *r = mmap(p, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (r == MAP_FAILED)
        return 0;
    munmap(r, len);
    return r == p;
}

int main(void)
{
    /* reserve a 64-page window so moves have a known free destination */
    unsigned char *win = mmap(NULL, 64 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (win == MAP_FAILED) {
        printf("cannot reserve a window\n");
        return 1;
    }
    munmap(win, 64 * PG);

    /* 1. grow in place: the pages after it are free */
    unsigned char *p = mmap(win, 4 * PG, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    fill(p, 4 * PG, 1);
    long r = raw_mremap(p, 4 * PG, 8 * PG, 0, NULL);
    check(r == (long)(uintptr_t)p, "grow in place without MAYMOVE keeps the address");
    check(verify(p, 4 * PG, 1), "grow in place preserves data");
    check(zero(p + 4 * PG, 4 * PG), "grown tail reads zero");
    fill(p + 4 * PG, 4 * PG, 2);

    /* 2. shrink: same address, the tail is unmapped */
    r = raw_mremap(p, 8 * PG, 3 * PG, 0, NULL);
    check(r == (long)(uintptr_t)p, "shrink keeps the address");
    check(verify(p, 3 * PG, 1), "shrink preserves data");
    check(is_free(p + 3 * PG, 5 * PG), "shrunk tail is unmapped");

    /* 3. grow blocked by a neighbour: ENOMEM without MAYMOVE, moves with it */
    unsigned char *blocker = mmap(p + 3 * PG, PG, PROT_READ,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    check(blocker == p + 3 * PG, "place a neighbour after the mapping");
    r = raw_mremap(p, 3 * PG, 6 * PG, 0, NULL);
    printf("grow into a neighbour without MAYMOVE -> %s", errname(-r));
    check(r == -ENOMEM, "");
    r = raw_mremap(p, 3 * PG, 6 * PG, MREMAP_MAYMOVE, NULL);
    unsigned char *moved = (unsigned char *)r;
    check(r > 0 && moved != p, "grow with MAYMOVE moves the mapping");
    if (r > 0) {
        check(verify(moved, 3 * PG, 1), "moved mapping preserves data");
        check(zero(moved + 3 * PG, 3 * PG), "moved mapping's new tail reads zero");
        check(is_free(p, 3 * PG), "old range is unmapped after the move");
        p = moved;
    }
    munmap(blocker, PG);

    /* 4. MREMAP_FIXED: move to a chosen address inside the window */
    unsigned char *dst = win + 32 * PG;
    fill(p, 6 * PG, 3);
    r = raw_mremap(p, 6 * PG, 6 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    check(r == (long)(uintptr_t)dst, "MREMAP_FIXED moves to the requested address");
    check(verify(dst, 6 * PG, 3), "MREMAP_FIXED preserves data");
    check(is_free(p, 6 * PG), "source range is unmapped after MREMAP_FIXED");
    p = dst;

    /* 5. errors */
    r = raw_mremap(p, 6 * PG, 8 * PG, 0x80, NULL);
    printf("mremap(bad flags) -> %s", errname(-r));
    check(r == -EINVAL, "");
    r = raw_mremap(p + 1, PG, 2 * PG, MREMAP_MAYMOVE, NULL);
    printf("mremap(unaligned old address) -> %s", errname(-r));
    check(r == -EINVAL, "");
    r = raw_mremap(p, 6 * PG, 6 * PG, MREMAP_FIXED, win);
    printf("mremap(FIXED without MAYMOVE) -> %s", errname(-r));
    check(r == -EINVAL, "");
    r = raw_mremap(p, 6 * PG, 0, MREMAP_MAYMOVE, NULL);
    printf("mremap(new length 0) -> %s", errname(-r));
    check(r == -EINVAL, "");
    r = raw_mremap(win + 60 * PG, PG, 2 * PG, MREMAP_MAYMOVE, NULL);
    printf("mremap(unmapped old range) -> %s", errname(-r));
    check(r == -EFAULT, "");

    check(munmap(p, 6 * PG) == 0, "munmap the final mapping");
    return finish();
}
