/*
 * sched_getaffinity, sched_yield, an unknown syscall number (ENOSYS), and
 * general-purpose registers surviving a syscall (all but rax, rcx, r11),
 * get_mempolicy on a host with a NUMA node 0 (only bit 0 of masks is shown,
 * so a many-node host prints the same).
 */
#include "common.h"
#include <sched.h>

/* Fill callee- and caller-saved registers, do getpid, check they survived. */
static int regs_survive_syscall(void)
{
    register long rbx asm("rbx") = 0x1111111111111111L;
    register long rdx asm("rdx") = 0x2222222222222222L;
    register long rsi asm("rsi") = 0x3333333333333333L;
    register long rdi asm("rdi") = 0x4444444444444444L;
    register long r8 asm("r8") = 0x5555555555555555L;
    register long r9 asm("r9") = 0x6666666666666666L;
    register long r10 asm("r10") = 0x7777777777777777L;
    register long r12 asm("r12") = 0x0123456789abcdefL;
    register long r13 asm("r13") = 0x7edcba9876543210L;
    register long r14 asm("r14") = 0x0f0f0f0f0f0f0f0fL;
    register long r15 asm("r15") = 0x7070707070707070L;
    long rax = SYS_getpid;
    __asm__ volatile("syscall"
                     : "+a"(rax), "+r"(rbx), "+r"(rdx), "+r"(rsi), "+r"(rdi), "+r"(r8), "+r"(r9),
                       "+r"(r10), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15)
                     :
                     : "rcx", "r11", "memory");
    return rax > 0 && rbx == 0x1111111111111111L && rdx == 0x2222222222222222L &&
           rsi == 0x3333333333333333L && rdi == 0x4444444444444444L && r8 == 0x5555555555555555L &&
           r9 == 0x6666666666666666L && r10 == 0x7777777777777777L && r12 == 0x0123456789abcdefL &&
           r13 == 0x7edcba9876543210L && r14 == 0x0f0f0f0f0f0f0f0fL && r15 == 0x7070707070707070L;
}

/* An unknown syscall must not clobber registers either; rax = -ENOSYS. */
static long raw_unknown(long nr)
{
    long rax = nr;
    __asm__ volatile("syscall" : "+a"(rax) : : "rcx", "r11", "memory");
    return rax;
}

static void mempolicy(void)
{
    int mode = -1;
    unsigned long mask[2] = {~0UL, ~0UL};
    long r = syscall(SYS_get_mempolicy, &mode, mask, 128, 0, 0);
    printf("get_mempolicy: %ld mode %d mask bit0 %lu\n", r, mode, mask[0] & 1);
    mask[0] = mask[1] = ~0UL;
    r = syscall(SYS_get_mempolicy, &mode, mask, 128, 0, 4);
    printf("MPOL_F_MEMS_ALLOWED: %ld mode %d node 0 allowed %lu\n", r, mode, mask[0] & 1);
    static int here = 1;
    mode = -1;
    r = syscall(SYS_get_mempolicy, &mode, NULL, 0, &here, 3);
    printf("MPOL_F_NODE|MPOL_F_ADDR of data: %ld node %d\n", r, mode);
    mask[0] = 7;
    r = syscall(SYS_get_mempolicy, &mode, mask, 1, 0, 0);
    printf("maxnode 1 copies nothing: %ld mask %lu\n", r, mask[0]);
    errno = 0; check_err(syscall(SYS_get_mempolicy, &mode, NULL, 0, &here, 0), EINVAL, "address without MPOL_F_ADDR");
    errno = 0; check_err(syscall(SYS_get_mempolicy, &mode, NULL, 0, 0, 1), EINVAL, "MPOL_F_NODE alone");
    errno = 0; check_err(syscall(SYS_get_mempolicy, &mode, NULL, 0, (void *)0x10, 2), EFAULT, "unmapped address");
    errno = 0; check_err(syscall(SYS_get_mempolicy, &mode, mask, 0, 0, 0), EINVAL, "maxnode 0");
    errno = 0; check_err(syscall(SYS_get_mempolicy, &mode, mask, 1000000, 0, 0), EINVAL, "maxnode past a page");
    errno = 0; check_err(syscall(SYS_get_mempolicy, &mode, NULL, 0, 0, 8), EINVAL, "unknown flag");
    errno = 0; check_err(syscall(SYS_get_mempolicy, (void *)0x10, NULL, 0, 0, 0), EFAULT, "bad mode pointer");
}

int main(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long r = syscall(SYS_sched_getaffinity, 0, sizeof set, &set);
    check(r > 0, "sched_getaffinity");
    printf("sched_getaffinity returns a multiple of 8 %s\n", r > 0 && r % 8 == 0 ? "yes" : "no");
    printf("affinity count >= 1 %s\n", CPU_COUNT(&set) >= 1 ? "yes" : "no");
    cpu_set_t set2;
    check(sched_getaffinity(0, sizeof set2, &set2) == 0, "libc sched_getaffinity");
    printf("libc count >= 1 %s\n", CPU_COUNT(&set2) >= 1 ? "yes" : "no");
    errno = 0;
    check_err(syscall(SYS_sched_getaffinity, 0, 1, &set), EINVAL, "sched_getaffinity(size 1)");
    errno = 0;
    check_err(syscall(SYS_sched_getaffinity, 0, sizeof set, BADPTR), EFAULT, "sched_getaffinity(bad pointer)");
    errno = 0;
    check_err(syscall(SYS_sched_getaffinity, 0x7ffffff0, sizeof set, &set), ESRCH, "sched_getaffinity(no such pid)");

    check(syscall(SYS_sched_yield) == 0, "sched_yield");
    for (int i = 0; i < 100; i++)
        sched_yield();
    check(1, "sched_yield x100");

    errno = 0;
    check_err(syscall(1000), ENOSYS, "syscall 1000");
    /* not 335: on this project's host kernel that number raises SIGILL */
    errno = 0;
    check_err(syscall(600), ENOSYS, "syscall 600");
    printf("raw syscall 1000 rax == -ENOSYS %s\n", raw_unknown(1000) == -ENOSYS ? "yes" : "no");
    printf("raw syscall 0x400003e8 (x32 bit set) rax == -ENOSYS %s\n",
           raw_unknown(0x40000000L | 1000) == -ENOSYS ? "yes" : "no");
    printf("raw syscall -1 rax == -ENOSYS %s\n", raw_unknown(-1) == -ENOSYS ? "yes" : "no");

    check(regs_survive_syscall(), "general-purpose registers survive a syscall");
    mempolicy();
    return finish();
}
