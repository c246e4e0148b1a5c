/*
 * memfuzz's model of the address space and its probes (see memfuzz.c).
 *
 * Areas: 0 is R (the reserved region), 1..NFLOAT the floating slots, B the
 * brk area.  Each page records its kind, protection, segment (the mmap,
 * move or protection change that made it: a run of one segment lies inside one
 * VMA on any kernel, while whether two runs merge into one VMA depends on
 * Linux's anon_vma history, which the model does not follow), and where its content
 * lives: inline for private pages, in a shared-anonymous object, or in the
 * shared file.  Nothing here allocates: malloc could move the break.
 * memfuzz_probe.h touches pages and makes mappings; memfuzz_remap.h is mremap.
 */
#ifndef MEMFUZZ_H
#define MEMFUZZ_H
#include "common.h"
#include "maps.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif

#define PG 4096L
#define EAGER_PAGES 16384L       /* the sandbox's eager-population limit, in pages */
#define R_PAGES 40960L           /* R: 160 MiB */
#define NFLOAT 4
#define F_CAP 20000L             /* pages a floating slot may hold */
#define B (NFLOAT + 1)
#define B_PAGES 16400L
#define NOBJ 6                   /* shared anonymous objects alive at once */
#define OBJ_CAP 20000L
#define FP_PAGES 600L            /* the private file: 600 pages less 100 bytes */
#define FS_PAGES 600L            /* the shared file: exactly 600 pages */

enum { K_HOLE, K_ANON, K_SHANON, K_FPRIV, K_FSHARED };

struct pg {
    uint8_t kind, prot, freed, written;   /* freed: MADV_FREE'd, reads old or zero */
    int16_t obj;
    uint32_t seg;
    long idx;                             /* file page, or page of the shared object */
    uint64_t val;                         /* private content (both probed words) */
};

struct area {
    char *base;
    long npages, probe_pages;
    int live;
    struct pg *pg;
};

static long step, misses;

/* On stderr (not compared): what the model held, for whoever debugs a miss. */
static void explain(const char *what, int area, long page, const struct pg *p)
{
    fprintf(stderr, "s%ld %s area %d page %ld: kind %d prot %d freed %d written %d obj %d seg %u idx %ld\n",
            step, what, area, page, p->kind, p->prot, p->freed, p->written, p->obj, p->seg, p->idx);
}

static struct pg pg_r[R_PAGES], pg_f[NFLOAT][F_CAP], pg_b[B_PAGES];
static struct area A[NFLOAT + 2];
static uint64_t objval[NOBJ][OBJ_CAP];
static long objrefs[NOBJ], objsize[NOBJ];
static int objlive[NOBJ];
static uint64_t fsval[FS_PAGES];
static int fd_priv, fd_shared;
static char *brk_base;
static uint32_t segc;
static uint64_t rng, seed0;

/* --- randomness and output -------------------------------------------------- */
static uint64_t rnd64(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng * 0x2545F4914F6CDD1DULL;
}
static long rnd(long n) { return n > 0 ? (long)(rnd64() % (uint64_t)n) : 0; }

static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}
static void endline(void) { putchar('\n'); }
static void miss(void) { putchar('!'); misses++; }
static void say(const char *fmt, ...)
{
    va_list ap;
    printf("s%ld ", step);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

static const char *kind_name(int k)
{
    static const char *n[] = {"hole", "anon", "shanon", "fpriv", "fshared"};
    return n[k];
}
static const char *prot_name(int p)
{
    static char s[4];
    s[0] = p & PROT_READ ? 'r' : '-';
    s[1] = p & PROT_WRITE ? 'w' : '-';
    s[2] = p & PROT_EXEC ? 'x' : '-';
    s[3] = 0;
    return s;
}
static const char *area_name(int s)
{
    static char n[4];
    n[0] = s == 0 ? 'R' : s == B ? 'B' : 'F';
    n[1] = s == 0 || s == B ? 0 : (char)('0' + s);
    n[2] = 0;
    return n;
}

static char *r_base;

static void dump_one(unsigned long lo, unsigned long hi, const char *rest, void *ctx)
{
    (void)ctx;
    if (hi > (unsigned long)r_base && lo < (unsigned long)r_base + R_PAGES * PG)
        fprintf(stderr, "  R+%ld..%ld%s", (long)(lo - (unsigned long)r_base) / PG,
                (long)(hi - (unsigned long)r_base) / PG, rest);
}

/* On stderr, with MEMFUZZ_MAPS set: the VMAs in R, in pages from its start. */
static void dump_maps(void)
{
    if (getenv("MEMFUZZ_MAPS"))
        maps_each(dump_one, NULL);
}

/* A call's outcome: " -> ok" or " -> ERRNO", "!" when the model expected otherwise
 * (`placed_ok`: a successful call returned the address the model expects).
 * Returns 0 for success, else the errno. */
static int result(long r, int expect, int placed_ok)
{
    int e = r == -1 ? errno : 0;
    out(" -> %s", e ? errname(e) : placed_ok ? "ok" : "misplaced");
    if (e != expect || (!e && !placed_ok)) {
        miss();
        dump_maps();
    }
    endline();
    return e;
}

/* --- the model ------------------------------------------------------------------ */
static char *at_r(long page) { return A[0].base + page * PG; }
static int in_r(long addr) { return addr >= (long)A[0].base && addr < (long)(A[0].base + R_PAGES * PG); }

static int same_run(struct area *ar, long i, long j)
{
    struct pg *p = &ar->pg[i], *q = &ar->pg[j];
    return p->kind != K_HOLE && p->kind == q->kind && p->prot == q->prot && p->seg == q->seg;
}

static int obj_new(long pages)
{
    for (int o = 0; o < NOBJ; o++)
        if (!objlive[o]) {
            objlive[o] = 1;
            objrefs[o] = 0;
            objsize[o] = pages;
            memset(objval[o], 0, sizeof objval[o]);
            return o;
        }
    return -1;
}
static void obj_drop_if_unused(int o)
{
    if (o >= 0 && objrefs[o] == 0)
        objlive[o] = 0;
}

static void unmap_pages(struct area *ar, long a, long n)
{
    for (long i = a; i < a + n; i++) {
        struct pg *p = &ar->pg[i];
        if (p->kind == K_SHANON && --objrefs[p->obj] == 0)
            objlive[p->obj] = 0;
        memset(p, 0, sizeof *p);
    }
}

/* Pages [a, a+n) become a new segment of `kind`; file/object pages count from `idx`. */
static void map_pages(struct area *ar, long a, long n, int kind, int prot, int obj, long idx)
{
    if (obj >= 0)
        objrefs[obj] += n;               /* before unmapping: the object may be replaced by itself */
    unmap_pages(ar, a, n);
    segc++;
    for (long i = 0; i < n; i++) {
        struct pg *p = &ar->pg[a + i];
        p->kind = (uint8_t)kind;
        p->prot = (uint8_t)prot;
        p->seg = segc;
        p->obj = (int16_t)obj;
        p->idx = idx + i;
    }
}

static uint64_t fp_pat(long i) { return 0xF11E000000000000ULL | (uint64_t)i << 8 | 0x11; }
static uint64_t fs_pat(long i) { return 0x5AED000000000000ULL | (uint64_t)i << 8 | 0x22; }

/* 0: readable content; else the signal a touch past the object's end gives. */
static int beyond_end(const struct pg *p)
{
    if ((p->kind == K_FPRIV && p->idx >= FP_PAGES) || (p->kind == K_FSHARED && p->idx >= FS_PAGES)
        || (p->kind == K_SHANON && p->idx >= objsize[p->obj]))
        return SIGBUS;
    return 0;
}

/* The two probed words (offsets 0 and 4088) the model expects. */
static void expected_words(const struct pg *p, uint64_t w[2])
{
    switch (p->kind) {
    case K_FPRIV:
        if (!p->written) {
            w[0] = fp_pat(p->idx);
            w[1] = p->idx == FP_PAGES - 1 ? 0 : w[0];     /* past EOF in the last page */
            return;
        }
        /* fall through */
    case K_ANON: w[0] = w[1] = p->val; return;
    case K_SHANON: w[0] = w[1] = objval[p->obj][p->idx]; return;
    case K_FSHARED: w[0] = w[1] = fsval[p->idx]; return;
    }
    w[0] = w[1] = 0;
}

static void store(struct pg *p, uint64_t tag)
{
    switch (p->kind) {
    case K_ANON: case K_FPRIV: p->val = tag; p->written = 1; p->freed = 0; break;
    case K_SHANON: objval[p->obj][p->idx] = tag; break;
    case K_FSHARED: fsval[p->idx] = tag; break;
    }
}

/* --- madvise as Linux walks it: VMA by VMA, the first VMA's error ends it, holes give
 * ENOMEM at the end.  Returns the errno; -1 when kernels differ (MADV_REMOVE of a shared
 * mapping without PROT_WRITE: EACCES since 6.7, done before).  apply: change the model. */
static int madvise_model(struct area *ar, long a, long n, int adv, int apply)
{
    int hole = 0;
    for (long i = a; i < a + n; i++) {
        struct pg *p = &ar->pg[i];
        if (p->kind == K_HOLE) {
            hole = 1;
            continue;
        }
        int shared = p->kind == K_SHANON || p->kind == K_FSHARED;
        if (adv == MADV_FREE && p->kind != K_ANON)
            return EINVAL;
        if (adv == MADV_REMOVE) {
            if (p->kind == K_ANON)
                return EINVAL;
            if (p->kind == K_FPRIV)
                return EACCES;
            if (!(p->prot & PROT_WRITE))
                return -1;
        }
        if (!apply)
            continue;
        if (adv == MADV_DONTNEED && !shared) {
            p->val = 0;
            p->written = 0;
            p->freed = 0;
        } else if (adv == MADV_FREE) {
            p->freed = 1;
        } else if (adv == MADV_REMOVE && !beyond_end(p)) {
            if (p->kind == K_SHANON)
                objval[p->obj][p->idx] = 0;
            else
                fsval[p->idx] = 0;
        }
    }
    return hole ? ENOMEM : 0;
}

#endif
