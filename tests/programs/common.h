/*
 * Shared helpers for the kvmbox syscall test programs.
 *
 * Every program prints one line per check to stdout, deterministically (no
 * addresses, pids, times or random values; only derived facts), and exits 0
 * when every check passed natively, 1 otherwise. The harness runs each binary
 * natively and in the sandbox and compares exit status and stdout byte for
 * byte, so the native run defines the truth.
 *
 * Builds with glibc (static, static-pie) and musl-gcc, which has no <linux/...>
 * headers: constants the C libraries may lack are defined here.
 */
#ifndef KVMBOX_TEST_COMMON_H
#define KVMBOX_TEST_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#ifndef SYS_rseq
#define SYS_rseq 334
#endif
#ifndef SYS_getrandom
#define SYS_getrandom 318
#endif
#ifndef SYS_prlimit64
#define SYS_prlimit64 302
#endif
#ifndef SYS_set_robust_list
#define SYS_set_robust_list 273
#endif
#ifndef SYS_newfstatat
#define SYS_newfstatat 262
#endif

static int g_failures;

/* Name of an errno value; the same text under glibc and musl. */
static __attribute__((unused)) const char *errname(int e)
{
    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case ESPIPE: return "ESPIPE";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EOVERFLOW: return "EOVERFLOW";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EXDEV: return "EXDEV";
    case EROFS: return "EROFS";
    case ENODATA: return "ENODATA";
    case E2BIG: return "E2BIG";
    case ENOSPC: return "ENOSPC";
    case ELOOP: return "ELOOP";
    case ENOEXEC: return "ENOEXEC";
    case ETXTBSY: return "ETXTBSY";
    case EDEADLK: return "EDEADLK";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno%d", e);
        return buf;
    }
    }
}

/* Print "label: ok" or "label: FAIL" and count failures. */
static __attribute__((unused)) void check(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf(": %s\n", cond ? "ok" : "FAIL");
    if (!cond)
        g_failures++;
}

/*
 * Check that a raw syscall result is -1 with the expected errno; prints the
 * errno actually seen ("label -> EBADF") so a mismatch is readable.
 */
static __attribute__((unused)) void check_err(long ret, int expected, const char *label)
{
    int e = errno;
    if (ret == -1) {
        printf("%s -> %s", label, errname(e));
        check(e == expected, "");
    } else {
        printf("%s -> returned %s", label, ret >= 0 ? ">=0" : "<0");
        check(0, "");
    }
}

/* Same, for calls that return the errno (pthread style) or -errno. */
static __attribute__((unused)) void check_ret_err(int ret, int expected, const char *label)
{
    printf("%s -> %s", label, errname(ret < 0 ? -ret : ret));
    check((ret < 0 ? -ret : ret) == expected, "");
}

static __attribute__((unused)) int finish(void)
{
    printf("failures: %d\n", g_failures);
    fflush(stdout);
    return g_failures ? 1 : 0;
}

#define BADPTR ((void *)1)

/* Install `fn` for `sig` with sa_flags `flags` (SA_RESTART ...), an empty sa_mask. */
#include <signal.h>
static __attribute__((unused)) void set_handler(int sig, void (*fn)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
}

#endif
