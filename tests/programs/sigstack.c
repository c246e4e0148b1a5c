/*
 * sigstack: signal frames written below the current extent of the stack.
 * 1. A SA_NODEFER handler that raises its own signal, 100 deep: the frames
 *    walk the stack down past what was mapped at start.
 * 2. A signal taken with rsp just below the stack mapping (a raw tgkill with
 *    rsp moved there, nothing else touching the stack): the frame write is
 *    what must grow the stack, as a user fault would.
 * 3. The same 1 MiB below under a 256 KiB RLIMIT_STACK: the frame cannot be
 *    written, so Linux forces SIGSEGV (caught on an alternate stack).
 * Only outcomes are printed: frame sizes differ with the CPU's XSAVE area.
 */
#include "common.h"
#include "maps.h"
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>

static volatile int depth, deepest;
static volatile int segv_code = -1;
static sigjmp_buf back;

static void recurse(int sig)
{
    int d = ++depth;
    if (d > deepest)
        deepest = d;
    if (d < 100)
        raise(sig);
    depth--;
}

static volatile int ran;
static void mark(int sig)
{
    (void)sig;
    ran++;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    segv_code = si->si_code;
    siglongjmp(back, 1);
}

static void find_stack(unsigned long lo, unsigned long hi, const char *rest, void *ctx)
{
    (void)hi;
    if (strstr(rest, "[stack]"))
        *(uintptr_t *)ctx = lo;
}

/* Where the [stack] mapping starts, from /proc/self/maps. */
static uintptr_t stack_start(void)
{
    uintptr_t lo = 0;
    maps_each(find_stack, &lo);
    return lo;
}

/* tgkill(self, sig) with rsp at `sp`: the only stack writes are the kernel's frame. */
static long kill_self_with_stack_at(uintptr_t sp, int sig)
{
    long ret;
    long pid = getpid(), tid = syscall(SYS_gettid);
    register long r10 asm("r10") = 0;
    asm volatile("mov %%rsp, %%r12\n\t"
                 "mov %[sp], %%rsp\n\t"
                 "syscall\n\t"
                 "mov %%r12, %%rsp"
                 : "=a"(ret)
                 : "a"((long)SYS_tgkill), "D"(pid), "S"(tid), "d"((long)sig), [sp] "r"(sp), "r"(r10)
                 : "r12", "rcx", "r11", "memory");
    return ret;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = recurse;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    check(deepest == 100 && depth == 0, "recursive SA_NODEFER handler reached depth 100");

    sa.sa_handler = mark;
    sa.sa_flags = 0;
    sigaction(SIGUSR2, &sa, NULL);
    uintptr_t lo = stack_start();
    check(lo != 0, "the [stack] mapping is in /proc/self/maps");
    long r = kill_self_with_stack_at(lo - 64, SIGUSR2);
    check(r == 0 && ran == 1, "a frame written just below the stack grows it; the handler ran");
    check(stack_start() < lo, "the stack mapping now starts lower");

    static char alt[64 << 10];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    struct rlimit rl;
    getrlimit(RLIMIT_STACK, &rl);
    struct rlimit small = {256 << 10, rl.rlim_max};
    setrlimit(RLIMIT_STACK, &small);
    ran = 0;
    lo = stack_start();
    if (sigsetjmp(back, 1) == 0)
        kill_self_with_stack_at(lo - (1 << 20), SIGUSR2);
    printf("1 MiB below under a 256 KiB RLIMIT_STACK: handler ran %d, SIGSEGV si_code %d\n", ran, segv_code);
    setrlimit(RLIMIT_STACK, &rl);
    return finish();
}
