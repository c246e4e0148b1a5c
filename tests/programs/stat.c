/*
 * fstat and newfstatat(AT_EMPTY_PATH) on the standard streams (pipes under
 * the harness), readlink("/proc/self/exe") and getcwd.
 */
#include "common.h"
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

static const char *kind(mode_t m)
{
    if (S_ISFIFO(m)) return "S_ISFIFO";
    if (S_ISCHR(m)) return "S_ISCHR";
    if (S_ISREG(m)) return "S_ISREG";
    if (S_ISDIR(m)) return "S_ISDIR";
    if (S_ISSOCK(m)) return "S_ISSOCK";
    if (S_ISLNK(m)) return "S_ISLNK";
    if (S_ISBLK(m)) return "S_ISBLK";
    return "unknown";
}

int main(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        struct stat a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        long r1 = syscall(SYS_fstat, fd, &a);
        long r2 = syscall(SYS_newfstatat, fd, "", &b, AT_EMPTY_PATH);
        check(r1 == 0, "fstat(%d)", fd);
        check(r2 == 0, "newfstatat(%d, \"\", AT_EMPTY_PATH)", fd);
        printf("fd %d is %s\n", fd, kind(a.st_mode));
        printf("fd %d fstat==fstatat %s\n", fd,
               a.st_mode == b.st_mode && a.st_ino == b.st_ino && a.st_dev == b.st_dev ? "yes" : "no");
        struct stat c;
        check(fstat(fd, &c) == 0 && c.st_mode == a.st_mode, "libc fstat(%d) agrees", fd);
    }
    struct stat s;
    errno = 0;
    check_err(syscall(SYS_fstat, 99, &s), EBADF, "fstat(99)");
    errno = 0;
    check_err(syscall(SYS_fstat, 1, BADPTR), EFAULT, "fstat(1, bad pointer)");
    errno = 0;
    check_err(syscall(SYS_newfstatat, 99, "", &s, AT_EMPTY_PATH), EBADF, "newfstatat(99, \"\", AT_EMPTY_PATH)");
    errno = 0;
    check_err(syscall(SYS_newfstatat, 1, "", &s, 0), ENOENT, "newfstatat(1, \"\", 0)");
    errno = 0;
    check_err(syscall(SYS_newfstatat, 1, "", &s, 0x40000000), EINVAL, "newfstatat(bad flags)");

    /* readlink /proc/self/exe: print the basename only */
    char buf[PATH_MAX + 1];
    ssize_t n = readlink("/proc/self/exe", buf, PATH_MAX);
    check(n > 0, "readlink /proc/self/exe");
    if (n > 0) {
        buf[n] = 0;
        const char *b = strrchr(buf, '/');
        printf("exe basename %s\n", b ? b + 1 : buf);
        printf("exe absolute %s\n", buf[0] == '/' ? "yes" : "no");
        char small[4];
        long r = readlink("/proc/self/exe", small, sizeof small);
        printf("readlink truncates to the buffer %s\n", r == (long)sizeof small ? "yes" : "no");
    }
    errno = 0;
    check_err(syscall(SYS_readlink, "/proc/self/exe", buf, 0), EINVAL, "readlink(bufsiz 0)");
    errno = 0;
    check_err(syscall(SYS_readlink, "/nonexistent-kvmbox-path", buf, sizeof buf), ENOENT,
              "readlink(missing path)");
    errno = 0;
    check_err(syscall(SYS_readlink, BADPTR, buf, sizeof buf), EFAULT, "readlink(bad path pointer)");

    /* getcwd */
    char cwd[PATH_MAX];
    long r = syscall(SYS_getcwd, cwd, sizeof cwd);
    check(r > 0, "getcwd");
    if (r > 0) {
        printf("getcwd absolute %s\n", cwd[0] == '/' ? "yes" : "no");
        printf("getcwd returns strlen+1 %s\n", r == (long)strlen(cwd) + 1 ? "yes" : "no");
    }
    errno = 0;
    check_err(syscall(SYS_getcwd, cwd, 1), ERANGE, "getcwd(size 1)");
    errno = 0;
    check_err(syscall(SYS_getcwd, BADPTR, sizeof cwd), EFAULT, "getcwd(bad pointer)");
    return finish();
}
