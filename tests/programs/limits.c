/*
 * prlimit64, getrlimit, setrlimit: lower RLIMIT_NOFILE's soft limit and read
 * it back both ways; whether RLIMIT_STACK's soft limit is 8 MiB (both sides
 * inherit the test runner's); error cases.
 */
#include "common.h"
#include <sys/resource.h>

struct rl64 {
    unsigned long long cur, max;
};

static long prl64(int res, const struct rl64 *new, struct rl64 *old)
{
    return syscall(SYS_prlimit64, 0, res, new, old);
}

int main(void)
{
    struct rlimit st;
    check(getrlimit(RLIMIT_STACK, &st) == 0, "getrlimit RLIMIT_STACK");
    printf("RLIMIT_STACK soft is 8 MiB %s\n", st.rlim_cur == 8UL << 20 ? "yes" : "no");
    struct rl64 st64;
    check(prl64(RLIMIT_STACK, NULL, &st64) == 0, "prlimit64 RLIMIT_STACK read");
    printf("prlimit64 agrees with getrlimit %s\n",
           st64.cur == st.rlim_cur && st64.max == st.rlim_max ? "yes" : "no");

    struct rlimit nf;
    check(getrlimit(RLIMIT_NOFILE, &nf) == 0, "getrlimit RLIMIT_NOFILE");
    printf("RLIMIT_NOFILE soft >= 64 %s\n", nf.rlim_cur >= 64 ? "yes" : "no");
    printf("RLIMIT_NOFILE soft <= hard %s\n", nf.rlim_cur <= nf.rlim_max ? "yes" : "no");

    struct rlimit lowered = {64, nf.rlim_max};
    check(setrlimit(RLIMIT_NOFILE, &lowered) == 0, "setrlimit RLIMIT_NOFILE soft 64");
    struct rlimit back;
    check(getrlimit(RLIMIT_NOFILE, &back) == 0, "getrlimit after setrlimit");
    printf("RLIMIT_NOFILE soft now %lu, hard unchanged %s\n", (unsigned long)back.rlim_cur,
           back.rlim_max == nf.rlim_max ? "yes" : "no");

    /* prlimit64: set 32, get the old value (64) in the same call */
    struct rl64 new32 = {32, nf.rlim_max}, old;
    check(prl64(RLIMIT_NOFILE, &new32, &old) == 0, "prlimit64 set RLIMIT_NOFILE 32");
    printf("prlimit64 old soft %llu\n", old.cur);
    struct rl64 now;
    check(prl64(RLIMIT_NOFILE, NULL, &now) == 0, "prlimit64 read back");
    printf("prlimit64 soft now %llu\n", now.cur);
    check(getrlimit(RLIMIT_NOFILE, &back) == 0 && back.rlim_cur == 32, "getrlimit sees 32");

    /* raw getrlimit/setrlimit */
    struct rlimit raw;
    check(syscall(SYS_getrlimit, RLIMIT_NOFILE, &raw) == 0 && raw.rlim_cur == 32, "raw getrlimit");
    raw.rlim_cur = 48;
    check(syscall(SYS_setrlimit, RLIMIT_NOFILE, &raw) == 0, "raw setrlimit 48");
    check(getrlimit(RLIMIT_NOFILE, &back) == 0 && back.rlim_cur == 48, "getrlimit sees 48");

    /* errors */
    struct rlimit inverted = {100, 50};
    errno = 0;
    check_err(syscall(SYS_setrlimit, RLIMIT_NOFILE, &inverted), EINVAL, "setrlimit(soft > hard)");
    errno = 0;
    check_err(syscall(SYS_getrlimit, 999, &raw), EINVAL, "getrlimit(bad resource)");
    errno = 0;
    check_err(prl64(999, NULL, &now), EINVAL, "prlimit64(bad resource)");
    errno = 0;
    check_err(syscall(SYS_getrlimit, RLIMIT_NOFILE, BADPTR), EFAULT, "getrlimit(bad pointer)");
    errno = 0;
    check_err(prl64(RLIMIT_NOFILE, BADPTR, NULL), EFAULT, "prlimit64(bad new pointer)");
    errno = 0;
    check_err(syscall(SYS_prlimit64, 0x7ffffff0, RLIMIT_NOFILE, NULL, &now), ESRCH,
              "prlimit64(no such pid)");
    return finish();
}
