/*
 * gpfault: memory accesses that raise #GP (or #SS) rather than #PF: a non-canonical
 * address, or a misaligned operand of an alignment-checking SSE/AVX instruction,
 * through many instruction kinds (plain mov, legacy SSE, x87, AVX, BMI, string ops).
 * A SIGSEGV/SIGBUS/SIGILL handler on an alternate stack records si_signo, si_code,
 * si_addr and the trap number, then siglongjmps out.  Instructions the CPU lacks
 * (CPUID) are reported as skipped, so the output is the same natively and boxed.
 */
#include "common.h"
#include <cpuid.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>

static sigjmp_buf jb;
static volatile int got_sig, got_code, trapno;
static volatile uintptr_t got_addr;

static void handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    got_sig = sig;
    got_code = si->si_code;
    got_addr = (uintptr_t)si->si_addr;
    trapno = (int)uc->uc_mcontext.gregs[REG_TRAPNO];
    siglongjmp(jb, 1);
}

enum feat { ANY, AVX, AVX2, POPCNT, SSE42, MOVBE, BMI1 };

static int has(enum feat f)
{
    unsigned a, b, c, d;
    if (f == ANY)
        return 1;
    __cpuid(1, a, b, c, d);
    int osxsave_avx = (c & bit_OSXSAVE) && (c & bit_AVX);
    if (osxsave_avx) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        osxsave_avx = (lo & 6) == 6;
    }
    switch (f) {
    case AVX: return osxsave_avx;
    case POPCNT: return !!(c & bit_POPCNT);
    case SSE42: return !!(c & bit_SSE4_2);
    case MOVBE: return !!(c & bit_MOVBE);
    default: break;
    }
    if (__get_cpuid_max(0, 0) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (f == AVX2) return osxsave_avx && (b & bit_AVX2);
    if (f == BMI1) return !!(b & bit_BMI);
    return 0;
}

static const uintptr_t NONCANON = 0x8000000000000000ULL;
static const uintptr_t NEAR_EDGE = 0x00007ffffffffff8ULL;   /* 16 bytes from here cross the hole */
static char buf[64] __attribute__((aligned(64)));

#define CASE(name, feat, ptr, text) do {                                               \
        if (!has(feat)) { printf("%-22s skipped (no cpu support)\n", name); break; }   \
        got_sig = got_code = trapno = 0; got_addr = 1;                                 \
        volatile uintptr_t p_ = (uintptr_t)(ptr);                                      \
        if (sigsetjmp(jb, 1) == 0) {                                                   \
            __asm__ volatile(text :: "r"(p_) : "rax", "rcx", "rdx", "rsi", "rdi",       \
                             "xmm0", "memory", "cc");                                  \
            printf("%-22s no fault\n", name);                                          \
        } else {                                                                       \
            printf("%-22s sig %d code %d addr %s trapno %d\n", name, got_sig, got_code,  \
                   got_addr == 0 ? "0" : got_addr == p_ ? "=ptr" : "other", trapno);   \
        }                                                                              \
    } while (0)

int main(void)
{
    static char alt[65536];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    check(sigaltstack(&ss, NULL) == 0, "sigaltstack");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        check(sigaction(sigs[i], &sa, NULL) == 0, "sigaction");

    /* non-canonical addresses */
    CASE("mov", ANY, NONCANON, "mov (%0), %%rax");
    CASE("mov store", ANY, NONCANON, "movq $1, (%0)");
    CASE("movaps", ANY, NONCANON, "movaps (%0), %%xmm0");
    CASE("movdqu", ANY, NONCANON, "movdqu (%0), %%xmm0");
    CASE("movdqu store", ANY, NONCANON, "movdqu %%xmm0, (%0)");
    CASE("paddd", ANY, NONCANON, "paddd (%0), %%xmm0");
    CASE("addps", ANY, NONCANON, "addps (%0), %%xmm0");
    CASE("cvtsi2sd", ANY, NONCANON, "cvtsi2sdq (%0), %%xmm0");
    CASE("movq xmm", ANY, NONCANON, "movq (%0), %%xmm0");
    CASE("fld", ANY, NONCANON, "fldl (%0); fstp %%st(0)");
    CASE("fxsave", ANY, NONCANON, "fxsave (%0)");
    CASE("lock add", ANY, NONCANON, "lock addq $1, (%0)");
    CASE("rep movsb", ANY, NONCANON, "mov %0, %%rsi; lea -64(%%rsp), %%rdi; mov $1, %%ecx; rep movsb");
    CASE("call indirect", ANY, NONCANON, "call *(%0)");
    CASE("fs: mov", ANY, NONCANON, "mov %%fs:(%0), %%rax");
    CASE("popcnt", POPCNT, NONCANON, "popcnt (%0), %%rax");
    CASE("crc32", SSE42, NONCANON, "crc32q (%0), %%rax");
    CASE("movbe", MOVBE, NONCANON, "movbe (%0), %%rax");
    CASE("andn", BMI1, NONCANON, "andn (%0), %%rax, %%rax");
    CASE("vmovdqu", AVX, NONCANON, "vmovdqu (%0), %%xmm0");
    CASE("vmovdqu ymm store", AVX, NONCANON, "vmovdqu %%ymm0, (%0); vzeroupper");
    CASE("vpaddd", AVX, NONCANON, "vpaddd (%0), %%xmm0, %%xmm0");
    CASE("vpaddd ymm", AVX2, NONCANON, "vpaddd (%0), %%ymm0, %%ymm0; vzeroupper");
    CASE("vmovdqu crossing", AVX, NEAR_EDGE, "vmovdqu (%0), %%xmm0");
    CASE("rbp based (#SS)", ANY, NONCANON, "push %%rbp; mov %0, %%rbp; mov (%%rbp), %%rax; pop %%rbp");

    /* misaligned operands of alignment-checking instructions */
    CASE("movaps misaligned", ANY, buf + 8, "movaps (%0), %%xmm0");
    CASE("paddd misaligned", ANY, buf + 8, "paddd (%0), %%xmm0");
    CASE("pcmpistri misaligned", SSE42, buf + 8, "pcmpistri $0, (%0), %%xmm0");
    CASE("movdqu misaligned", ANY, buf + 8, "movdqu (%0), %%xmm0");
    CASE("vmovaps misaligned", AVX, buf + 16, "vmovaps (%0), %%ymm0; vzeroupper");
    CASE("vmovdqa misaligned", AVX, buf + 8, "vmovdqa (%0), %%xmm0");
    CASE("vpaddd misaligned", AVX, buf + 8, "vpaddd (%0), %%xmm0, %%xmm0");
    return finish();
}
