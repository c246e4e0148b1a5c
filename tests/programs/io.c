/*
 * read, write, readv, writev, pread64, pwrite64 on the standard streams,
 * which the harness makes pipes: stdin is read with readv, the positional
 * calls give ESPIPE, and the error cases give EBADF, EFAULT and EINVAL.
 * All output goes through raw write(2) on fd 1, no stdio.
 */
#include "common.h"
#include <sys/uio.h>

static void out(const char *s)
{
    size_t n = strlen(s);
    long w = syscall(SYS_write, 1, s, n);
    if (w != (long)n)
        g_failures++;
}

static void outf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    out(buf);
}

static void expect(int cond, const char *label)
{
    outf("%s: %s\n", label, cond ? "ok" : "FAIL");
    if (!cond)
        g_failures++;
}

static void expect_err(long ret, int e, int expected, const char *label)
{
    if (ret == -1)
        outf("%s -> %s: %s\n", label, errname(e), e == expected ? "ok" : "FAIL");
    else
        outf("%s -> returned %ld: FAIL\n", label, ret);
    if (ret != -1 || e != expected)
        g_failures++;
}

#define EXPECT_ERR(call, expected, label)                                      \
    do {                                                                       \
        errno = 0;                                                             \
        long r_ = (call);                                                      \
        expect_err(r_, errno, expected, label);                                \
    } while (0)

int main(void)
{
    /* write */
    long w = syscall(SYS_write, 1, "write: hello\n", 13);
    expect(w == 13, "write returned 13");
    expect(syscall(SYS_write, 1, "", 0) == 0, "write of 0 bytes returns 0");
    expect(syscall(SYS_write, 2, "io: this line goes to stderr\n", 29) == 29,
           "write to stderr returned 29");

    /* writev: three pieces, one empty */
    struct iovec iov[3] = {
        {"writev: ", 8}, {(void *)"", 0}, {"three pieces\n", 13},
    };
    w = syscall(SYS_writev, 1, iov, 3);
    expect(w == 21, "writev returned 21");
    expect(syscall(SYS_writev, 1, iov, 0) == 0, "writev with 0 iovecs returns 0");

    /* error cases */
    EXPECT_ERR(syscall(SYS_write, 99, "x", 1), EBADF, "write(99)");
    EXPECT_ERR(syscall(SYS_write, -1, "x", 1), EBADF, "write(-1)");
    EXPECT_ERR(syscall(SYS_write, 1, BADPTR, 8), EFAULT, "write(1, bad pointer)");
    EXPECT_ERR(syscall(SYS_read, 1, (char[4]){0}, 4), EBADF, "read(stdout)");
    EXPECT_ERR(syscall(SYS_read, 99, (char[4]){0}, 4), EBADF, "read(99)");
    EXPECT_ERR(syscall(SYS_writev, 1, iov, -1), EINVAL, "writev(iovcnt -1)");
    EXPECT_ERR(syscall(SYS_writev, 1, iov, 100000), EINVAL, "writev(iovcnt 100000)");
    EXPECT_ERR(syscall(SYS_writev, 1, BADPTR, 2), EFAULT, "writev(bad iov array)");
    struct iovec badiov[1] = {{BADPTR, 4}};
    EXPECT_ERR(syscall(SYS_writev, 1, badiov, 1), EFAULT, "writev(bad iov_base)");
    EXPECT_ERR(syscall(SYS_writev, 99, iov, 3), EBADF, "writev(99)");
    EXPECT_ERR(syscall(SYS_readv, 99, iov, 1), EBADF, "readv(99)");

    /* positional I/O on pipes */
    char pbuf[8];
    EXPECT_ERR(syscall(SYS_pread64, 0, pbuf, sizeof pbuf, 0), ESPIPE, "pread64(stdin pipe)");
    EXPECT_ERR(syscall(SYS_pwrite64, 1, "x", 1, 0), ESPIPE, "pwrite64(stdout pipe)");
    EXPECT_ERR(syscall(SYS_pread64, 99, pbuf, sizeof pbuf, 0), EBADF, "pread64(99)");
    EXPECT_ERR(syscall(SYS_pwrite64, 99, "x", 1, 0), EBADF, "pwrite64(99)");
    EXPECT_ERR(syscall(SYS_pread64, 0, pbuf, sizeof pbuf, -1), ESPIPE, "pread64(stdin pipe, offset -1)");

    /* readv stdin to EOF: two small iovecs per call */
    char a[5], b[11];
    unsigned long total = 0, sum = 0;
    int calls = 0;
    for (;;) {
        struct iovec riov[2] = {{a, sizeof a}, {b, sizeof b}};
        long n = syscall(SYS_readv, 0, riov, 2);
        if (n < 0) {
            outf("readv error %s\n", errname(errno));
            g_failures++;
            break;
        }
        if (n == 0)
            break;
        calls++;
        for (long i = 0; i < n; i++)
            sum = sum * 31 + (unsigned char)(i < 5 ? a[i] : b[i - 5]);
        total += n;
    }
    outf("readv stdin: %lu bytes, hash %lu\n", total, sum);
    expect(calls == 0 || total > 0, "readv made progress");
    expect(syscall(SYS_read, 0, a, sizeof a) == 0, "read at EOF returns 0");

    outf("failures: %d\n", g_failures);
    return g_failures ? 1 : 0;
}
