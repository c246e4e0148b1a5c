/*
 * forkmem: memory across fork.  Without arguments: madvise's fork advice
 * (MADV_DONTFORK, MADV_DOFORK, MADV_WIPEONFORK, MADV_KEEPONFORK) on each kind of
 * mapping, and how it splits and rejoins VMAs.  With "fork": a forked child's view
 * of private (copy-on-write), shared, MADV_DONTFORK and MADV_WIPEONFORK memory.
 * argv[1]/argv[2]: "fork" and/or a directory for the files mapped (default /dev/shm).
 * Every answer printed, never an address.
 */
#include "common.h"
#include "maps.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PG 4096L

static const char *ret(long r)
{
    return r == -1 ? errname(errno) : "ok";
}

struct span { unsigned long lo, hi; int n; };

static void count_one(unsigned long lo, unsigned long hi, const char *rest, void *ctx)
{
    struct span *s = ctx;
    (void)rest;
    if (lo < s->hi && hi > s->lo)
        s->n++;
}

/* How many VMAs /proc/self/maps shows over [p, p+n). */
static int vmas(char *p, long n)
{
    struct span s = {(unsigned long)p, (unsigned long)p + n, 0};
    maps_each(count_one, &s);
    return s.n;
}

static void advice(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/forkmem-file", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    unlink(path);
    if (fd < 0 || ftruncate(fd, 3 * PG) != 0) {
        printf("no file: %s\n", errname(errno));
        return;
    }
    struct { const char *name; int prot, flags, fd; } kinds[] = {
        {"private anon rw", PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1},
        {"private anon none", PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1},
        {"private file rw", PROT_READ | PROT_WRITE, MAP_PRIVATE, fd},
        {"shared anon rw", PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1},
        {"shared file rw", PROT_READ | PROT_WRITE, MAP_SHARED, fd},
    };
    static const int advs[] = {MADV_DONTFORK, MADV_WIPEONFORK};
    static const int undo[] = {MADV_DOFORK, MADV_KEEPONFORK};
    static const char *names[] = {"DONTFORK", "WIPEONFORK"};
    for (unsigned i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        for (int k = 0; k < 2; k++) {
            char *p = mmap(NULL, 3 * PG, kinds[i].prot, kinds[i].flags, kinds[i].fd, 0);
            if (p == MAP_FAILED) {
                printf("%s: mmap failed\n", kinds[i].name);
                continue;
            }
            printf("%s %s middle page -> %s", kinds[i].name, names[k], ret(madvise(p + PG, PG, advs[k])));
            printf(", %d VMAs", vmas(p, 3 * PG));
            printf("; again -> %s, %d VMAs", ret(madvise(p + PG, PG, advs[k])), vmas(p, 3 * PG));
            /* Whether undoing merges the pieces again differs between kernels: not printed. */
            printf("; undone -> %s\n", ret(madvise(p, 3 * PG, undo[k])));
            munmap(p, 3 * PG);
        }
    /* A hole in the range: the VMAs around it take the advice, then ENOMEM. */
    char *r = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(r + PG, PG);
    printf("DONTFORK over a hole -> %s", ret(madvise(r, 3 * PG, MADV_DONTFORK)));
    printf("; undone page 0 -> %s\n", ret(madvise(r, PG, MADV_DOFORK)));
    /* WIPEONFORK over private anon | shared anon: the first VMA keeps it, then EINVAL. */
    mmap(r + PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("WIPEONFORK over private|shared|private -> %s", ret(madvise(r, 3 * PG, MADV_WIPEONFORK)));
    printf(", %d VMAs\n", vmas(r, 3 * PG));
    printf("unknown advice 77 -> %s\n", ret(madvise(r, PG, 77)));
    munmap(r, 3 * PG);
    close(fd);
}

static sigjmp_buf env;

static void on_segv(int sig)
{
    siglongjmp(env, sig);
}

/* The child's view of each kind of memory; the parent's view after the child is gone. */
static void across_fork(void)
{
    long n = 256;                                   /* a 1 MiB private mapping */
    char *priv = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *shared = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char *gone = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *wiped = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *ro = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < n; i++)
        priv[i * PG] = 'p';
    shared[0] = 's';
    gone[0] = 'g';
    wiped[0] = wiped[PG] = 'w';
    ro[0] = 'r';
    mprotect(ro, PG, PROT_READ);
    printf("madvise DONTFORK -> %s, WIPEONFORK -> %s\n", ret(madvise(gone, PG, MADV_DONTFORK)),
           ret(madvise(wiped, 2 * PG, MADV_WIPEONFORK)));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        printf("child: private %c, shared %c, wiped %d %d, read-only %c\n", priv[0], shared[0],
               wiped[0], wiped[PG], ro[0]);
        for (long i = 0; i < n; i++)
            priv[i * PG] = 'c';
        shared[0] = 'S';
        wiped[0] = 'W';
        mprotect(ro, PG, PROT_READ | PROT_WRITE);
        ro[0] = 'R';
        signal(SIGSEGV, on_segv);
        if (sigsetjmp(env, 1) == 0) {
            printf("child: DONTFORK page holds %c\n", gone[0]);
        } else {
            printf("child: DONTFORK page -> SIGSEGV\n");
        }
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    long same = 0;
    for (long i = 0; i < n; i++)
        same += priv[i * PG] == 'p';
    printf("parent: child exited %d; private %ld/%ld unchanged, shared %c, DONTFORK %c, "
           "wiped %c %c, read-only %c\n", WEXITSTATUS(status), same, n, shared[0], gone[0],
           wiped[0], wiped[PG], ro[0]);
    priv[0] = 'P';                                  /* the last holder writes in place */
    printf("parent: writes its own page -> %c\n", priv[0]);
}

int main(int argc, char **argv)
{
    int fork_too = argc > 1 && strcmp(argv[1], "fork") == 0;
    const char *dir = argc > 1 + fork_too ? argv[1 + fork_too] : "/dev/shm";
    setvbuf(stdout, NULL, _IOLBF, 0);
    advice(dir);
    if (fork_too)
        across_fork();
    return 0;
}
