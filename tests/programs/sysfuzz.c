/*
 * sysfuzz: makes argv[2] system calls with pseudo-random numbers and hostile
 * arguments (seed argv[1]): bad pointers, huge lengths, negative fds, the
 * stub region, kernel addresses. Calls that would end or block the run
 * (exit, exit_group, pause-like sleeps, futex waits, reads of stdin) are
 * skipped. Used by tests/security: the sandbox must survive every call.
 */
#include "common.h"
#include <stdint.h>

static uint64_t state;
static uint64_t next(void) {
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return state;
}

static const uint64_t interesting[] = {
    0, 1, 2, 3, 0xffffffffffffffffULL, 0x7fffffffffffffffULL, 0x8000000000000000ULL,
    0xffffffffULL, 0x80000000ULL, 4096, 0x7f8000000000ULL, 0x7f8000130000ULL,
    0x7f7ffffff000ULL, 0xffffffff81000000ULL, 0x10000, 0x400000, (uint64_t)-4096,
    (uint64_t)-100, 1ULL << 47, 0x1000000000ULL,
};

static uint64_t arg(char *buf) {
    switch (next() % 4) {
    case 0: return interesting[next() % (sizeof interesting / sizeof interesting[0])];
    case 1: return (uint64_t)buf + (next() % 4096);
    case 2: return next() % 64;
    default: return next();
    }
}

int main(int argc, char **argv) {
    /* Never natively: random syscalls as root could damage the host. */
    if (!getenv("KVMBOX_SANDBOXED_FUZZ")) {
        fprintf(stderr, "sysfuzz: refusing to run outside the sandbox tests\n");
        return 2;
    }
    state = argc > 1 ? strtoull(argv[1], 0, 0) * 2654435761ULL + 1 : 88172645463325252ULL;
    long n = argc > 2 ? atol(argv[2]) : 2000;
    static char buf[8192];
    long done = 0;
    for (long i = 0; i < n; i++) {
        long nr = (long)(next() % 340);
        switch (nr) {
        case 0: case 17: case 19: case 295:        /* reads may block on stdin */
        case 7: case 23: case 270: case 271:       /* poll/select family */
        case 232: case 281: case 441:              /* epoll_wait, epoll_pwait, epoll_pwait2 */
        case 34: case 35: case 230: case 202:      /* pause, sleeps, futex */
        case 60: case 231:                         /* exit, exit_group */
        case 56: case 57: case 58: case 59: case 322: case 435:  /* clone/fork/exec */
        case 62: case 200: case 234:               /* kill, tkill, tgkill */
        case 130: case 128:                        /* sigsuspend, sigtimedwait */
        case 61: case 247:                         /* wait4, waitid */
        case 12: case 9: case 10: case 11: case 25: case 28:  /* keep our own memory intact */
        case 158:                                  /* arch_prctl: keep FS for libc */
        case 13: case 14: case 15:                 /* signal state: keep defaults */
            continue;
        }
        syscall(nr, arg(buf), arg(buf), arg(buf), arg(buf), arg(buf), arg(buf));
        done++;
    }
    printf("survived %ld calls\n", done);
    return 0;
}
