/*
 * Shared helpers for the escape_*.c programs: file-system escape attempts that
 * tests/security/test_fs_escape.py runs in the sandbox (never natively).
 *
 * Each attempt prints one line "label: RESULT", where RESULT is
 *   - an errno name (ENOENT, EROFS ...) when the call failed,
 *   - "ok" (or "ok N" with a small number) when it succeeded without data,
 *   - "read N <text>" when bytes were read: N bytes, then the first bytes
 *     with non-printable characters escaped as \xNN.
 * The Python test is the judge: it checks each label's RESULT against what a
 * safe sandbox may answer, and that no secret ever appears in the output.
 *
 * These programs try to write host files such as /etc/passwd. As the test
 * host runs as root, escape_guard() refuses to do anything unless the
 * environment says KVMBOX_ESCAPE_TEST=1 AND uname's nodename is "kvmbox"
 * (the sandbox's hostname); otherwise exit status 2.
 */
#ifndef KVMBOX_ESCAPE_COMMON_H
#define KVMBOX_ESCAPE_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/utsname.h>

#ifndef O_PATH
#define O_PATH 010000000
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_renameat2
#define SYS_renameat2 316
#endif
#ifndef SYS_name_to_handle_at
#define SYS_name_to_handle_at 303
#endif
#ifndef SYS_open_by_handle_at
#define SYS_open_by_handle_at 304
#endif

#define ESC_UNUSED __attribute__((unused))

/* The name of an errno value, the same text under glibc and musl. */
static ESC_UNUSED const char *esc_errname(int e)
{
    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ETXTBSY: return "ETXTBSY";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case EMLINK: return "EMLINK";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ESTALE: return "ESTALE";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno%d", e);
        return buf;
    }
    }
}

/* Refuse to run anywhere but inside the kvmbox sandbox of the security tests. */
static ESC_UNUSED void escape_guard(void)
{
    struct utsname u;
    const char *flag = getenv("KVMBOX_ESCAPE_TEST");
    if (!flag || strcmp(flag, "1") != 0 || uname(&u) != 0 || strcmp(u.nodename, "kvmbox") != 0) {
        fprintf(stderr, "escape test programs run only inside the kvmbox sandbox "
                        "(KVMBOX_ESCAPE_TEST=1 and hostname kvmbox)\n");
        exit(2);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* "label: ERRNO" for a failed call (the current errno). */
static ESC_UNUSED void esc_fail(const char *label)
{
    printf("%s: %s\n", label, esc_errname(errno));
}

/* "label: ok" when ret >= 0, else "label: ERRNO". Returns ret. */
static ESC_UNUSED long esc_ret(const char *label, long ret)
{
    if (ret < 0)
        esc_fail(label);
    else
        printf("%s: ok\n", label);
    return ret;
}

/* Print the first bytes of buf escaped, after "label: read N ". */
static ESC_UNUSED void esc_print_read(const char *label, const char *buf, long n)
{
    printf("%s: read %ld ", label, n);
    for (long i = 0; i < n && i < 96; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
    putchar('\n');
}

/* Read from fd (up to 4 KiB) and report it; closes fd. */
static ESC_UNUSED void esc_report_fd(const char *label, int fd)
{
    char buf[4096];
    long n = read(fd, buf, sizeof buf);
    if (n < 0)
        printf("%s: opened, read %s\n", label, esc_errname(errno));
    else
        esc_print_read(label, buf, n);
    close(fd);
}

/* openat(dirfd, path, O_RDONLY) then read: what the program got. */
static ESC_UNUSED void esc_try_read_at(const char *label, int dirfd, const char *path)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        esc_fail(label);
        return;
    }
    esc_report_fd(label, fd);
}

static ESC_UNUSED void esc_try_read(const char *label, const char *path)
{
    esc_try_read_at(label, AT_FDCWD, path);
}

/* Write text to path with extra open flags; "ok N" with the bytes written. */
static ESC_UNUSED void esc_try_write(const char *label, const char *path, int flags, const char *text)
{
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0) {
        esc_fail(label);
        return;
    }
    long n = write(fd, text, strlen(text));
    if (n < 0)
        printf("%s: opened, write %s\n", label, esc_errname(errno));
    else
        printf("%s: ok %ld\n", label, n);
    close(fd);
}

/* A path joined from two parts, in a static ring of buffers. */
static ESC_UNUSED const char *esc_join(const char *a, const char *b)
{
    static char bufs[8][4096];
    static int next;
    char *out = bufs[next++ % 8];
    snprintf(out, 4096, "%s/%s", a, b);
    return out;
}

#endif
