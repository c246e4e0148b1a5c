/*
 * brk, mmap (anonymous private and shared, MAP_FIXED, MAP_FIXED_NOREPLACE,
 * address hints), munmap, mprotect and madvise(MADV_DONTNEED).
 * Only relations are printed, never addresses. Writes to read-only pages
 * (faults) are tested elsewhere.
 */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PG 4096UL

static void *raw_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
    /* returns the address, or -errno cast to a pointer */
    errno = 0;
    long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    return (void *)(r == -1 ? -(long)errno : r);
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

/*
 * Every brk call happens before anything is printed: stdio's first output
 * allocates its buffer with malloc, which may move the break itself.
 */
static void test_brk(void)
{
    int r[9];
    uintptr_t cur = syscall(SYS_brk, 0);
    uintptr_t want = cur + 64 * 1024;
    r[0] = cur != 0;
    r[1] = (uintptr_t)syscall(SYS_brk, want) == want;
    if (r[1])
        memset((void *)cur, 0xab, want - cur);
    r[2] = r[1] && all_bytes((void *)cur, want - cur, 0xab);
    r[3] = (uintptr_t)syscall(SYS_brk, 0) == want;
    r[4] = (uintptr_t)syscall(SYS_brk, cur + 4096) == cur + 4096;
    r[5] = (uintptr_t)syscall(SYS_brk, 1) == cur + 4096;
    r[6] = (uintptr_t)syscall(SYS_brk, cur + 8192) == cur + 8192;
    /* the page re-exposed by regrowing must read zero */
    uintptr_t page2 = (cur + 4096 + PG - 1) & ~(PG - 1);
    r[7] = page2 + PG > cur + 8192 || all_bytes((void *)page2, PG, 0);
    r[8] = (uintptr_t)syscall(SYS_brk, cur) == cur;

    check(r[0], "brk(0) returns the current break");
    check(r[1], "brk grows by 64 KiB");
    check(r[2], "grown heap is writable");
    check(r[3], "brk(0) reports the new break");
    check(r[4], "brk shrinks");
    check(r[5], "brk(1) below start leaves the break unchanged");
    check(r[6], "brk regrows");
    check(r[7], "regrown page is zero");
    check(r[8], "brk back to start");
}

static void test_anon(int shared)
{
    const char *kind = shared ? "shared" : "private";
    size_t len = 16 * PG;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                            (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED, "mmap anon %s 64 KiB", kind);
    if (p == MAP_FAILED)
        return;
    check(((uintptr_t)p & (PG - 1)) == 0, "anon %s mapping is page aligned", kind);
    check(all_bytes(p, len, 0), "anon %s mapping starts zeroed", kind);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 7);
    int okw = 1;
    for (size_t i = 0; i < len; i++)
        okw &= p[i] == (unsigned char)(i * 7);
    check(okw, "anon %s mapping holds written data", kind);

    /* madvise(MADV_DONTNEED): private anon pages read back zero; shared keep data */
    check(madvise(p + 4 * PG, 2 * PG, MADV_DONTNEED) == 0, "madvise %s DONTNEED", kind);
    if (shared)
        check(p[4 * PG + 1] == (unsigned char)((4 * PG + 1) * 7) &&
              p[6 * PG - 1] == (unsigned char)((6 * PG - 1) * 7),
              "shared data survives DONTNEED");
    else
        check(all_bytes(p + 4 * PG, 2 * PG, 0), "private pages zero after DONTNEED");
    check(p[3 * PG] == (unsigned char)(3 * PG * 7) && p[6 * PG] == (unsigned char)(6 * PG * 7),
          "%s neighbours of DONTNEED range untouched", kind);
    check(munmap(p, len) == 0, "munmap anon %s", kind);
}

static void test_fixed(void)
{
    size_t len = 8 * PG;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        check(0, "mmap for MAP_FIXED tests");
        return;
    }
    memset(p, 0x5a, len);

    /* MAP_FIXED replaces pages 2..3 with fresh zero pages */
    unsigned char *q = mmap(p + 2 * PG, 2 * PG, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    check(q == p + 2 * PG, "MAP_FIXED returns the requested address");
    check(all_bytes(p + 2 * PG, 2 * PG, 0), "MAP_FIXED replaced the pages with zeros");
    check(all_bytes(p, 2 * PG, 0x5a) && all_bytes(p + 4 * PG, 4 * PG, 0x5a),
          "MAP_FIXED left the other pages alone");

    /* MAP_FIXED_NOREPLACE over an existing mapping: EEXIST */
    errno = 0;
    void *r = raw_mmap(p + PG, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("MAP_FIXED_NOREPLACE over a mapping -> %s",
           (long)r == -EEXIST ? "EEXIST" : "other");
    check((long)r == -EEXIST, "");

    /* punch a hole with munmap, then NOREPLACE into the hole succeeds */
    check(munmap(p + 5 * PG, PG) == 0, "munmap one page in the middle");
    r = raw_mmap(p + 5 * PG, PG, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    check(r == p + 5 * PG, "MAP_FIXED_NOREPLACE into the hole returns that address");
    check(all_bytes(p + 5 * PG, PG, 0), "the hole's new page is zero");
    check(p[4 * PG] == 0x5a && p[6 * PG] == 0x5a, "pages around the hole kept their data");

    /* mprotect */
    check(mprotect(p, PG, PROT_READ) == 0, "mprotect PROT_READ");
    check(p[0] == 0x5a, "read-only page still readable");
    check(mprotect(p, PG, PROT_READ | PROT_WRITE) == 0, "mprotect back to read-write");
    p[0] = 1;
    check(p[0] == 1, "page writable again");
    check(mprotect(p, PG, PROT_NONE) == 0, "mprotect PROT_NONE");
    check(mprotect(p, PG, PROT_READ | PROT_WRITE) == 0, "mprotect PROT_NONE back to read-write");
    check(p[0] == 1 && p[1] == 0x5a, "data survives PROT_NONE round trip");
    errno = 0;
    check_err(syscall(SYS_mprotect, p + 1, PG, PROT_READ), EINVAL, "mprotect(unaligned)");
    errno = 0;
    check_err(syscall(SYS_mprotect, p, PG, 0x1000), EINVAL, "mprotect(bad prot bits)");

    check(munmap(p, len) == 0, "munmap the whole range (with a replaced part)");
    /* mprotect on an unmapped range: ENOMEM */
    errno = 0;
    check_err(syscall(SYS_mprotect, p, PG, PROT_READ), ENOMEM, "mprotect(unmapped)");
    /* munmap of an already unmapped range succeeds */
    check(munmap(p, len) == 0, "munmap of an unmapped range is ok");

    /* address hint: a free, aligned hint is honoured */
    void *h = raw_mmap(p, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(h == p, "mmap hint at a free address is honoured");
    if (h != MAP_FAILED)
        munmap(h, 2 * PG);
}

static void test_errors(void)
{
    long r;
    r = (long)raw_mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap(len 0) -> %s", errname(-r));
    check(r == -EINVAL, "");
    r = (long)raw_mmap(NULL, PG, PROT_READ, MAP_ANONYMOUS, -1, 0);
    printf("mmap(neither private nor shared) -> %s", errname(-r));
    check(r == -EINVAL, "");
    r = (long)raw_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, 99, 0);
    printf("mmap(file, fd 99) -> %s", errname(-r));
    check(r == -EBADF, "");
    r = (long)raw_mmap((void *)(PG + 1), PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("mmap(MAP_FIXED unaligned) -> %s", errname(-r));
    check(r == -EINVAL, "");
    r = (long)raw_mmap(NULL, (size_t)1 << 62, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap(2^62 bytes) -> %s", errname(-r));
    check(r == -ENOMEM, "");
    errno = 0;
    check_err(syscall(SYS_munmap, PG + 1, PG), EINVAL, "munmap(unaligned)");
    errno = 0;
    check_err(syscall(SYS_munmap, 0x100000, 0), EINVAL, "munmap(len 0)");
    void *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    errno = 0;
    check_err(syscall(SYS_madvise, (char *)p + 1, PG, MADV_DONTNEED), EINVAL, "madvise(unaligned)");
    munmap(p, PG);
}

int main(void)
{
    test_brk();
    test_anon(0);
    test_anon(1);
    test_fixed();
    test_errors();
    return finish();
}
