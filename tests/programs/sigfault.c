/*
 * Synchronous faults delivered to handlers: SIGSEGV (siglongjmp out of a NULL
 * write; mprotect in the handler and retry), SIGFPE on integer divide by zero,
 * SIGILL on ud2 (the handler skips it), SIGTRAP on int3, a stack overflow
 * handled on the alternate stack.  siginfo and the ucontext's trap fields are
 * printed as derived facts.
 */
#include "common.h"
#include <signal.h>
#include <stdint.h>
#include <setjmp.h>
#include <ucontext.h>
#include <sys/mman.h>

static sigjmp_buf jb;
static volatile int got_sig, got_code, addr_ok, trapno, rip_ok, jump, fixed;
static volatile uintptr_t want_addr;
static char *volatile page;

static void handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    got_sig = si->si_signo;
    got_code = si->si_code;
    addr_ok = (uintptr_t)si->si_addr == want_addr;
    trapno = (int)uc->uc_mcontext.gregs[REG_TRAPNO];
    rip_ok = (uintptr_t)si->si_addr == (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    if (sig == SIGSEGV && page && !jump) {
        mprotect(page, 4096, PROT_READ | PROT_WRITE);     /* fix and return: the write is retried */
        fixed++;
        return;
    }
    if (sig == SIGILL) {
        uc->uc_mcontext.gregs[REG_RIP] += 2;                /* skip the ud2 */
        return;
    }
    if (jump)
        siglongjmp(jb, 1);
}

static void install(int sig, int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    check(sigaction(sig, &sa, NULL) == 0, "sigaction(%d)", sig);
}

static void report(const char *what)
{
    printf("%s: sig %d code %d addr_ok %d trapno %d\n", what, got_sig, got_code, addr_ok, trapno);
    got_sig = got_code = addr_ok = trapno = 0;
}

static volatile int stop_depth = -1;

static __attribute__((noinline)) int recurse(int n)
{
    volatile char buf[4096];
    buf[n & 4095] = (char)n;
    if (n == stop_depth)
        return 0;
    int r = recurse(n + 1);
    return r + buf[(n * 7) & 4095];
}

static volatile int zero;

int main(void)
{
    install(SIGSEGV, 0);
    install(SIGFPE, 0);
    install(SIGILL, 0);
    install(SIGTRAP, 0);

    /* NULL write: SEGV_MAPERR at address 0, siglongjmp out; the mask is restored */
    jump = 1;
    want_addr = 0;
    if (sigsetjmp(jb, 1) == 0) {
        *(volatile int *)0 = 1;
        printf("not reached\n");
    }
    report("null write");
    sigset_t m;
    sigprocmask(SIG_BLOCK, NULL, &m);
    printf("SIGSEGV blocked after siglongjmp: %d\n", sigismember(&m, SIGSEGV));

    /* read-only page: SEGV_ACCERR; the handler mprotects and returns, the write is redone */
    jump = 0;
    page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    want_addr = (uintptr_t)page + 8;
    page[8] = 42;
    report("write to read-only page");
    printf("fixed %d value %d\n", fixed, page[8]);
    munmap(page, 4096);

    /* PROT_NONE page read: SEGV_ACCERR too */
    page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    want_addr = (uintptr_t)page + 100;
    int v = ((volatile char *)page)[100];
    report("read of PROT_NONE page");
    printf("fixed %d value %d\n", fixed, v);
    munmap(page, 4096);
    page = NULL;

    /* unmapped high address: SEGV_MAPERR */
    jump = 1;
    want_addr = 0x7ff000000000ULL;
    if (sigsetjmp(jb, 1) == 0)
        (void)*(volatile int *)0x7ff000000000ULL;
    report("read of unmapped address");

    /* integer divide by zero: SIGFPE FPE_INTDIV at the idiv */
    want_addr = 0;
    if (sigsetjmp(jb, 1) == 0) {
        volatile int a = 7;
        printf("%d\n", a / zero);
    }
    printf("div0: sig %d code %d si_addr==rip %d trapno %d\n", got_sig, got_code, rip_ok, trapno);
    got_sig = 0;

    /* ud2: SIGILL ILL_ILLOPN; the handler advances RIP and execution continues */
    jump = 0;
    __asm__ volatile("ud2");
    printf("ud2: sig %d code %d si_addr==rip %d trapno %d, continued\n", got_sig, got_code, rip_ok, trapno);

    /* int3: SIGTRAP SI_KERNEL, returns after the int3 */
    want_addr = 0;
    __asm__ volatile("int3");
    report("int3 (continued)");

    /* stack overflow caught on the alternate stack */
    static char alt[65536];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
    install(SIGSEGV, SA_ONSTACK);
    jump = 1;
    if (sigsetjmp(jb, 1) == 0)
        recurse(0);
    printf("stack overflow: sig %d code is SEGV_MAPERR or ACCERR %d trapno %d\n", got_sig,
           got_code == SEGV_MAPERR || got_code == SEGV_ACCERR, trapno);
    return finish();
}
