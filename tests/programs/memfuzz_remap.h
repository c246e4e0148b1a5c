/*
 * memfuzz's mremap: shrink, grow in place, grow moving, MREMAP_FIXED into R,
 * a grow past the VMA (EFAULT), and second views (old_len 0) of shared pages,
 * each with the answer Linux gives predicted from the model.
 */
#ifndef MEMFUZZ_REMAP_H
#define MEMFUZZ_REMAP_H
#include "memfuzz_probe.h"

/* --- mremap ---------------------------------------------------------------------- */
/* Where the VMA holding page i ends, or -1 when the model cannot tell (the run ends at
 * the edge of the area, or next to a compatible run that a kernel may have merged). */
static long vma_end(struct area *ar, long i)
{
    long j = i;
    while (j < ar->npages && same_run(ar, j, i))
        j++;
    if (j == ar->npages)
        return -1;
    struct pg *p = &ar->pg[i], *q = &ar->pg[j];
    if (q->kind == p->kind && q->prot == p->prot)
        return -1;
    return j;
}

/* Pages [a+n, a+m) continue the mapping that ends at a+n (growth keeps the segment). */
static void extend_pages(struct area *ar, long a, long n, long m)
{
    struct pg proto = ar->pg[a + n - 1];
    for (long k = n; k < m; k++) {
        struct pg *p = &ar->pg[a + k];
        *p = proto;
        p->idx = proto.idx + (k - n + 1);
        p->val = 0;
        p->written = p->freed = 0;
        if (p->kind == K_SHANON)
            objrefs[p->obj]++;
    }
}

/* mremap's move: [a, a+n) of src to [d, d+m) of dst (free or replaced), as a new segment. */
static void move_pages(struct area *src, long a, long n, struct area *dst, long d, long m)
{
    unmap_pages(dst, d, m);
    long k = n < m ? n : m;
    segc++;
    for (long i = 0; i < k; i++) {
        dst->pg[d + i] = src->pg[a + i];
        dst->pg[d + i].seg = segc;
        memset(&src->pg[a + i], 0, sizeof(struct pg));
    }
    if (n > m)
        unmap_pages(src, a + m, n - m);
    if (m > n)
        extend_pages(dst, d, n, m);
}

/* Growth must keep a shared object's page numbers inside the model's arrays. */
static int growth_fits(const struct pg *p, long n, long m)
{
    return p->kind != K_SHANON || p->idx + (m - n) < OBJ_CAP;
}

static int all_holes(long a, long b)
{
    for (long i = a; i < b; i++)
        if (A[0].pg[i].kind != K_HOLE)
            return 0;
    return 1;
}

static void op_mremap(void)
{
    int s = rnd(3) == 0 ? pick_float() : 0;
    if (s < 0)
        s = 0;
    struct area *ar = &A[s];
    long i = -1;
    for (int tries = 0; tries < 16 && i < 0; tries++) {
        long k = rnd(ar->npages);
        if (ar->pg[k].kind != K_HOLE)
            i = k;
    }
    if (i < 0)
        return;
    long lo = i, hi = i + 1;
    while (lo > 0 && same_run(ar, lo - 1, i))
        lo--;
    while (hi < ar->npages && same_run(ar, hi, i))
        hi++;
    long a = rnd(2) ? lo : lo + rnd(hi - lo);
    long n = 1 + rnd(hi - a), vend = vma_end(ar, i);
    struct pg *p = &ar->pg[a];
    long m, r;
    int v = (int)rnd(6);
    if (v == 0) {                                    /* shrink: Linux checks only the first page */
        if (s == 0 && rnd(3) == 0)
            n += rnd(64);
        if (s == 0 && a + n > R_PAGES)
            n = R_PAGES - a;
        m = 1 + rnd(n);
        int flags = rnd(2) ? MREMAP_MAYMOVE : 0;
        say("mremap %s+%ld %ld -> %ld%s", area_name(s), a, n, m, flags ? " maymove" : "");
        r = sys_mremap(ar->base + a * PG, n * PG, m * PG, flags, 0);
        if (result(r, 0, r == (long)(ar->base + a * PG)) == 0)
            unmap_pages(ar, a + m, n - m);
        probe_range(s, a, n);
    } else if (v == 1 && s == 0) {                   /* grow in place, or ENOMEM */
        m = n + 1 + rnd(pick_len());
        if (vend < 0 || a + m > R_PAGES || !growth_fits(p, n, m))
            return;
        int ok = a + n == vend && all_holes(vend, a + m);
        say("mremap R+%ld %ld -> %ld", a, n, m);
        r = sys_mremap(at_r(a), n * PG, m * PG, 0, 0);
        if (result(r, ok ? 0 : ENOMEM, r == (long)at_r(a)) == 0)
            extend_pages(ar, a, n, m);
        probe_range(0, a, m);
    } else if (v == 1 || v == 2) {                   /* grow, moving when it must */
        int inplace = 0, s2 = -1;
        if (s == 0) {
            m = n + 1 + rnd(pick_len());
            if (vend < 0 || m > F_CAP || !growth_fits(p, n, m))
                return;
            inplace = a + n == vend && a + m <= R_PAGES && all_holes(vend, a + m);
            if (!inplace && (s2 = free_slot()) < 0)
                return;
        } else {
            if (lo != 0 || hi != ar->npages)
                return;                              /* a floating slot moves whole */
            a = 0;
            n = hi;
            m = n + 1 + rnd(pick_len());
            if (m > F_CAP || !growth_fits(p, n, m))
                return;
        }
        if (!inplace)
            plug_holes();
        say("mremap %s+%ld %ld -> %ld maymove", area_name(s), a, n, m);
        r = sys_mremap(ar->base + a * PG, n * PG, m * PG, MREMAP_MAYMOVE, 0);
        int placed = s == 0 ? (inplace ? r == (long)at_r(a) : !in_r(r)) : !in_r(r);
        if (result(r, 0, placed) != 0)
            return;
        if (s == 0 && inplace) {
            extend_pages(ar, a, n, m);
            probe_range(0, a, m);
        } else if (s == 0) {
            open_slot(s2, (char *)r, m);
            move_pages(ar, a, n, &A[s2], 0, m);
            probe_range(0, a, n);
            probe_range(s2, 0, m);
        } else {
            ar->base = (char *)r;
            ar->npages = m;
            extend_pages(ar, 0, n, m);
            segc++;
            for (long k = 0; k < m; k++)
                ar->pg[k].seg = segc;
            probe_range(s, 0, m);
        }
    } else if (v == 3) {                             /* MREMAP_FIXED into R */
        m = rnd(2) ? 1 + rnd(n) : n + 1 + rnd(pick_len());
        if (m > R_PAGES || !growth_fits(p, n, m))
            return;
        long d = rnd(R_PAGES - m + 1);
        int overlap = s == 0 && a < d + m && d < a + n;
        say("mremap %s+%ld %ld -> R+%ld %ld fixed", area_name(s), a, n, d, m);
        r = sys_mremap(ar->base + a * PG, n * PG, m * PG, MREMAP_MAYMOVE | MREMAP_FIXED, at_r(d));
        if (result(r, overlap ? EINVAL : 0, r == (long)at_r(d)) == 0)
            move_pages(ar, a, n, &A[0], d, m);
        if (s == 0)
            probe_range(0, a, n);
        else
            close_slot_if_empty(s);
        probe_range(0, d, m);
    } else if (v == 4 && s == 0) {                   /* growing past the VMA: EFAULT */
        if (vend < 0)
            return;
        n = vend - a + 1 + rnd(8);
        m = n + 1 + rnd(16);
        if (a + n > R_PAGES)
            return;
        int flags = rnd(2) ? MREMAP_MAYMOVE : 0;
        say("mremap R+%ld %ld -> %ld%s", a, n, m, flags ? " maymove" : "");
        result(sys_mremap(at_r(a), n * PG, m * PG, flags, 0), EFAULT, 0);
        probe_range(0, a, n);
    } else if (v == 5) {                             /* old_len 0: a second view of shared pages */
        m = 1 + rnd(rnd(2) ? 16 : 700);
        int shared = p->kind == K_SHANON || p->kind == K_FSHARED;
        if (!growth_fits(p, 0, m))
            return;
        long d = -1;
        int s2 = -1;
        if (shared && rnd(2)) {                      /* (a private source: EINVAL, found before
                                                        or after unmapping the target by version) */
            d = rnd(R_PAGES - m + 1);
            if (s == 0 && d < a && a < d + m)
                return;
        } else {
            if ((s2 = free_slot()) < 0)
                return;
            plug_holes();
        }
        say("mremap %s+%ld 0 -> %ld %s", area_name(s), a, m, d >= 0 ? "fixed" : "maymove");
        if (d >= 0) {
            out(" R+%ld", d);
            r = sys_mremap(ar->base + a * PG, 0, m * PG, MREMAP_MAYMOVE | MREMAP_FIXED, at_r(d));
        } else {
            r = sys_mremap(ar->base + a * PG, 0, m * PG, MREMAP_MAYMOVE, 0);
        }
        if (result(r, shared ? 0 : EINVAL, d >= 0 ? r == (long)at_r(d) : !in_r(r)) != 0)
            return;
        struct area *dst = d >= 0 ? &A[0] : &A[s2];
        if (d < 0) {
            open_slot(s2, (char *)r, m);
            d = 0;
        }
        struct pg src = *p;
        map_pages(dst, d, m, src.kind, src.prot, src.kind == K_SHANON ? src.obj : -1, src.idx);
        probe_range(dst == &A[0] ? 0 : s2, d, m);
    }
}

#endif
