/*
 * aslimit: RLIMIT_AS counts every mapped byte (PROT_NONE too): mmap, mremap
 * and brk fail with ENOMEM past the soft limit, replacing a mapping in place
 * needs no room, munmap makes room, and a stack that would grow past it gets
 * SIGSEGV.  The limit is set relative to what the process already maps (read
 * from /proc/self/maps), so the layouts of Linux and the sandbox need not agree.
 */
#include "common.h"
#include "maps.h"
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define MIB (1L << 20)

static void add_size(unsigned long lo, unsigned long hi, const char *rest, void *ctx)
{
    (void)rest;
    *(long *)ctx += (long)(hi - lo);
}

static long mapped_now(void)
{
    long total = 0;
    maps_each(add_size, &total);
    return total;
}

static const char *mm(void *p)
{
    return p == MAP_FAILED ? errname(errno) : "ok";
}

static sigjmp_buf back;
static volatile int segv_code = -1;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    segv_code = si->si_code;
    siglongjmp(back, 1);
}

static __attribute__((noinline)) void deep(void)
{
    volatile char buf[4 * MIB];
    buf[0] = 1;                       /* the lowest byte first: the stack must grow 4 MiB */
    buf[sizeof buf - 1] = buf[0];
}

int main(void)
{
    struct rlimit orig;
    getrlimit(RLIMIT_AS, &orig);
    printf("RLIMIT_AS set relative to what is mapped\n");
    fflush(stdout);
    long base = mapped_now();
    struct rlimit lim = {(rlim_t)(base + 64 * MIB), orig.rlim_max};
    check(setrlimit(RLIMIT_AS, &lim) == 0, "setrlimit(RLIMIT_AS, mapped + 64 MiB)");
    int anon = MAP_PRIVATE | MAP_ANONYMOUS;
    char *a = mmap(NULL, 32 * MIB, PROT_READ | PROT_WRITE, anon, -1, 0);
    printf("mmap 32 MiB -> %s\n", mm(a));
    printf("mmap 48 MiB PROT_NONE -> %s\n", mm(mmap(NULL, 48 * MIB, PROT_NONE, anon | MAP_NORESERVE, -1, 0)));
    char *b = mmap(NULL, 16 * MIB, PROT_READ | PROT_WRITE, anon | MAP_NORESERVE, -1, 0);
    printf("mmap 16 MiB -> %s\n", mm(b));
    printf("MAP_FIXED over the 32 MiB -> %s\n", mm(mmap(a, 32 * MIB, PROT_READ, anon | MAP_FIXED, -1, 0)));
    printf("mremap 32 -> 80 MiB -> %s\n", mm(mremap(a, 32 * MIB, 80 * MIB, MREMAP_MAYMOVE)));
    char *cur = (char *)syscall(SYS_brk, 0);
    printf("brk +64 MiB -> %s\n", (char *)syscall(SYS_brk, cur + 64 * MIB) == cur + 64 * MIB ? "ok" : "refused");
    munmap(b, 16 * MIB);
    char *c = mremap(a, 32 * MIB, 40 * MIB, MREMAP_MAYMOVE);
    printf("after munmap of 16 MiB: mremap 32 -> 40 MiB -> %s\n", mm(c));
    if (c != MAP_FAILED)
        a = c;
    munmap(a, 40 * MIB);

    static char alt[64 << 10];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    lim.rlim_cur = (rlim_t)(mapped_now() + MIB);
    setrlimit(RLIMIT_AS, &lim);
    if (sigsetjmp(back, 1) == 0)
        deep();
    printf("stack growth of 4 MiB under mapped + 1 MiB -> SIGSEGV si_code %d\n", segv_code);
    check(setrlimit(RLIMIT_AS, &orig) == 0, "the old limit back");
    return finish();
}
