/*
 * Extended attributes on tmpfs (user.* since Linux 6.6; trusted.* for root):
 * set/get/list/remove through a path, without following a symlink and through
 * a descriptor; XATTR_CREATE / XATTR_REPLACE, ERANGE for short buffers and bad
 * names, E2BIG for values over 64 KiB and lists over 64 KiB, ENODATA, EPERM for
 * user.* on symlinks and FIFOs, EOPNOTSUPP for unknown namespaces and /proc.
 * argv[1]: a tmpfs directory (/dev/shm natively and in the sandbox).
 */
#include "scratch.h"
#include <sys/xattr.h>

#ifndef XATTR_CREATE
#define XATTR_CREATE 1
#define XATTR_REPLACE 2
#endif

/* A bad address the compiler cannot see through (no -Wstringop warnings). */
static void *volatile bad_ptr = BADPTR;

/* The names listxattr gives, as one line. */
static void show_list(const char *label, ssize_t n, const char *buf)
{
    printf("%s (%zd):", label, n);
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
        printf(" %s", buf + i);
    printf("\n");
}

static void show_value(const char *path, const char *name)
{
    char v[128];
    ssize_t n = getxattr(path, name, v, sizeof v - 1);
    if (n < 0) {
        printf("%s %s: %s\n", path, name, errname(errno));
        return;
    }
    v[n] = 0;
    printf("%s %s = [%s] (%zd)\n", path, name, v, n);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv, "xattrs");
    int fd = open("f", O_RDWR | O_CREAT, 0644);
    check(fd >= 0 && mkdir("d", 0755) == 0 && symlink("f", "l") == 0 && mkfifo("p", 0644) == 0, "set up");
    char buf[4096];

    /* nothing yet */
    errno = 0; check_err(getxattr("f", "user.a", buf, sizeof buf), ENODATA, "get before any set");
    printf("list before any set: %zd\n", listxattr("f", buf, sizeof buf));

    /* set and get */
    check(setxattr("f", "user.b", "second", 6, 0) == 0, "set user.b");
    check(setxattr("f", "user.a", "hello", 5, 0) == 0, "set user.a");
    show_value("f", "user.a");
    printf("size query: %zd\n", getxattr("f", "user.a", NULL, 0));
    errno = 0; check_err(getxattr("f", "user.a", buf, 2), ERANGE, "get into a short buffer");
    check(setxattr("f", "user.empty", "", 0, 0) == 0, "set an empty value");
    show_value("f", "user.empty");
    errno = 0; check_err(setxattr("f", "user.a", "x", 1, XATTR_CREATE), EEXIST, "XATTR_CREATE of an existing name");
    errno = 0; check_err(setxattr("f", "user.new", "x", 1, XATTR_REPLACE), ENODATA, "XATTR_REPLACE of a missing name");
    check(setxattr("f", "user.a", "replaced", 8, XATTR_REPLACE) == 0, "XATTR_REPLACE");
    show_value("f", "user.a");
    check(setxattr("f", "user.c", "c", 1, XATTR_CREATE) == 0, "XATTR_CREATE of a new name");
    errno = 0; check_err(setxattr("f", "user.a", "x", 1, 4), EINVAL, "unknown flag");
    errno = 0; check_err(setxattr("f", "user.a", "x", 1, XATTR_CREATE | XATTR_REPLACE), EEXIST,
                          "XATTR_CREATE|XATTR_REPLACE of an existing name");

    /* listing */
    ssize_t n = listxattr("f", NULL, 0);
    printf("list size query: %zd\n", n);
    n = listxattr("f", buf, sizeof buf);
    show_list("list", n, buf);
    errno = 0; check_err(listxattr("f", buf, 5), ERANGE, "list into a short buffer");

    /* names and sizes */
    char longname[300];
    memset(longname, 'n', sizeof longname);
    memcpy(longname, "user.", 5);
    longname[256] = 0;
    errno = 0; check_err(setxattr("f", longname, "x", 1, 0), ERANGE, "a 256-byte name");
    longname[255] = 0;
    check(setxattr("f", longname, "x", 1, 0) == 0, "a 255-byte name");
    check(removexattr("f", longname) == 0, "remove it");
    errno = 0; check_err(setxattr("f", "", "x", 1, 0), ERANGE, "an empty name");
    errno = 0; check_err(getxattr("f", "", buf, sizeof buf), ERANGE, "get of an empty name");
    errno = 0; check_err(setxattr("f", "user.", "x", 1, 0), EINVAL, "the bare prefix user.");
    errno = 0; check_err(getxattr("f", "user.", buf, sizeof buf), EINVAL, "get of the bare prefix");
    errno = 0; check_err(setxattr("f", "foo.bar", "x", 1, 0), EOPNOTSUPP, "an unknown namespace");
    errno = 0; check_err(getxattr("f", "foo.bar", buf, sizeof buf), EOPNOTSUPP, "get in an unknown namespace");
    errno = 0; check_err(setxattr("f", "user", "x", 1, 0), EOPNOTSUPP, "no namespace at all");
    static char big[65537];
    errno = 0; check_err(setxattr("f", "user.big", big, sizeof big, 0), E2BIG, "a value over 64 KiB");
    check(setxattr("f", "user.big", big, 65536, 0) == 0, "a 64 KiB value");
    printf("its size: %zd\n", getxattr("f", "user.big", NULL, 0));
    check(removexattr("f", "user.big") == 0, "remove it");
    errno = 0; check_err(setxattr("f", "user.a", bad_ptr, 4, 0), EFAULT, "value at a bad address");
    errno = 0; check_err(setxattr("f", bad_ptr, "x", 1, 0), EFAULT, "name at a bad address");
    errno = 0; check_err(getxattr("f", "user.a", bad_ptr, 64), EFAULT, "get into a bad buffer");
    errno = 0; check_err(listxattr("f", bad_ptr, 64), EFAULT, "list into a bad buffer");
    errno = 0; check_err(setxattr("missing", "user.a", "x", 1, 0), ENOENT, "a missing file");

    /* removing */
    check(removexattr("f", "user.c") == 0, "removexattr");
    errno = 0; check_err(removexattr("f", "user.c"), ENODATA, "remove a missing name");
    errno = 0; check_err(removexattr("f", "foo.bar"), EOPNOTSUPP, "remove in an unknown namespace");
    n = listxattr("f", buf, sizeof buf);
    show_list("after removing", n, buf);

    /* symlinks, FIFOs, directories */
    show_value("l", "user.a");
    errno = 0; check_err(lgetxattr("l", "user.a", buf, sizeof buf), ENODATA, "lgetxattr of a symlink");
    errno = 0; check_err(lsetxattr("l", "user.a", "x", 1, 0), EPERM, "lsetxattr user.* on a symlink");
    errno = 0; check_err(lremovexattr("l", "user.a"), EPERM, "lremovexattr user.* on a symlink");
    printf("llistxattr of the symlink: %zd\n", llistxattr("l", buf, sizeof buf));
    check(setxattr("l", "user.via", "link", 4, 0) == 0, "setxattr follows the symlink");
    show_value("f", "user.via");
    errno = 0; check_err(setxattr("p", "user.a", "x", 1, 0), EPERM, "user.* on a FIFO");
    errno = 0; check_err(getxattr("p", "user.a", buf, sizeof buf), ENODATA, "get user.* on a FIFO");
    check(setxattr("d", "user.dir", "yes", 3, 0) == 0, "user.* on a directory");
    show_value("d", "user.dir");

    /* through a descriptor */
    check(fsetxattr(fd, "user.fd", "byfd", 4, 0) == 0, "fsetxattr");
    n = fgetxattr(fd, "user.fd", buf, sizeof buf);
    printf("fgetxattr: %zd\n", n);
    n = flistxattr(fd, buf, sizeof buf);
    show_list("flistxattr", n, buf);
    check(fremovexattr(fd, "user.fd") == 0, "fremovexattr");
    int ro = open("f", O_RDONLY);
    check(fsetxattr(ro, "user.ro", "r", 1, 0) == 0, "fsetxattr through a read-only descriptor");
    close(ro);
    int path = open("f", O_PATH);
    errno = 0; check_err(fsetxattr(path, "user.a", "x", 1, 0), EBADF, "fsetxattr through O_PATH");
    errno = 0; check_err(fgetxattr(path, "user.a", buf, sizeof buf), EBADF, "fgetxattr through O_PATH");
    errno = 0; check_err(flistxattr(path, buf, sizeof buf), EBADF, "flistxattr through O_PATH");
    close(path);
    errno = 0; check_err(fgetxattr(99, "user.a", buf, sizeof buf), EBADF, "fgetxattr of a bad fd");
    errno = 0; check_err(fremovexattr(99, "user.a"), EBADF, "fremovexattr of a bad fd");

    /* an unlinked file keeps its attributes while open */
    check(unlink("f") == 0, "unlink f");
    n = fgetxattr(fd, "user.a", buf, sizeof buf);
    printf("fgetxattr after unlink: %zd\n", n);
    close(fd);

    /* a list over 64 KiB: E2BIG for a buffer that big, ERANGE below */
    int many = open("many", O_RDWR | O_CREAT, 0644);
    char name[256];
    int made = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "user.%03d", i);
        memset(name + 8, 'x', 240);
        name[248] = 0;
        made += fsetxattr(many, name, "v", 1, 0) == 0;
    }
    printf("made %d long names, list size %zd\n", made, flistxattr(many, NULL, 0));
    static char huge[70000];
    errno = 0; check_err(flistxattr(many, huge, sizeof huge), E2BIG, "list over 64 KiB");
    errno = 0; check_err(flistxattr(many, huge, 1000), ERANGE, "list over a 1000-byte buffer");
    close(many);

    /* file systems without extended attributes */
    errno = 0; check_err(setxattr("/proc/self/comm", "user.a", "x", 1, 0), EOPNOTSUPP, "setxattr on /proc");
    errno = 0; check_err(getxattr("/proc/self/comm", "user.a", buf, sizeof buf), EOPNOTSUPP, "getxattr on /proc");
    errno = 0; check_err(setxattr("/dev/null", "user.a", "x", 1, 0), EPERM, "user.* on /dev/null");
    scratch_leave();
    return finish();
}
