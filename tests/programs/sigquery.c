/*
 * rt_sigaction queries (act NULL), which kvmbox's KVM platform answers in the
 * guest while a process has one thread: every disposition read back, argument
 * errors, a bad oldact of every kind (EFAULT, never a signal), oldact in memory
 * that is not populated yet or copy-on-write, the registers and flags a syscall
 * keeps, DF set, and the table staying current across threads, fork, a
 * SA_RESETHAND delivery and execve.
 */
#include "common.h"
#include <signal.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

struct ksa { uint64_t handler, flags, restorer, mask; };

static long query(long sig, struct ksa *old, long size)
{
    return syscall(SYS_rt_sigaction, sig, NULL, old, size);
}

static long set(long sig, uint64_t handler, uint64_t flags, uint64_t mask)
{
    struct ksa sa = { handler, flags | SA_RESTORER, 0x1234, mask };
    return syscall(SYS_rt_sigaction, sig, &sa, NULL, 8L);
}

static void h1(int s) { (void)s; }
static void h2(int s) { (void)s; }
static volatile int usr2_hits;
static void h_usr2(int s) { (void)s; usr2_hits++; }

static int internal(int sig) { return sig >= 32 && sig <= 34; }   /* the C libraries' own */

static void every_disposition(void)
{
    int bad = 0, n = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || internal(sig))
            continue;
        uint64_t handler = sig % 5 == 0 ? (uint64_t)SIG_IGN : sig % 2 ? (uint64_t)h1 : (uint64_t)h2;
        uint64_t flags = (sig % 3 ? SA_RESTART : 0) | (sig % 4 ? SA_NODEFER : 0) | SA_ONSTACK;
        uint64_t mask = ~0ULL ^ (1ULL << (sig - 1));
        if (set(sig, handler, flags, mask) != 0) {
            printf("set %d: %s\n", sig, errname(errno));
            bad++;
            continue;
        }
        struct ksa o;
        memset(&o, 0xa5, sizeof o);
        long r = query(sig, &o, 8);
        /* Linux keeps the flags it knows and drops SIGKILL and SIGSTOP from the mask */
        uint64_t want_mask = mask & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
        if (r != 0 || o.handler != handler || o.flags != (flags | SA_RESTORER)
            || o.restorer != 0x1234 || o.mask != want_mask) {
            printf("signal %d read back wrong\n", sig);
            bad++;
        }
        n++;
    }
    check(bad == 0, "%d dispositions set and read back", n);
    struct ksa o;
    memset(&o, 0xa5, sizeof o);
    check(query(SIGKILL, &o, 8) == 0 && o.handler == 0 && o.flags == 0 && o.mask == 0,
          "SIGKILL reads as SIG_DFL, all zero");
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP && !internal(sig))
            set(sig, (uint64_t)SIG_DFL, 0, 0);
}

static void arguments(void)
{
    struct ksa o;
    check(query(SIGUSR1, NULL, 8) == 0, "NULL oldact -> 0");
    check_err(query(0, &o, 8), EINVAL, "sig 0");
    check_err(query(65, &o, 8), EINVAL, "sig 65");
    check_err(query(-1, &o, 8), EINVAL, "sig -1");
    check_err(query(1000, &o, 8), EINVAL, "sig 1000");
    check_err(query(SIGUSR1, &o, 0), EINVAL, "sigsetsize 0");
    check_err(query(SIGUSR1, &o, 4), EINVAL, "sigsetsize 4");
    check_err(query(SIGUSR1, &o, 16), EINVAL, "sigsetsize 16");
    set(SIGUSR1, (uint64_t)h1, 0, 0);
    memset(&o, 0, sizeof o);
    long r = query((1L << 32) | SIGUSR1, &o, 8);      /* Linux reads an int */
    check(r == 0 && o.handler == (uint64_t)h1, "sig with high bits set is read as an int");
    set(SIGUSR1, (uint64_t)SIG_DFL, 0, 0);
}

static void bad_oldact(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *two = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *gone = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(gone, page);
    mprotect(two + page, page, PROT_NONE);
    check_err(query(SIGUSR1, BADPTR, 8), EFAULT, "oldact 1");
    check_err(query(SIGUSR1, (struct ksa *)gone, 8), EFAULT, "oldact unmapped");
    check_err(query(SIGUSR1, (struct ksa *)ro, 8), EFAULT, "oldact read-only");
    check_err(query(SIGUSR1, (struct ksa *)(void *)h1, 8), EFAULT, "oldact in the program's text");
    check_err(query(SIGUSR1, (struct ksa *)(two + page - 16), 8), EFAULT, "oldact running into PROT_NONE");
    check_err(query(SIGUSR1, (struct ksa *)0x8000000000000000UL, 8), EFAULT, "oldact non-canonical");
    check_err(query(SIGUSR1, (struct ksa *)0xffffffff81000000UL, 8), EFAULT, "oldact in the kernel half");
    check_err(query(SIGUSR1, (struct ksa *)0x7f8000131000UL, 8), EFAULT, "oldact at kvmbox's stub data page");
    check(ro[0] == 0, "the read-only page is unchanged");
    /* still a working process: the next good query answers */
    struct ksa o;
    set(SIGUSR1, (uint64_t)h2, 0, 0);
    check(query(SIGUSR1, &o, 8) == 0 && o.handler == (uint64_t)h2, "a good query after the faults");
    set(SIGUSR1, (uint64_t)SIG_DFL, 0, 0);
    munmap(two, 2 * page);
    munmap(ro, page);
}

static void fresh_and_cow_memory(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *fresh = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    set(SIGUSR1, (uint64_t)h1, SA_RESTART, 0x10);
    struct ksa *o = (struct ksa *)(fresh + 2 * page + 8);
    check(query(SIGUSR1, o, 8) == 0 && o->handler == (uint64_t)h1 && o->mask == 0x10,
          "oldact in a page never touched");
    memset(o, 0, sizeof *o);
    pid_t pid = fork();
    if (pid == 0) {                         /* the page is copy-on-write now */
        set(SIGUSR1, (uint64_t)h2, 0, 0);
        _exit(query(SIGUSR1, o, 8) == 0 && o->handler == (uint64_t)h2 ? 0 : 1);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child queries into a copy-on-write page");
    check(o->handler == 0, "the parent's page is unchanged");
    check(query(SIGUSR1, o, 8) == 0 && o->handler == (uint64_t)h1, "the child's change stayed in the child");
    set(SIGUSR1, (uint64_t)SIG_DFL, 0, 0);
    munmap(fresh, 4 * page);
}

static void registers(void)
{
    struct ksa o;
    set(SIGUSR1, (uint64_t)h1, 0, 0);
    memset(&o, 0, sizeof o);
    long rax = SYS_rt_sigaction, rdi = SIGUSR1, rsi = 0, rdx = (long)&o, r10 = 8;
    register long r8 __asm__("r8") = 0x1111;
    register long r9 __asm__("r9") = 0x2222;
    register long r10r __asm__("r10") = r10;
    unsigned char cf, df_cf;
    __asm__ volatile("stc\n\tsyscall\n\tsetc %[cf]"
                     : "+a"(rax), "+D"(rdi), "+S"(rsi), "+d"(rdx), "+r"(r10r), "+r"(r8), "+r"(r9),
                       [cf] "=r"(cf)
                     : : "rcx", "r11", "memory", "cc");
    long got_r8 = r8, got_r9 = r9, got_r10 = r10r;      /* before any call clobbers them */
    check(rax == 0 && o.handler == (uint64_t)h1, "inline query");
    if (!(rdi == SIGUSR1 && rsi == 0 && rdx == (long)&o && got_r10 == 8 && got_r8 == 0x1111 && got_r9 == 0x2222))
        printf("rdi %ld rsi %ld rdx ok %d r10 %ld r8 %#lx r9 %#lx\n", rdi, rsi, rdx == (long)&o, got_r10, got_r8, got_r9);
    check(rdi == SIGUSR1 && rsi == 0 && rdx == (long)&o && got_r10 == 8 && got_r8 == 0x1111 && got_r9 == 0x2222,
          "rdi, rsi, rdx, r10, r8, r9 kept");
    check(cf == 1, "carry flag kept");
    memset(&o, 0, sizeof o);
    rax = SYS_rt_sigaction; rdi = SIGUSR1; rsi = 0; rdx = (long)&o; r10r = 8;
    __asm__ volatile("std\n\tstc\n\tsyscall\n\tsetc %[cf]\n\tcld"
                     : "+a"(rax), "+D"(rdi), "+S"(rsi), "+d"(rdx), "+r"(r10r), [cf] "=r"(df_cf)
                     : : "rcx", "r11", "r8", "r9", "memory", "cc");
    check(rax == 0 && o.handler == (uint64_t)h1 && rdi == SIGUSR1 && rsi == 0 && df_cf == 1,
          "a query with DF set");
    set(SIGUSR1, (uint64_t)SIG_DFL, 0, 0);
}

static volatile int go, seen_ok;

static void *reader(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
        ;
    struct ksa o;
    seen_ok = query(SIGUSR1, &o, 8) == 0 && o.handler == (uint64_t)h2;
    return NULL;
}

static void threads(void)
{
    set(SIGUSR1, (uint64_t)h1, 0, 0);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    set(SIGUSR1, (uint64_t)h2, 0, 0);          /* while the other thread spins in user code */
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    check(seen_ok, "another thread sees a change made before it looked");
    struct ksa o;
    set(SIGUSR1, (uint64_t)h1, 0, 0);
    check(query(SIGUSR1, &o, 8) == 0 && o.handler == (uint64_t)h1, "one thread again: a change is seen");
    set(SIGUSR1, (uint64_t)SIG_DFL, 0, 0);
}

static void resethand(void)
{
    struct ksa o;
    struct sigaction sa;                       /* the C library's, with its own restorer */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_usr2;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    check(usr2_hits == 1 && query(SIGUSR2, &o, 8) == 0 && o.handler == (uint64_t)SIG_DFL,
          "SA_RESETHAND: SIG_DFL after the delivery");
    printf("flags after SA_RESETHAND: %#llx\n", (unsigned long long)o.flags);
}

static int exec_child(void)
{
    struct ksa o;
    query(SIGUSR1, &o, 8);
    check(o.handler == (uint64_t)SIG_DFL, "after execve a caught signal is SIG_DFL");
    query(SIGUSR2, &o, 8);
    check(o.handler == (uint64_t)SIG_IGN && o.flags == 0 && o.mask == 0,
          "after execve an ignored signal stays ignored, flags and mask cleared");
    return finish();
}

static int pipefd[2];

static void *parked(void *arg)
{
    char c;
    (void)arg;
    return read(pipefd[0], &c, 1) == 1 ? NULL : arg;
}

/* "loop N": N queries (tests/syscalls/test_sigquery.py counts the exits); with
 * "threaded", while a second thread sleeps in read(2). */
static int loop(long n, int threaded)
{
    pthread_t t;
    if (threaded) {
        if (pipe(pipefd) != 0 || pthread_create(&t, NULL, parked, NULL) != 0)
            return 2;
    }
    set(SIGUSR1, (uint64_t)h1, 0, 0);
    long good = 0;
    for (long i = 0; i < n; i++) {
        struct ksa o;
        good += query(SIGUSR1, &o, 8) == 0 && o.handler == (uint64_t)h1;
    }
    if (threaded) {
        if (write(pipefd[1], "x", 1) != 1)
            return 2;
        pthread_join(t, NULL);
    }
    printf("%ld of %ld queries right\n", good, n);
    return good == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0)
        return exec_child();
    if (argc > 2 && strcmp(argv[1], "loop") == 0)
        return loop(atol(argv[2]), argc > 3 && strcmp(argv[3], "threaded") == 0);
    every_disposition();
    arguments();
    bad_oldact();
    fresh_and_cow_memory();
    registers();
    threads();
    resethand();
    set(SIGUSR1, (uint64_t)h1, 0, 0);
    set(SIGUSR2, (uint64_t)SIG_IGN, SA_RESTART, 0x20);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "exec-child", (char *)NULL);
        _exit(127);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the exec'd child passed");
    return finish();
}
