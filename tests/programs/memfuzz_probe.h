/*
 * memfuzz's probes (a read or write of a page under SIGSEGV/SIGBUS handlers,
 * compared with the model), the raw calls that make mappings, and start/end.
 */
#ifndef MEMFUZZ_PROBE_H
#define MEMFUZZ_PROBE_H
#include "memfuzz.h"

/* --- probes ------------------------------------------------------------------- */
static sigjmp_buf probe_env;
static volatile int armed, fault_sig, fault_code;
static volatile uintptr_t fault_addr;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (!armed) {
        static const char msg[] = "memfuzz: fault outside a probe\n";
        write(1, msg, sizeof msg - 1);
        _exit(3);
    }
    fault_sig = sig;
    fault_code = si->si_code;
    fault_addr = (uintptr_t)si->si_addr;
    armed = 0;
    siglongjmp(probe_env, 1);
}

struct probe_at { int area; long page; int write; };

/* Read (or write `tag` to) words 0 and 511 of the page at w; fault_sig says how it ended. */
static __attribute__((noinline)) void touch(volatile uint64_t *w, int write, uint64_t tag,
                                            uint64_t *got)
{
    fault_sig = 0;
    if (sigsetjmp(probe_env, 0))
        return;
    armed = 1;
    if (write) {
        w[0] = tag;
        w[511] = tag;
    } else {
        got[0] = w[0];
        got[1] = w[511];
    }
    armed = 0;
}

static void probe_one(const struct probe_at *at)
{
    struct area *ar = &A[at->area];
    struct pg *p = &ar->pg[at->page];
    volatile uint64_t *w = (volatile uint64_t *)(ar->base + at->page * PG);
    uint64_t tag = (seed0 * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)step << 24 ^ (uint64_t)at->page << 3 ^ 1;
    uint64_t got[2] = {0, 0}, want[2];
    /* what Linux does: no page, no right, or past the end of the object */
    int esig = SIGSEGV, ecode = 1;
    if (p->kind != K_HOLE) {
        ecode = 2;
        if (!(at->write ? p->prot & PROT_WRITE : p->prot != PROT_NONE))
            esig = SIGSEGV;
        else if (beyond_end(p))
            esig = SIGBUS;
        else
            esig = 0;
    }
    touch(w, at->write, tag, got);
    out(" %s.%ld:%c", area_name(at->area), at->page, at->write ? 'w' : 'r');
    if (fault_sig) {
        out("%s%d%s", fault_sig == SIGBUS ? "BUS" : "SEGV", fault_code,
            fault_addr == (uintptr_t)w ? "" : "@?");
        if (fault_sig != esig || fault_code != ecode || fault_addr != (uintptr_t)w) {
            miss();
            explain("fault", at->area, at->page, p);
        }
        return;
    }
    if (esig) {
        miss();
        explain("no fault", at->area, at->page, p);
    }
    if (at->write) {
        out("+");
        store(p, tag);
        return;
    }
    expected_words(p, want);
    int match = got[0] == want[0] && got[1] == want[1];
    if (!match && p->freed && p->kind == K_ANON && !got[0] && !got[1])
        match = 1;                                 /* MADV_FREE: old content or zeros */
    out("%s", match ? "=" : !got[0] && !got[1] ? "Z" : "?");
    if (!match) {
        miss();
        explain("content", at->area, at->page, p);
        fprintf(stderr, "  got %llx %llx want %llx %llx\n", (unsigned long long)got[0],
                (unsigned long long)got[1], (unsigned long long)want[0], (unsigned long long)want[1]);
    }
}

static void run_probes(struct probe_at *list, int n)
{
    for (int i = n - 1; i > 0; i--) {                /* random order */
        int j = (int)rnd(i + 1);
        struct probe_at t = list[i];
        list[i] = list[j];
        list[j] = t;
    }
    for (int i = 0; i < n; i++)
        probe_one(&list[i]);
    endline();
}

/* May page i of area s be probed?  Not a floating slot's holes (anything may be there). */
static int probeable(int s, long i)
{
    if (i < 0)
        return 0;
    if (s == B)
        return i < A[B].probe_pages;
    if (i >= A[s].npages)
        return 0;
    return s == 0 || A[s].pg[i].kind != K_HOLE;
}

/* Probe the first and last pages of [a, a+n), two inside, and one on each side. */
static void probe_range(int s, long a, long n)
{
    struct probe_at list[8];
    long cand[6] = {a, a + n - 1, a + rnd(n), a + rnd(n), a - 1, a + n};
    int k = 0;
    out("  probe");
    for (int i = 0; i < 6; i++)
        if (probeable(s, cand[i])) {
            list[k].area = s;
            list[k].page = cand[i];
            list[k].write = (int)rnd(2);
            k++;
        }
    run_probes(list, k);
}

/* --- mappings -------------------------------------------------------------------- */
/* The calls themselves, raw: C libraries check or round arguments differently (musl's
 * mprotect rounds the address down). */
static long do_mmap_raw(void *addr, long len, int prot, int flags, int fd, long off)
{
    return syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}
#define sys_munmap(a, n) syscall(SYS_munmap, (a), (n))
#define sys_mprotect(a, n, p) syscall(SYS_mprotect, (a), (n), (p))
#define sys_madvise(a, n, adv) syscall(SYS_madvise, (a), (n), (adv))
#define sys_mremap(a, n, m, f, d) syscall(SYS_mremap, (a), (n), (m), (f), (d))

static long do_mmap(void *addr, long npages, int prot, int kind, long fpage, int flags)
{
    int fd = -1;
    flags |= kind == K_ANON ? MAP_PRIVATE | MAP_ANONYMOUS : kind == K_SHANON ? MAP_SHARED | MAP_ANONYMOUS
             : kind == K_FPRIV ? MAP_PRIVATE : MAP_SHARED;
    if (kind == K_FPRIV)
        fd = fd_priv;
    if (kind == K_FSHARED)
        fd = fd_shared;
    return do_mmap_raw(addr, npages * PG, prot, flags, fd, fpage * PG);
}

/* Fill every hole of R with PROT_NONE, so that nothing floating can be placed there. */
static void plug_holes(void)
{
    long runs = 0, bad = 0;
    for (long i = 0; i < R_PAGES;) {
        if (A[0].pg[i].kind != K_HOLE) {
            i++;
            continue;
        }
        long j = i;
        while (j < R_PAGES && A[0].pg[j].kind == K_HOLE)
            j++;
        if (do_mmap(at_r(i), j - i, PROT_NONE, K_ANON, 0, MAP_FIXED_NOREPLACE | MAP_NORESERVE) != (long)at_r(i))
            bad++;
        map_pages(&A[0], i, j - i, K_ANON, PROT_NONE, -1, 0);
        runs++;
        i = j;
    }
    if (runs) {
        say("plug %ld", runs);
        out(bad ? " -> failed" : " -> ok");
        if (bad)
            miss();
        endline();
    }
}

static int free_slot(void)
{
    for (int s = 1; s <= NFLOAT; s++)
        if (!A[s].live)
            return s;
    return -1;
}
static void open_slot(int s, char *base, long n)
{
    A[s].base = base;
    A[s].npages = n;
    A[s].live = 1;
    memset(A[s].pg, 0, sizeof(struct pg) * F_CAP);
}
static void close_slot_if_empty(int s)
{
    for (long i = 0; i < A[s].npages; i++)
        if (A[s].pg[i].kind != K_HOLE)
            return;
    A[s].live = 0;
    A[s].npages = 0;
}

/* --- start and end ------------------------------------------------------------------ */
static int make_file(const char *dir, const char *what, long size, uint64_t (*pat)(long))
{
    char path[512];
    snprintf(path, sizeof path, "%s/memfuzz-%llu-%s", dir, (unsigned long long)seed0, what);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        printf("open %s: %s\n", what, errname(errno));
        exit(2);
    }
    unlink(path);
    static char page[PG];
    for (long i = 0; i * PG < size; i++) {
        uint64_t v = pat(i);
        memset(page, 0, sizeof page);
        memcpy(page, &v, 8);
        memcpy(page + PG - 8, &v, 8);
        long k = size - i * PG < PG ? size - i * PG : PG;
        if (pwrite(fd, page, (size_t)k, i * PG) != k) {
            printf("write %s: %s\n", what, errname(errno));
            exit(2);
        }
    }
    return fd;
}

static void setup(uint64_t seed, const char *dir)
{
    seed0 = seed;
    rng = seed * 0x9E3779B97F4A7C15ULL + 0x1234567;
    printf("memfuzz seed %llu\n", (unsigned long long)seed);   /* stdio's buffer exists from here */
    fflush(stdout);
    fd_priv = make_file(dir, "priv", FP_PAGES * PG - 100, fp_pat);
    fd_shared = make_file(dir, "shared", FS_PAGES * PG, fs_pat);
    for (long i = 0; i < FS_PAGES; i++)
        fsval[i] = fs_pat(i);
    A[0].pg = pg_r;
    A[B].pg = pg_b;
    for (int s = 1; s <= NFLOAT; s++)
        A[s].pg = pg_f[s - 1];
    long r = do_mmap(NULL, R_PAGES, PROT_NONE, K_ANON, 0, MAP_NORESERVE);
    if (r == -1) {
        printf("reserving R: %s\n", errname(errno));
        exit(2);
    }
    A[0].base = r_base = (char *)r;
    A[0].npages = A[0].probe_pages = R_PAGES;
    A[0].live = 1;
    map_pages(&A[0], 0, R_PAGES, K_ANON, PROT_NONE, -1, 0);
    char *cur = (char *)syscall(SYS_brk, 0);
    char *aligned = (char *)(((uintptr_t)cur + PG - 1) & ~(uintptr_t)(PG - 1));
    brk_base = (char *)syscall(SYS_brk, aligned) == aligned ? aligned : cur;
    A[B].base = brk_base;
    A[B].live = 1;
    A[B].probe_pages = 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

static int finish_fuzz(void)
{
    syscall(SYS_brk, brk_base);
    printf("steps: %ld\nmodel misses: %ld\n", step - 1, misses);
    fflush(stdout);
    return misses ? 1 : 0;
}

#endif
