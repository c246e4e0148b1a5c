/*
 * The C library's allocator and string routines on large buffers: malloc,
 * calloc, realloc and free over many sizes, including ones above the mmap
 * threshold (128 KiB), and memcpy/memmove/memset/memcmp/strlen on
 * multi-megabyte buffers. Prints checksums of the contents only.
 */
#include "common.h"
#include <stdint.h>

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void pattern(unsigned char *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
}

int main(void)
{
    /* many sizes, small to 4 MiB, all alive at once */
    enum { COUNT = 200 };
    static unsigned char *blocks[COUNT];
    static size_t sizes[COUNT];
    for (int i = 0; i < COUNT; i++) {
        size_t sz = (i % 4 == 3) ? (size_t)(128 * 1024 + i * 4099) /* above the mmap threshold */
                                 : (size_t)(1 + i * i * 3);
        if (i == COUNT - 1)
            sz = 4 << 20;
        sizes[i] = sz;
        blocks[i] = malloc(sz);
        if (!blocks[i]) {
            printf("malloc(%zu) failed\n", sz);
            return 1;
        }
        pattern(blocks[i], sz, i);
    }
    int intact = 1, aligned = 1;
    uint64_t total = 0;
    for (int i = 0; i < COUNT; i++) {
        unsigned char *tmp = malloc(sizes[i]);
        pattern(tmp, sizes[i], i);
        intact &= memcmp(tmp, blocks[i], sizes[i]) == 0;
        free(tmp);
        total += sizes[i];
        aligned &= ((uintptr_t)blocks[i] & 15) == 0;
    }
    printf("allocated %llu bytes in %d blocks\n", (unsigned long long)total, COUNT);
    check(intact, "all blocks kept their contents");
    check(aligned, "all blocks 16-byte aligned");
    for (int i = 0; i < COUNT; i += 2)
        free(blocks[i]);
    for (int i = 0; i < COUNT; i += 2) {
        blocks[i] = malloc(sizes[i]);
        pattern(blocks[i], sizes[i], i + 1000);
    }
    uint64_t h = 0;
    for (int i = 0; i < COUNT; i++)
        h ^= fnv(blocks[i], sizes[i]) + i;
    printf("blocks hash %016llx\n", (unsigned long long)h);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);

    /* calloc is zeroed, small and large, after dirty frees */
    int zero_ok = 1;
    for (size_t sz = 16; sz <= (8u << 20); sz *= 4) {
        unsigned char *d = malloc(sz);
        memset(d, 0xee, sz);
        free(d);
        unsigned char *c = calloc(1, sz);
        for (size_t i = 0; i < sz; i++)
            if (c[i]) {
                zero_ok = 0;
                break;
            }
        free(c);
    }
    check(zero_ok, "calloc returns zeroed memory (16 B .. 4 MiB)");

    /* realloc growth across the mmap threshold keeps the prefix */
    size_t sz = 100;
    unsigned char *r = malloc(sz);
    pattern(r, sz, 7);
    uint64_t before = fnv(r, sz);
    int grow_ok = 1;
    while (sz < (16u << 20)) {
        size_t nsz = sz * 3;
        r = realloc(r, nsz);
        grow_ok &= r != NULL && fnv(r, 100) == before;
        sz = nsz;
    }
    r = realloc(r, 50);
    grow_ok &= r != NULL;
    free(r);
    check(grow_ok, "realloc growth to 16+ MiB keeps the data");

    /* large memcpy / memmove / memset / memcmp / strlen */
    size_t big = 32u << 20;
    unsigned char *src = malloc(big), *dst = malloc(big);
    pattern(src, big, 42);
    memcpy(dst, src, big);
    check(memcmp(src, dst, big) == 0, "memcpy 32 MiB");
    printf("memcpy hash %016llx\n", (unsigned long long)fnv(dst, big));
    memmove(dst + 4097, dst, big - 4097);
    check(memcmp(dst + 4097, src, big - 4097) == 0, "overlapping memmove forward");
    memmove(dst, dst + 4097, big - 4097);
    check(memcmp(dst, src, big - 4097) == 0, "overlapping memmove backward");
    memset(dst, 'a', big - 1);
    dst[big - 1] = 0;
    printf("strlen %zu\n", strlen((char *)dst));
    dst[12345678] = 0;
    printf("strlen after cut %zu\n", strlen((char *)dst));
    char *found = memchr(src, src[big - 10], big);
    check(found != NULL, "memchr found a byte");
    free(src);
    free(dst);
    return finish();
}
