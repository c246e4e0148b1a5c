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
 * partial), one only shared.  The model: memfuzz.h; probes and the calls that
 * map: memfuzz_probe.h; mremap: memfuzz_remap.h.
 */
#include "memfuzz.h"
#include "memfuzz_probe.h"

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

#include "memfuzz_remap.h"         /* op_mremap: uses the choosing helpers above */

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
