/*
 * Floating point: double, float and x87 long double arithmetic, libm,
 * printf("%.17g"), SSE2 intrinsics, and AVX2 when the CPU has it. The AVX2
 * path and its scalar twin do the same IEEE operations in the same order, so
 * the printed text is identical either way. Also checks that XMM (and YMM)
 * registers survive a syscall.
 */
#include "common.h"
#include <math.h>
#include <stdint.h>
#include <emmintrin.h>
#include <immintrin.h>

#define N 1024

static double da[N], db[N];
static int32_t ia[N], ib[N];

/* 4 lanes of partial sums, combined as ((l0 + l1) + (l2 + l3)) */
static double dot_scalar(void)
{
    double lane[4] = {0, 0, 0, 0};
    for (int i = 0; i < N; i += 4)
        for (int l = 0; l < 4; l++)
            lane[l] = lane[l] + da[i + l] * db[i + l];
    return (lane[0] + lane[1]) + (lane[2] + lane[3]);
}

static int64_t isum_scalar(void)
{
    int32_t lane[8] = {0};
    for (int i = 0; i < N; i += 8)
        for (int l = 0; l < 8; l++)
            lane[l] += ia[i + l] * ib[i + l];
    int64_t s = 0;
    for (int l = 0; l < 8; l++)
        s += lane[l];
    return s;
}

__attribute__((target("avx2"))) static double dot_avx2(void)
{
    __m256d acc = _mm256_setzero_pd();
    for (int i = 0; i < N; i += 4) {
        __m256d x = _mm256_loadu_pd(&da[i]), y = _mm256_loadu_pd(&db[i]);
        acc = _mm256_add_pd(acc, _mm256_mul_pd(x, y)); /* no FMA: same rounding as scalar */
    }
    double lane[4];
    _mm256_storeu_pd(lane, acc);
    return (lane[0] + lane[1]) + (lane[2] + lane[3]);
}

__attribute__((target("avx2"))) static int64_t isum_avx2(void)
{
    __m256i acc = _mm256_setzero_si256();
    for (int i = 0; i < N; i += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)&ia[i]);
        __m256i y = _mm256_loadu_si256((const __m256i *)&ib[i]);
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(x, y));
    }
    int32_t lane[8];
    _mm256_storeu_si256((__m256i *)lane, acc);
    int64_t s = 0;
    for (int l = 0; l < 8; l++)
        s += lane[l];
    return s;
}

/* YMM upper halves must survive a syscall. */
__attribute__((target("avx2"), noinline)) static int ymm_survive_syscall(void)
{
    uint64_t in[4] = {0x0102030405060708ULL, 0x1112131415161718ULL, 0x2122232425262728ULL,
                      0x3132333435363738ULL};
    uint64_t out[4] = {0};
    long rax = SYS_getpid;
    __asm__ volatile("vmovdqu (%[in]), %%ymm7\n\t"
                     "vmovdqu (%[in]), %%ymm15\n\t"
                     "syscall\n\t"
                     "vpxor %%ymm15, %%ymm7, %%ymm15\n\t" /* zero if both survived equally */
                     "vmovdqu %%ymm7, (%[out])\n\t"
                     "vptest %%ymm15, %%ymm15\n\t"
                     "setz %%cl\n\t"
                     "movzbl %%cl, %%ecx\n\t"
                     "mov %%rcx, 24(%[out])\n\t"
                     "vzeroupper"
                     : "+a"(rax)
                     : [in] "r"(in), [out] "r"(out)
                     : "rcx", "r11", "memory", "xmm7", "xmm15");
    /* out[3] was overwritten with the vptest result; compare the rest */
    return rax > 0 && out[0] == in[0] && out[1] == in[1] && out[2] == in[2] && out[3] == 1;
}

/* All 16 XMM registers must survive a syscall. */
__attribute__((noinline)) static int xmm_survive_syscall(void)
{
    static uint8_t in[16 * 16], out[16 * 16];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)(i * 37 + 11);
    memset(out, 0, sizeof out);
    long rax = SYS_getpid;
#define LD(n) "movdqu " #n "*16(%[in]), %%xmm" #n "\n\t"
#define ST(n) "movdqu %%xmm" #n ", " #n "*16(%[out])\n\t"
    __asm__ volatile(LD(0) LD(1) LD(2) LD(3) LD(4) LD(5) LD(6) LD(7) LD(8) LD(9) LD(10) LD(11)
                         LD(12) LD(13) LD(14) LD(15) "syscall\n\t" ST(0) ST(1) ST(2) ST(3) ST(4) ST(5)
                             ST(6) ST(7) ST(8) ST(9) ST(10) ST(11) ST(12) ST(13) ST(14) ST(15)
                     : "+a"(rax)
                     : [in] "r"(in), [out] "r"(out)
                     : "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
                       "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return rax > 0 && memcmp(in, out, sizeof in) == 0;
}

int main(void)
{
    /* doubles */
    volatile double two = 2.0, three = 3.0, tenth = 0.1;
    printf("sqrt(2) %.17g\n", sqrt(two));
    printf("1/3 %.17g\n", 1.0 / three);
    printf("0.1+0.2 %.17g\n", tenth + 0.2);
    printf("exp(1) %.17g\n", exp(1.0 * (two - 1)));
    printf("log(10) %.17g\n", log(10.0 * (two - 1)));
    printf("sin(1) %.17g cos(1) %.17g\n", sin(two - 1), cos(two - 1));
    printf("atan2(1,2) %.17g\n", atan2(1.0, two));
    printf("pow(2,0.5) %.17g\n", pow(two, 0.5));
    printf("fmod(10,3) %.17g\n", fmod(10.0, three));
    double h = 0;
    for (int i = 1; i <= 100000; i++)
        h += 1.0 / i;
    printf("harmonic(1e5) %.17g\n", h);
    printf("1e308*10 %g, -1e308*10 %g, 0/0 is nan %s\n", 1e308 * (two * 5), -1e308 * (two * 5),
           isnan((two - 2) / (two - 2)) ? "yes" : "no");
    printf("denormal %.17g\n", 4.9406564584124654e-324 * (two - 1));
    printf("%%e %e %%a %a\n", 123456.789 * (two - 1), 1.0 / three);

    /* floats */
    volatile float f2 = 2.0f;
    float fs = 0;
    for (int i = 1; i <= 1000; i++)
        fs += 1.0f / (float)i;
    printf("sqrtf(2) %.9g harmonicf(1000) %.9g\n", (double)sqrtf(f2), (double)fs);
    printf("float 16777216+1 %.9g\n", (double)(16777216.0f + f2 / 2));

    /* x87 long double */
    volatile long double l2 = 2.0L;
    printf("sqrtl(2) %.21Lg\n", sqrtl(l2));
    printf("1/3 long double %.21Lg\n", 1.0L / (l2 + 1));

    /* integer <-> float conversions */
    volatile double big = 9007199254740993.0;
    printf("(long)2^53+1 %lld, (int)-2.5 %d, lrint(2.5) %ld\n", (long long)big, (int)(-2.5 * (two - 1)),
           lrint(2.5 * (two - 1)));

    /* SSE2 intrinsics */
    __m128d a = _mm_set_pd(9.0, 2.0), b = _mm_set_pd(4.0, 0.5);
    __m128d s = _mm_sqrt_pd(_mm_add_pd(_mm_mul_pd(a, b), a));
    double out2[2];
    _mm_storeu_pd(out2, s);
    printf("sse2 sqrt(a*b+a) %.17g %.17g\n", out2[0], out2[1]);
    __m128i x = _mm_set_epi32(1, 2, 3, 4), y = _mm_set_epi32(100, 200, 300, 400);
    int32_t o4[4];
    _mm_storeu_si128((__m128i *)o4, _mm_add_epi32(_mm_slli_epi32(x, 3), y));
    printf("sse2 epi32 %d %d %d %d\n", o4[0], o4[1], o4[2], o4[3]);
    __m128 fa = _mm_set_ps(1.5f, 2.5f, 3.5f, 4.5f);
    float of[4];
    _mm_storeu_ps(of, _mm_mul_ps(fa, fa));
    printf("sse ps %.9g %.9g %.9g %.9g\n", (double)of[0], (double)of[1], (double)of[2], (double)of[3]);

    /* AVX2 or its scalar twin */
    for (int i = 0; i < N; i++) {
        da[i] = sin(i * 0.001) * 1000.0;
        db[i] = 1.0 / (i + 1);
        ia[i] = i * 7 - 3000;
        ib[i] = (i % 13) - 6;
    }
    double ds = dot_scalar();
    int64_t is = isum_scalar();
    int have_avx2 = __builtin_cpu_supports("avx2");
    double dv = have_avx2 ? dot_avx2() : ds;
    int64_t iv = have_avx2 ? isum_avx2() : is;
    printf("vector dot %.17g\n", dv);
    printf("vector int sum %lld\n", (long long)iv);
    printf("vector path agrees with scalar %s\n", dv == ds && iv == is ? "yes" : "no");

    check(xmm_survive_syscall(), "xmm0-15 survive a syscall");
    check(have_avx2 ? ymm_survive_syscall() : 1, "ymm upper halves survive a syscall (or no avx2)");
    return finish();
}
