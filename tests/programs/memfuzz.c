/*
 * memfuzz SEED STEPS DIR: random sequences of mmap (private/shared anonymous,
 * private/shared file, fixed, fixed-noreplace and floating), munmap, mprotect,
 * madvise, mremap and brk, with sizes around 64 MiB (the sandbox's eager
 * population limit) and 2 MiB (its fault-around chunk), each followed by
 * probes of pages in random order: a read or a write under SIGSEGV/SIGBUS
 * handlers that report the signal, si_code and whether si_addr was the page.
 *
 * The program keeps a model of every page (hole, kind, protection, content)
 * and prints an address-free transcript: each call's result or errno, each
 * probe's outcome and what the page held relative to the model ("=" matches,
 * "Z" zeros, "?" other).  The native run defines the truth; a line the model
 * did not predict carries "!" and is counted, so the native transcript must
 * show "model misses: 0" (else the model, not the kernel, is wrong).
 *
 * Fixed placements happen inside a reserved region R (offsets in pages are
 * printed).  Floating mappings (non-fixed mmap, mremap that moves) live in
 * slots F1..F4; before any call that places one, the holes of R are plugged
 * with PROT_NONE so that no kernel can put it inside R.  Holes of floating
 * mappings are never probed (anything may land there).  The brk area B is
 * probed up to two pages past its highest break.  DIR holds the two files
 * (made and unlinked at start): one only ever mapped privately (its last page
 * partial), one only shared.  Model and helpers: memfuzz.h.
 */
#include "memfuzz.h"

/* --- choosing ranges ------------------------------------------------------ */
static long pick_len(void)
{
    switch (rnd(10)) {
    case 0: case 1: case 2: case 3: return 1 + rnd(16);
    case 4: case 5: return 505 + rnd(16);                           /* about 2 MiB */
    case 6: return EAGER_PAGES - 3 + rnd(7);                         /* about 64 MiB */
    default: return 1 + rnd(3000);
    }
}

/* A range [*a, *a + *n) inside R, biased to start near existing boundaries. */
static void pick_r(long *a, long *n)
{
    long len = pick_len();
    if (len > R_PAGES)
        len = R_PAGES;
    long at = rnd(R_PAGES - len + 1);
    if (rnd(3) == 0) {                               /* start at or next to a boundary */
        long i = rnd(R_PAGES), k = i;
        while (k > 0 && same_run(&A[0], k - 1, k))
            k--;
        at = k + (long)rnd(3) - 1;
        if (at < 0)
            at = 0;
        if (at + len > R_PAGES)
            at = R_PAGES - len;
    }
    *a = at;
    *n = len;
}

static int pick_prot(void)
{
    static const int prots[] = {PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_WRITE,
                                PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC};
    return prots[rnd(6)];
}

/* A floating slot in use, or -1. */
static int pick_float(void)
{
    int used[NFLOAT], n = 0;
    for (int s = 1; s <= NFLOAT; s++)
        if (A[s].live)
            used[n++] = s;
    return n ? used[rnd(n)] : -1;
}

/* A fully mapped sub-range of floating slot s (holes there are never touched). */
static int pick_float_range(int s, long *a, long *n)
{
    struct area *f = &A[s];
    for (int tries = 0; tries < 8; tries++) {
        long at = rnd(f->npages), len = 1 + rnd(f->npages - at);
        if (rnd(2))
            len = 1 + rnd(len < 16 ? len : 16);
        long i;
        for (i = at; i < at + len && f->pg[i].kind != K_HOLE; i++)
            ;
        if (i == at + len) {
            *a = at;
            *n = len;
            return 1;
        }
    }
    return 0;
}

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

/* --- the operations ---------------------------------------------------------- */
static void op_mmap_fixed(void)
{
    long a, n;
    pick_r(&a, &n);
    int kind = 1 + rnd(4), prot = pick_prot();
    int noreplace = rnd(4) == 0;
    long fpage = kind == K_FPRIV ? rnd(FP_PAGES + 4) : kind == K_FSHARED ? rnd(FS_PAGES + 4) : 0;
    int obj = -1;
    if (kind == K_SHANON && (obj = obj_new(n)) < 0)
        kind = K_ANON;
    int extra = rnd(4) == 0 ? MAP_POPULATE : rnd(4) == 0 ? MAP_NORESERVE : 0;
    int expect = 0;
    if (noreplace)
        for (long i = a; i < a + n; i++)
            if (A[0].pg[i].kind != K_HOLE)
                expect = EEXIST;
    long r = do_mmap(at_r(a), n, prot, kind, fpage,
                     (noreplace ? MAP_FIXED_NOREPLACE : MAP_FIXED) | extra);
    say("mmap R+%ld %ld %s %s%s f%ld", a, n, kind_name(kind), prot_name(prot),
        noreplace ? " noreplace" : "", fpage);
    if (result(r, expect, r == (long)at_r(a)) == 0)
        map_pages(&A[0], a, n, kind, prot, obj, fpage);
    else
        obj_drop_if_unused(obj);
    probe_range(0, a, n);
}

static void op_mmap_float(void)
{
    int s = free_slot();
    if (s < 0)
        return;
    plug_holes();
    long n = pick_len();
    int kind = 1 + rnd(4), prot = pick_prot(), obj = -1;
    long fpage = kind == K_FPRIV ? rnd(FP_PAGES) : kind == K_FSHARED ? rnd(FS_PAGES) : 0;
    if (kind == K_SHANON && (obj = obj_new(n)) < 0)
        kind = K_ANON;
    long r = do_mmap(rnd(2) ? at_r(rnd(R_PAGES)) : NULL, n, prot, kind, fpage, 0);
    say("mmap F%d %ld %s %s f%ld", s, n, kind_name(kind), prot_name(prot), fpage);
    if (result(r, 0, !in_r(r)) == 0) {
        open_slot(s, (char *)r, n);
        map_pages(&A[s], 0, n, kind, prot, obj, fpage);
        probe_range(s, 0, n);
    } else {
        obj_drop_if_unused(obj);
    }
}

static void op_munmap(void)
{
    long a, n;
    int s = rnd(3) == 0 ? pick_float() : 0;
    if (s < 0)
        s = 0;
    if (s > 0 && rnd(2)) {                /* the whole slot, run by run (never its holes) */
        say("munmap %s all", area_name(s));
        int e = 0;
        for (long i = 0; i < A[s].npages;) {
            long j = i;
            while (j < A[s].npages && A[s].pg[j].kind != K_HOLE)
                j++;
            if (j > i && sys_munmap(A[s].base + i * PG, (j - i) * PG) != 0 && !e)
                e = errno;
            i = j + 1;
        }
        errno = e;
        result(e ? -1 : 0, 0, 1);
        unmap_pages(&A[s], 0, A[s].npages);
        close_slot_if_empty(s);
        return;
    }
    if (s == 0)
        pick_r(&a, &n);
    else if (!pick_float_range(s, &a, &n))
        return;
    say("munmap %s+%ld %ld", area_name(s), a, n);
    if (result(sys_munmap(A[s].base + a * PG, n * PG), 0, 1) == 0)
        unmap_pages(&A[s], a, n);
    if (s == 0)
        probe_range(0, a, n);
    else
        close_slot_if_empty(s);
}

static void op_mprotect(void)
{
    long a, n;
    int s = rnd(4) == 0 ? pick_float() : 0;
    if (s <= 0) {
        s = 0;
        pick_r(&a, &n);
    } else if (!pick_float_range(s, &a, &n))
        return;
    int prot = pick_prot();
    /* Linux applies the change up to the first hole, then fails with ENOMEM. */
    long stop = a;
    while (stop < a + n && A[s].pg[stop].kind != K_HOLE)
        stop++;
    say("mprotect %s+%ld %ld %s", area_name(s), a, n, prot_name(prot));
    result(sys_mprotect(A[s].base + a * PG, n * PG, prot), stop < a + n ? ENOMEM : 0, 1);
    /* Each changed piece becomes a segment of its own: Linux may split it from its
     * neighbours and need not merge it with anything later. */
    uint32_t last = 0;
    for (long i = a; i < stop; i++) {
        struct pg *p = &A[s].pg[i];
        if (p->prot == prot) {
            last = 0;
            continue;
        }
        if (p->seg != last || i == a)
            segc++;
        last = p->seg;
        p->prot = (uint8_t)prot;
        p->seg = segc;
    }
    probe_range(s, a, n);
}

static void op_madvise(void)
{
    static const int advs[] = {MADV_DONTNEED, MADV_DONTNEED, MADV_FREE, MADV_REMOVE,
                               MADV_WILLNEED, MADV_NORMAL};
    static const char *names[] = {"DONTNEED", "DONTNEED", "FREE", "REMOVE", "WILLNEED", "NORMAL"};
    long a, n;
    int s = rnd(4) == 0 ? pick_float() : 0;
    if (s <= 0) {
        s = 0;
        pick_r(&a, &n);
    } else if (!pick_float_range(s, &a, &n))
        return;
    int k = rnd(6);
    int expect = madvise_model(&A[s], a, n, advs[k], 0);
    if (expect < 0)
        return;                           /* a range whose answer differs between kernels */
    say("madvise %s+%ld %ld %s", area_name(s), a, n, names[k]);
    result(sys_madvise(A[s].base + a * PG, n * PG, advs[k]), expect, 1);
    madvise_model(&A[s], a, n, advs[k], 1);
    probe_range(s, a, n);
}

static void op_brk(void)
{
    long want;
    switch (rnd(6)) {
    case 0: want = 0; break;
    case 1: want = EAGER_PAGES - 2 + rnd(5); break;
    case 2: want = 510 + rnd(5); break;
    default: want = rnd(B_PAGES / 32); break;
    }
    if (want > B_PAGES - 2)
        want = B_PAGES - 2;
    long bytes = want * PG - (rnd(3) == 0 ? (long)rnd(PG) : 0);
    if (bytes < 0)
        bytes = 0;
    char *got = (char *)syscall(SYS_brk, brk_base + bytes);
    say("brk B+%ld", bytes);
    int ok = got == brk_base + bytes;
    out(ok ? " -> ok" : " -> refused");
    if (!ok)
        miss();
    long pages = (bytes + PG - 1) / PG;
    if (ok) {
        if (pages < A[B].npages)
            unmap_pages(&A[B], pages, A[B].npages - pages);
        else if (pages > A[B].npages)
            map_pages(&A[B], A[B].npages, pages - A[B].npages, K_ANON, PROT_READ | PROT_WRITE, -1, 0);
        A[B].npages = pages;
        if (pages + 2 > A[B].probe_pages)
            A[B].probe_pages = pages + 2;
    }
    endline();
    probe_range(B, pages > 0 ? pages - 1 : 0, 2);
}

static void op_bad(void)
{
    switch (rnd(7)) {
    case 0:
        say("mmap len 0");
        result(do_mmap(NULL, 0, PROT_READ, K_ANON, 0, 0), EINVAL, 0);
        break;
    case 1:
        say("mmap R+1/2 fixed");
        result(do_mmap_raw(at_r(1) - PG / 2, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
               EINVAL, 0);
        break;
    case 2:
        say("munmap R+1/2");
        result(sys_munmap(at_r(1) - 8, PG), EINVAL, 0);
        break;
    case 3:
        say("mprotect R+1/2");
        result(sys_mprotect(at_r(1) + 8, PG, PROT_READ), EINVAL, 0);
        break;
    case 4:
        say("madvise advice 999");
        result(sys_madvise(at_r(0), PG, 999), EINVAL, 0);
        break;
    case 5:
        say("mremap flags 0x80");
        result(sys_mremap(at_r(0), PG, PG, 0x80, 0), EINVAL, 0);
        break;
    default:
        say("mmap file at an unaligned offset");
        result(do_mmap_raw(NULL, PG, PROT_READ, MAP_PRIVATE, fd_priv, 100), EINVAL, 0);
        break;
    }
}

static void op_probe_some(void)
{
    int n = 4 + (int)rnd(8), k = 0;
    say("probe");
    struct probe_at list[16];
    for (int i = 0; i < n; i++) {
        int s = rnd(3) ? 0 : rnd(2) ? B : pick_float();
        if (s < 0)
            s = 0;
        long page = rnd(s == B ? A[B].probe_pages : A[s].npages);
        if (!probeable(s, page))
            continue;
        list[k].area = s;
        list[k].page = page;
        list[k].write = (int)rnd(2);
        k++;
    }
    run_probes(list, k);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], 0, 0) : 1;
    long steps = argc > 2 ? atol(argv[2]) : 200;
    const char *dir = argc > 3 ? argv[3] : "/tmp";
    setup(seed, dir);
    for (step = 1; step <= steps; step++) {
        long k = rnd(100);
        if (k < 20) op_mmap_fixed();
        else if (k < 28) op_mmap_float();
        else if (k < 40) op_munmap();
        else if (k < 52) op_mprotect();
        else if (k < 64) op_madvise();
        else if (k < 82) op_mremap();
        else if (k < 88) op_brk();
        else if (k < 91) op_bad();
        else op_probe_some();
    }
    return finish_fuzz();
}
