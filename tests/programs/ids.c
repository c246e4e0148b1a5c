/*
 * Identity and per-thread setup: uname, getpid/gettid/getppid, the uid/gid
 * family, process group and session, arch_prctl (FS/GS base),
 * set_tid_address, set_robust_list and rseq.
 */
#include "common.h"
#include <stdint.h>
#include <sys/utsname.h>

#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004

/* A raw two-argument syscall that touches neither errno nor TLS. */
static inline long raw2(long nr, long a, long b)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

static inline uintptr_t read_fs0(void)
{
    uintptr_t v;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(v));
    return v;
}

/*
 * Set FS to a fake thread block, read it back through ARCH_GET_FS and
 * through %fs:0, then restore. Nothing in between may use TLS (errno,
 * stack protector), hence raw syscalls only.
 */
static uintptr_t fake_tcb[64] __attribute__((aligned(64)));

__attribute__((noinline)) static void test_fs(int *set_ok, int *get_ok, int *load_ok, int *restore_ok)
{
    uintptr_t old = 0, now = 0;
    fake_tcb[0] = (uintptr_t)fake_tcb;
    long r0 = raw2(SYS_arch_prctl, ARCH_GET_FS, (long)&old);
    long r1 = raw2(SYS_arch_prctl, ARCH_SET_FS, (long)fake_tcb);
    long r2 = raw2(SYS_arch_prctl, ARCH_GET_FS, (long)&now);
    uintptr_t seen = read_fs0();
    long r3 = raw2(SYS_arch_prctl, ARCH_SET_FS, (long)old);
    uintptr_t back = 0;
    long r4 = raw2(SYS_arch_prctl, ARCH_GET_FS, (long)&back);
    *set_ok = r0 == 0 && r1 == 0;
    *get_ok = r2 == 0 && now == (uintptr_t)fake_tcb;
    *load_ok = seen == (uintptr_t)fake_tcb;
    *restore_ok = r3 == 0 && r4 == 0 && back == old && old != 0;
}

int main(void)
{
    struct utsname u;
    check(uname(&u) == 0, "uname");
    printf("sysname %s\n", u.sysname);
    printf("machine %s\n", u.machine);
    errno = 0;
    check_err(syscall(SYS_uname, BADPTR), EFAULT, "uname(bad pointer)");

    long pid = syscall(SYS_getpid), tid = syscall(SYS_gettid);
    printf("getpid>0 %s\n", pid > 0 ? "yes" : "no");
    printf("gettid==getpid %s\n", tid == pid ? "yes" : "no");
    /* A parent outside the caller's pid namespace reads as 0 (the sandbox's first
     * process, or a native run under unshare --pid); only validity is environment-free. */
    printf("getppid>=0 %s\n", syscall(SYS_getppid) >= 0 ? "yes" : "no");
    printf("getppid!=getpid %s\n", syscall(SYS_getppid) != pid ? "yes" : "no");

    printf("uid %ld euid %ld gid %ld egid %ld\n", syscall(SYS_getuid), syscall(SYS_geteuid),
           syscall(SYS_getgid), syscall(SYS_getegid));

    long pgrp = syscall(SYS_getpgrp), pgid0 = syscall(SYS_getpgid, 0);
    long pgidself = syscall(SYS_getpgid, pid), sid0 = syscall(SYS_getsid, 0);
    /* A session or group created outside the host's pid namespace reads as 0
     * natively (CI runners do this), so only validity is environment-free. */
    printf("getpgrp>=0 %s\n", pgrp >= 0 ? "yes" : "no");
    printf("getpgrp==getpgid(0) %s\n", pgrp == pgid0 ? "yes" : "no");
    printf("getpgid(0)==getpgid(getpid()) %s\n", pgid0 == pgidself ? "yes" : "no");
    printf("getsid(0)>=0 %s\n", sid0 >= 0 ? "yes" : "no");
    printf("getsid(0)==getsid(getpid()) %s\n", sid0 == syscall(SYS_getsid, pid) ? "yes" : "no");
    errno = 0;
    check_err(syscall(SYS_getpgid, -1), ESRCH, "getpgid(-1)");

    /* arch_prctl */
    int set_ok, get_ok, load_ok, restore_ok;
    test_fs(&set_ok, &get_ok, &load_ok, &restore_ok);
    check(set_ok, "arch_prctl ARCH_GET_FS/ARCH_SET_FS succeed");
    check(get_ok, "arch_prctl ARCH_GET_FS returns what ARCH_SET_FS set");
    check(load_ok, "%%fs:0 reads through the new FS base");
    check(restore_ok, "FS base restored");
    uintptr_t gs = 1;
    long r = syscall(SYS_arch_prctl, ARCH_GET_GS, &gs);
    check(r == 0, "arch_prctl ARCH_GET_GS");
    printf("gs base == 0 %s\n", gs == 0 ? "yes" : "no");
    errno = 0;
    check_err(syscall(SYS_arch_prctl, 0x9999, 0), EINVAL, "arch_prctl(bad code)");
    errno = 0;
    check_err(syscall(SYS_arch_prctl, ARCH_GET_FS, BADPTR), EFAULT, "arch_prctl(GET_FS, bad pointer)");
    errno = 0;
    check_err(syscall(SYS_arch_prctl, ARCH_SET_FS, 0x8000000000000000UL), EPERM,
              "arch_prctl(SET_FS, non-canonical)");

    /* set_tid_address returns the caller's tid */
    static int tid_word;
    long t = syscall(SYS_set_tid_address, &tid_word);
    printf("set_tid_address==gettid %s\n", t == tid ? "yes" : "no");

    /* set_robust_list: a valid empty list, then a bad length */
    static struct {
        void *next;
        long futex_offset;
        void *pending;
    } head;
    head.next = &head;
    check(syscall(SYS_set_robust_list, &head, sizeof head) == 0, "set_robust_list(24 bytes)");
    errno = 0;
    check_err(syscall(SYS_set_robust_list, &head, 1), EINVAL, "set_robust_list(len 1)");

    /* rseq: glibc has already registered one (EBUSY); musl has not (0);
       a sandbox may not implement it (ENOSYS). All are fine. */
    static __attribute__((aligned(32))) unsigned char rseq_area[32];
    errno = 0;
    long rr = syscall(SYS_rseq, rseq_area, 32, 0, 0x53053053);
    int e = errno;
    int ok = rr == 0 || e == ENOSYS || e == EBUSY || e == EINVAL;
    if (ok)
        printf("rseq ok-or-enosys\n");
    else
        printf("rseq unexpected %s\n", errname(e));
    if (rr == 0)
        syscall(SYS_rseq, rseq_area, 32, 1 /* RSEQ_FLAG_UNREGISTER */, 0x53053053);

    return finish();
}
