/*
 * A guest taking timer signals at a high rate (ITIMER_REAL every 1 ms, a POSIX
 * timer every 1.5 ms, ITIMER_PROF every 2 ms of CPU) while it page-faults,
 * makes syscalls and spins in user mode with known values in 9 general and
 * 16 XMM registers.  Every signal must come back with every register intact
 * (checked after each spin), and page contents must survive.  Prints only
 * relations, so native and sandbox outputs compare byte for byte.
 */
#include "common.h"
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <ucontext.h>

#define MS 1000000LL
#define MAP_SIZE (80u << 20)          /* past the eager-population limit: touches fault */

static volatile long alrm, rt, prof;
static volatile double sink;
static int corrupt;                        /* self-test: a handler that edits r12 must be caught */

static long long now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    if (corrupt)
        ((ucontext_t *)uc)->uc_mcontext.gregs[REG_R12] ^= 1;
    double d = 1.0;
    for (int i = 0; i < 50; i++)          /* clobbers XMM registers in the handler */
        d = d * 1.000001 + (double)i;
    sink = d;
    if (sig == SIGALRM)
        alrm++;
    else if (sig == SIGPROF)
        prof++;
    else
        rt++;
    if ((alrm & 15) == 0)
        syscall(SYS_getppid);             /* a syscall from the handler now and then */
}

/* Known values in rbx, r8-r15 and xmm0-15, a spin of `iters`, then a comparison: 0 if intact. */
static long regcheck(long iters)
{
    long bad;
    __asm__ volatile(
        "movabs $0x1111111111111111, %%rbx\n\t"
        "movabs $0x2222222222222222, %%r8\n\t"
        "movabs $0x3333333333333333, %%r9\n\t"
        "movabs $0x4444444444444444, %%r10\n\t"
        "movabs $0x5555555555555555, %%r11\n\t"
        "movabs $0x6666666666666666, %%r12\n\t"
        "movabs $0x7777777777777777, %%r13\n\t"
        "movabs $0x8888888888888888, %%r14\n\t"
        "movabs $0x9999999999999999, %%r15\n\t"
        "movabs $0x123456789abcdef, %%rax\n\t movq %%rax, %%xmm0\n\t movabs $0xfedcba9876543210, %%rax\n\t pinsrq $1, %%rax, %%xmm0\n\t"
        "movabs $0x12345678aaccef0, %%rax\n\t movq %%rax, %%xmm1\n\t movabs $0xfedcba987553310f, %%rax\n\t pinsrq $1, %%rax, %%xmm1\n\t"
        "movabs $0x12345678badcff1, %%rax\n\t movq %%rax, %%xmm2\n\t movabs $0xfedcba987452300e, %%rax\n\t pinsrq $1, %%rax, %%xmm2\n\t"
        "movabs $0x12345678caed0f2, %%rax\n\t movq %%rax, %%xmm3\n\t movabs $0xfedcba9873512f0d, %%rax\n\t pinsrq $1, %%rax, %%xmm3\n\t"
        "movabs $0x12345678dafd1f3, %%rax\n\t movq %%rax, %%xmm4\n\t movabs $0xfedcba9872502e0c, %%rax\n\t pinsrq $1, %%rax, %%xmm4\n\t"
        "movabs $0x12345678eb0d2f4, %%rax\n\t movq %%rax, %%xmm5\n\t movabs $0xfedcba98714f2d0b, %%rax\n\t pinsrq $1, %%rax, %%xmm5\n\t"
        "movabs $0x12345678fb1d3f5, %%rax\n\t movq %%rax, %%xmm6\n\t movabs $0xfedcba98704e2c0a, %%rax\n\t pinsrq $1, %%rax, %%xmm6\n\t"
        "movabs $0x123456790b2d4f6, %%rax\n\t movq %%rax, %%xmm7\n\t movabs $0xfedcba986f4d2b09, %%rax\n\t pinsrq $1, %%rax, %%xmm7\n\t"
        "movabs $0x123456791b3d5f7, %%rax\n\t movq %%rax, %%xmm8\n\t movabs $0xfedcba986e4c2a08, %%rax\n\t pinsrq $1, %%rax, %%xmm8\n\t"
        "movabs $0x123456792b4d6f8, %%rax\n\t movq %%rax, %%xmm9\n\t movabs $0xfedcba986d4b2907, %%rax\n\t pinsrq $1, %%rax, %%xmm9\n\t"
        "movabs $0x123456793b5d7f9, %%rax\n\t movq %%rax, %%xmm10\n\t movabs $0xfedcba986c4a2806, %%rax\n\t pinsrq $1, %%rax, %%xmm10\n\t"
        "movabs $0x123456794b6d8fa, %%rax\n\t movq %%rax, %%xmm11\n\t movabs $0xfedcba986b492705, %%rax\n\t pinsrq $1, %%rax, %%xmm11\n\t"
        "movabs $0x123456795b7d9fb, %%rax\n\t movq %%rax, %%xmm12\n\t movabs $0xfedcba986a482604, %%rax\n\t pinsrq $1, %%rax, %%xmm12\n\t"
        "movabs $0x123456796b8dafc, %%rax\n\t movq %%rax, %%xmm13\n\t movabs $0xfedcba9869472503, %%rax\n\t pinsrq $1, %%rax, %%xmm13\n\t"
        "movabs $0x123456797b9dbfd, %%rax\n\t movq %%rax, %%xmm14\n\t movabs $0xfedcba9868462402, %%rax\n\t pinsrq $1, %%rax, %%xmm14\n\t"
        "movabs $0x123456798badcfe, %%rax\n\t movq %%rax, %%xmm15\n\t movabs $0xfedcba9867452301, %%rax\n\t pinsrq $1, %%rax, %%xmm15\n\t"
        "mov %[n], %%rcx\n"
        "1:\n\t dec %%rcx\n\t jnz 1b\n\t"
        "xor %%rdx, %%rdx\n\t"
        "movabs $0x1111111111111111, %%rax\n\t xor %%rax, %%rbx\n\t or %%rbx, %%rdx\n\t"
        "movabs $0x2222222222222222, %%rax\n\t xor %%rax, %%r8\n\t or %%r8, %%rdx\n\t"
        "movabs $0x3333333333333333, %%rax\n\t xor %%rax, %%r9\n\t or %%r9, %%rdx\n\t"
        "movabs $0x4444444444444444, %%rax\n\t xor %%rax, %%r10\n\t or %%r10, %%rdx\n\t"
        "movabs $0x5555555555555555, %%rax\n\t xor %%rax, %%r11\n\t or %%r11, %%rdx\n\t"
        "movabs $0x6666666666666666, %%rax\n\t xor %%rax, %%r12\n\t or %%r12, %%rdx\n\t"
        "movabs $0x7777777777777777, %%rax\n\t xor %%rax, %%r13\n\t or %%r13, %%rdx\n\t"
        "movabs $0x8888888888888888, %%rax\n\t xor %%rax, %%r14\n\t or %%r14, %%rdx\n\t"
        "movabs $0x9999999999999999, %%rax\n\t xor %%rax, %%r15\n\t or %%r15, %%rdx\n\t"
        "movq %%xmm0, %%rax\n\t movabs $0x123456789abcdef, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm0, %%rax\n\t movabs $0xfedcba9876543210, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm1, %%rax\n\t movabs $0x12345678aaccef0, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm1, %%rax\n\t movabs $0xfedcba987553310f, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm2, %%rax\n\t movabs $0x12345678badcff1, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm2, %%rax\n\t movabs $0xfedcba987452300e, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm3, %%rax\n\t movabs $0x12345678caed0f2, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm3, %%rax\n\t movabs $0xfedcba9873512f0d, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm4, %%rax\n\t movabs $0x12345678dafd1f3, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm4, %%rax\n\t movabs $0xfedcba9872502e0c, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm5, %%rax\n\t movabs $0x12345678eb0d2f4, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm5, %%rax\n\t movabs $0xfedcba98714f2d0b, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm6, %%rax\n\t movabs $0x12345678fb1d3f5, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm6, %%rax\n\t movabs $0xfedcba98704e2c0a, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm7, %%rax\n\t movabs $0x123456790b2d4f6, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm7, %%rax\n\t movabs $0xfedcba986f4d2b09, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm8, %%rax\n\t movabs $0x123456791b3d5f7, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm8, %%rax\n\t movabs $0xfedcba986e4c2a08, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm9, %%rax\n\t movabs $0x123456792b4d6f8, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm9, %%rax\n\t movabs $0xfedcba986d4b2907, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm10, %%rax\n\t movabs $0x123456793b5d7f9, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm10, %%rax\n\t movabs $0xfedcba986c4a2806, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm11, %%rax\n\t movabs $0x123456794b6d8fa, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm11, %%rax\n\t movabs $0xfedcba986b492705, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm12, %%rax\n\t movabs $0x123456795b7d9fb, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm12, %%rax\n\t movabs $0xfedcba986a482604, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm13, %%rax\n\t movabs $0x123456796b8dafc, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm13, %%rax\n\t movabs $0xfedcba9869472503, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm14, %%rax\n\t movabs $0x123456797b9dbfd, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm14, %%rax\n\t movabs $0xfedcba9868462402, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "movq %%xmm15, %%rax\n\t movabs $0x123456798badcfe, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t pextrq $1, %%xmm15, %%rax\n\t movabs $0xfedcba9867452301, %%rcx\n\t xor %%rcx, %%rax\n\t or %%rax, %%rdx\n\t"
        "mov %%rdx, %[bad]\n\t"
        : [bad] "=m"(bad)
        : [n] "r"(iters)
        : "rbx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rax", "rcx", "rdx", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    return bad;
}

int main(int argc, char **argv)
{
    corrupt = argc > 1 && !strcmp(argv[1], "corrupt");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGPROF, &sa, NULL);
    sigaction(SIGRTMIN, &sa, NULL);
    struct { union sigval v; int signo, notify, tid, pad[11]; } ev;
    memset(&ev, 0, sizeof ev);
    ev.signo = SIGRTMIN;
    ev.notify = SIGEV_SIGNAL;
    int id;
    syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &id);
    struct itimerspec its = {{0, 1500000}, {0, 1500000}};
    syscall(SYS_timer_settime, id, 0, &its, NULL);
    struct itimerval real = {{0, 1000}, {0, 1000}}, cpu = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_REAL, &real, NULL);
    setitimer(ITIMER_PROF, &cpu, NULL);

    long rounds = 0, reg_failures = 0, mem_failures = 0, syscalls = 0;
    long long start = now();
    long long end = now() + 3000 * MS;
    while (now() < end || rounds < 4) {
        reg_failures += regcheck(2000000) != 0;
        unsigned char *p = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("mmap failed: %s\n", errname(errno));
            return 1;
        }
        size_t off = (size_t)(rounds % 8) << 20;      /* a different 16 MiB window each round */
        for (size_t i = off; i < off + (16u << 20); i += 4096)
            p[i] = (unsigned char)(i >> 12);
        for (size_t i = off; i < off + (16u << 20); i += 4096)
            mem_failures += p[i] != (unsigned char)(i >> 12);
        munmap(p, MAP_SIZE);
        for (int i = 0; i < 50; i++) {
            syscall(SYS_getppid);
            syscalls++;
        }
        rounds++;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    setitimer(ITIMER_PROF, &off, NULL);
    syscall(SYS_timer_delete, id);
    printf("rounds >= 4: %s\n", rounds >= 4 ? "yes" : "no");
    printf("registers intact after every spin: %s\n", reg_failures ? "NO" : "yes");
    printf("pages intact: %s\n", mem_failures ? "NO" : "yes");
    printf("SIGALRM >= 100: %s, POSIX timer >= 100: %s, SIGPROF >= 10: %s\n",
           alrm >= 100 ? "yes" : "no", rt >= 100 ? "yes" : "no", prof >= 10 ? "yes" : "no");
    printf("signals seen in a spin: %s\n", alrm + rt + prof > rounds ? "yes" : "no");
    fflush(stdout);
    if (argc > 1 && !strcmp(argv[1], "counts"))
        fprintf(stderr, "rounds %ld alrm %ld rt %ld prof %ld syscalls %ld in %.2f s\n", rounds, alrm, rt,
                prof, syscalls, (now() - start) / 1e9);
    return reg_failures || mem_failures;
}
