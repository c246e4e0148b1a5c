/*
 * getrandom: plain, GRND_NONBLOCK, zero length, large, bad flags, bad
 * pointer. Prints only facts about the bytes, never the bytes.
 */
#include "common.h"

#define GRND_NONBLOCK 1
#define GRND_RANDOM 2

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int main(void)
{
    unsigned char a[32] = {0}, b[32] = {0};
    long r = syscall(SYS_getrandom, a, sizeof a, 0);
    printf("getrandom %ld bytes, %s\n", r, all_zero(a, sizeof a) ? "all zero" : "not all zero");
    r = syscall(SYS_getrandom, b, sizeof b, GRND_NONBLOCK);
    printf("getrandom GRND_NONBLOCK %ld bytes, %s\n", r, all_zero(b, sizeof b) ? "all zero" : "not all zero");
    printf("two draws differ %s\n", memcmp(a, b, sizeof a) ? "yes" : "no");
    r = syscall(SYS_getrandom, a, 0, 0);
    printf("getrandom 0 bytes -> %ld\n", r);

    static unsigned char big[1 << 16];
    size_t got = 0;
    while (got < sizeof big) {
        r = syscall(SYS_getrandom, big + got, sizeof big - got, 0);
        if (r <= 0)
            break;
        got += r;
    }
    printf("getrandom filled 64 KiB %s\n", got == sizeof big ? "yes" : "no");
    unsigned hist[256] = {0};
    for (size_t i = 0; i < sizeof big; i++)
        hist[big[i]]++;
    int seen = 0;
    for (int i = 0; i < 256; i++)
        seen += hist[i] > 0;
    printf("all 256 byte values appear %s\n", seen == 256 ? "yes" : "no");

    errno = 0;
    check_err(syscall(SYS_getrandom, BADPTR, 16, 0), EFAULT, "getrandom(bad pointer)");
    errno = 0;
    check_err(syscall(SYS_getrandom, a, sizeof a, 0x100), EINVAL, "getrandom(bad flags)");
    return finish();
}
