/*
 * mmedge: memory-manager edge cases the fuzzer (memfuzz.c) found, one section
 * each, every answer printed (errnos, probe outcomes), never an address.
 * argv[1]: a directory for the files mapped (the harness gives /dev/shm).
 */
#include "common.h"
#include "maps.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#define PG 4096L

static sigjmp_buf env;
static volatile int armed;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (!armed)
        _exit(3);
    armed = 0;
    siglongjmp(env, sig << 8 | si->si_code);
}

/* "ok", "SEGV<code>" or "BUS<code>" for a one-byte read (write=0) or write at p. */
static const char *touch(volatile char *p, int write)
{
    static char bufs[8][16];               /* several may appear in one printf */
    static int next;
    int r = sigsetjmp(env, 0);
    if (r) {
        char *buf = bufs[next++ % 8];
        snprintf(buf, sizeof bufs[0], "%s%d", r >> 8 == SIGBUS ? "BUS" : "SEGV", r & 0xff);
        return buf;
    }
    armed = 1;
    if (write)
        *p = 1;
    else
        (void)*p;
    armed = 0;
    return "ok";
}

static const char *ret(long r)
{
    return r == -1 ? errname(errno) : "ok";
}

static int make_file(const char *dir, const char *name, long size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/mmedge-%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    unlink(path);
    if (fd < 0 || ftruncate(fd, size) != 0)
        return -1;
    return fd;
}

/* PROT_WRITE alone reads as well on x86: faults, and the kernel's copies from it. */
static void write_only(void)
{
    char *p = mmap(NULL, 4 * PG, PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("write-only: read of a fresh page -> %s\n", touch(p, 0));
    printf("write-only: write -> %s\n", touch(p + PG, 1));
    printf("write-only: read back -> %s, %d\n", touch(p + PG, 0), p[PG]);
    int fds[2];
    if (pipe(fds) == 0) {
        printf("write-only: write(2) from it -> %s\n", ret(write(fds[1], p + 2 * PG, 16)));
        close(fds[0]);
        close(fds[1]);
    }
    munmap(p, 4 * PG);
}

/* madvise's answer for each kind of mapping, and VMA by VMA over a range of several. */
static void madvise_kinds(const char *dir)
{
    int fd = make_file(dir, "madv", 2 * PG);
    int ro = -1;
    char path[512];
    snprintf(path, sizeof path, "%s/mmedge-madv-ro", dir);
    int w = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (w >= 0 && ftruncate(w, 2 * PG) == 0)
        ro = open(path, O_RDONLY);
    unlink(path);
    struct { const char *name; int prot, flags, fd; } kinds[] = {
        {"private anon rw", PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1},
        {"private anon none", PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1},
        {"private file rw", PROT_READ | PROT_WRITE, MAP_PRIVATE, fd},
        {"shared anon r", PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1},
        {"shared file r", PROT_READ, MAP_SHARED, fd},
        {"shared file rw", PROT_READ | PROT_WRITE, MAP_SHARED, fd},
        {"shared read-only file r", PROT_READ, MAP_SHARED, ro},
    };
    static const int advs[] = {MADV_DONTNEED, MADV_FREE, MADV_REMOVE, MADV_WILLNEED, MADV_NORMAL};
    static const char *names[] = {"DONTNEED", "FREE", "REMOVE", "WILLNEED", "NORMAL"};
    for (unsigned i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        for (int k = 0; k < 5; k++) {
            char *p = mmap(NULL, 2 * PG, kinds[i].prot, kinds[i].flags, kinds[i].fd, 0);
            printf("madvise %s %s -> %s\n", kinds[i].name, names[k],
                   p == MAP_FAILED ? "mmap failed" : ret(madvise(p, 2 * PG, advs[k])));
            munmap(p, 2 * PG);
        }
    /* [shared anon][private anon][shared anon], then [shared][hole][shared]: REMOVE does the
     * VMAs before the first it refuses, and all around a hole, then fails. */
    char *r = mmap(NULL, 3 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mmap(r, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    mmap(r + PG, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    mmap(r + 2 * PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    r[0] = r[PG] = r[2 * PG] = 7;
    printf("madvise REMOVE shared|private|shared -> %s", ret(madvise(r, 3 * PG, MADV_REMOVE)));
    printf(", left %d %d %d\n", r[0], r[PG], r[2 * PG]);
    r[0] = 7;
    munmap(r + PG, PG);
    printf("madvise REMOVE shared|hole|shared -> %s", ret(madvise(r, 3 * PG, MADV_REMOVE)));
    printf(", left %d %d\n", r[0], r[2 * PG]);
    munmap(r, 3 * PG);
    close(fd);
    close(ro);
    close(w);
}

/* Past the end of the file: an access the mapping allows is SIGBUS, one it does not SIGSEGV,
 * whichever comes first (the first touch of the page, or after a read populated nothing). */
static void past_eof(const char *dir)
{
    int fd = make_file(dir, "eof", PG);
    static const int prots[] = {PROT_READ, PROT_WRITE, PROT_READ | PROT_WRITE, PROT_NONE};
    static const char *pn[] = {"r", "w", "rw", "none"};
    for (int shared = 0; shared < 2; shared++)
        for (int i = 0; i < 4; i++)
            for (int order = 0; order < 2; order++) {
                char *p = mmap(NULL, 3 * PG, prots[i], shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
                const char *first = touch(p + PG, order);
                printf("past EOF %s %s: %s first -> %s", shared ? "shared" : "private", pn[i],
                       order ? "write" : "read", first);
                printf(", then %s -> %s\n", order ? "read" : "write", touch(p + PG, !order));
                munmap(p, 3 * PG);
            }
    close(fd);
}

/* A shared anonymous object is as big as the mapping that made it: pages mremap adds past
 * it are SIGBUS, and a page given up by shrinking comes back with its content. */
static void shared_anon_size(void)
{
    char *p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    p[3 * PG] = 7;
    char *q = mremap(p, 4 * PG, 2 * PG, 0);
    printf("shared anon: shrink -> %s\n", q == MAP_FAILED ? errname(errno) : q == p ? "in place" : "moved");
    q = mremap(p, 2 * PG, 4 * PG, 0);
    printf("shared anon: grow back -> %s", q == MAP_FAILED ? errname(errno) : q == p ? "in place" : "moved");
    if (q != MAP_FAILED)
        printf(", page 3 holds %d\n", p[3 * PG]);
    else
        printf("\n");
    q = mremap(p, 4 * PG, 6 * PG, MREMAP_MAYMOVE);
    printf("shared anon: grown to 6 pages -> %s\n", q == MAP_FAILED ? errname(errno) : "ok");
    if (q != MAP_FAILED) {
        printf("  page 3 read -> %s, page 4 read -> %s, page 5 write -> %s\n", touch(q + 3 * PG, 0),
               touch(q + 4 * PG, 0), touch(q + 5 * PG, 1));
        char *d = mremap(q + 2 * PG, 0, 4 * PG, MREMAP_MAYMOVE);
        printf("shared anon: second view of pages 2.. -> %s\n", d == MAP_FAILED ? errname(errno) : "ok");
        if (d != MAP_FAILED) {
            printf("  its page 1 holds %d; page 2 read -> %s\n", d[PG], touch(d + 2 * PG, 0));
            int fds[2];
            if (pipe(fds) == 0) {
                printf("  write(2) from past the end -> %s\n", ret(write(fds[1], d + 2 * PG, 8)));
                close(fds[0]);
                close(fds[1]);
            }
            munmap(d, 4 * PG);
        }
        munmap(q, 6 * PG);
    }
}

/* mprotect changes the VMAs up to the first hole, then fails; from a hole it changes nothing;
 * a VMA that refuses (shared, file not open for writing) stops it after the ones before. */
static void mprotect_partial(const char *dir)
{
    char *r = mmap(NULL, 5 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(r + 3 * PG, PG);
    printf("mprotect over a hole -> %s", ret(mprotect(r, 5 * PG, PROT_READ)));
    printf("; write page 0 -> %s, page 2 -> %s, page 4 -> %s\n", touch(r, 1), touch(r + 2 * PG, 1),
           touch(r + 4 * PG, 1));
    printf("mprotect from a hole -> %s", ret(mprotect(r + 3 * PG, 2 * PG, PROT_NONE)));
    printf("; read page 4 -> %s\n", touch(r + 4 * PG, 0));
    munmap(r, 5 * PG);
    char path[512];
    snprintf(path, sizeof path, "%s/mmedge-prot", dir);
    int w = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int ro = -1;
    if (w >= 0 && ftruncate(w, PG) == 0)
        ro = open(path, O_RDONLY);
    unlink(path);
    r = mmap(NULL, 2 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mmap(r + PG, PG, PROT_READ, MAP_SHARED | MAP_FIXED, ro, 0);
    printf("mprotect rw over [anon][shared read-only file] -> %s", ret(mprotect(r, 2 * PG, PROT_READ | PROT_WRITE)));
    printf("; write page 0 -> %s, page 1 -> %s\n", touch(r, 1), touch(r + PG, 1));
    munmap(r, 2 * PG);
    close(w);
    close(ro);
}

struct span { unsigned long lo, hi; int count; };

static void count_in(unsigned long lo, unsigned long hi, const char *rest, void *ctx)
{
    struct span *s = ctx;
    (void)rest;
    if (hi > s->lo && lo < s->hi)
        s->count++;
}

/* How many VMAs /proc/self/maps shows in [p, p+n). */
static int vmas_in(char *p, long n)
{
    struct span s = {(unsigned long)p, (unsigned long)(p + n), 0};
    maps_each(count_in, &s);
    return s.count;
}

/* mprotect to the same protection splits nothing, and pieces given their old protection
 * back rejoin (shared memory too): mremap of the whole then still sees one VMA. */
static void mprotect_rejoin(void)
{
    for (int shared = 0; shared < 2; shared++) {
        const char *k = shared ? "shared" : "private";
        char *p = mmap(NULL, 6 * PG, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
        memset(p, 1, 6 * PG);
        const char *r1 = ret(mprotect(p + 2 * PG, PG, PROT_READ | PROT_WRITE));
        printf("%s: mprotect to the same -> %s, VMAs %d\n", k, r1, vmas_in(p, 6 * PG));
        r1 = ret(mprotect(p + 2 * PG, 2 * PG, PROT_READ));
        int n1 = vmas_in(p, 6 * PG);
        const char *r2 = ret(mprotect(p + 2 * PG, 2 * PG, PROT_READ | PROT_WRITE));
        printf("%s: mprotect away -> %s, VMAs %d, and back -> %s, VMAs %d\n", k, r1, n1, r2,
               vmas_in(p, 6 * PG));
        char *q = mremap(p, 6 * PG, 8 * PG, MREMAP_MAYMOVE);
        printf("%s: mremap of the whole -> %s\n", k, q == MAP_FAILED ? errname(errno) : "ok");
        munmap(q == MAP_FAILED ? p : q, q == MAP_FAILED ? 6 * PG : 8 * PG);
    }
}

/* mremap that shrinks unmaps the tail whatever it holds (holes, other VMAs); one that grows
 * or moves needs the old range inside one VMA (EFAULT); the first page must be mapped. */
static void mremap_ranges(void)
{
    char *r = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(r + 3 * PG, PG);
    mprotect(r + 5 * PG, 3 * PG, PROT_READ);
    char *q = mremap(r, 7 * PG, 2 * PG, 0);
    printf("mremap shrink across a hole and another VMA -> %s", q == MAP_FAILED ? errname(errno) : q == r ? "in place" : "moved");
    printf("; page 1 -> %s, page 2 -> %s, page 5 -> %s, page 7 -> %s\n", touch(r + PG, 0),
           touch(r + 2 * PG, 0), touch(r + 5 * PG, 0), touch(r + 7 * PG, 0));
    q = mremap(r + 2 * PG, 2 * PG, PG, 0);
    printf("mremap shrink from a hole -> %s\n", q == MAP_FAILED ? errname(errno) : "ok");
    mmap(r + 2 * PG, 2 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    q = mremap(r, 4 * PG, 6 * PG, MREMAP_MAYMOVE);
    printf("mremap grow across two VMAs -> %s\n", q == MAP_FAILED ? errname(errno) : "ok");
    q = mremap(r, PG, PG, MREMAP_MAYMOVE);
    printf("mremap of page 0 to the same size -> %s, VMAs %d\n",
           q == MAP_FAILED ? errname(errno) : q == r ? "in place" : "moved", vmas_in(r, 2 * PG));
    munmap(r, 8 * PG);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    write_only();
    madvise_kinds(dir);
    past_eof(dir);
    shared_anon_size();
    mprotect_partial(dir);
    mprotect_rejoin();
    mremap_ranges();
    return finish();
}
