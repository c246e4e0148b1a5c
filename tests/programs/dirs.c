/*
 * Directories and names: mkdir/rmdir, getdents64 over 300 entries (printed
 * sorted), rename (over existing, NOREPLACE, EXCHANGE, into itself, EXDEV),
 * hard links and their counts, unlink errors, FIFOs from mknod, chdir/getcwd/
 * fchdir; a deep path looked up again after the names on it were renamed,
 * removed or re-pointed (the Sentry caches walked directories).
 * argv[1]: where to make scratch files.
 */
#include "scratch.h"
#include <limits.h>

#ifndef SYS_renameat2
#define SYS_renameat2 316
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#define RENAME_EXCHANGE 2
#endif

struct ent { unsigned long long ino; long long off; unsigned short reclen; unsigned char type; char name[]; };

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void touch(const char *p) { close(open(p, O_WRONLY | O_CREAT, 0644)); }

static unsigned long nlink(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0 ? (unsigned long)st.st_nlink : 0;
}

static const char *stat_result(const char *p)
{
    struct stat st;
    if (stat(p, &st) == 0)
        return S_ISDIR(st.st_mode) ? "dir" : "file";
    return errname(errno);
}

/* The same deep paths before and after each change to a name on them. */
static void renamed_paths(void)
{
    check(mkdir("w", 0755) == 0 && mkdir("w/a", 0755) == 0 && mkdir("w/a/b", 0755) == 0, "mkdir w/a/b");
    touch("w/a/b/f");
    printf("w/a/b/f %s\n", stat_result("w/a/b/f"));
    check(rename("w/a/b", "w/a/c") == 0, "rename b -> c");
    printf("after rename: w/a/b/f %s, w/a/c/f %s\n", stat_result("w/a/b/f"), stat_result("w/a/c/f"));
    check(rename("w/a", "w/z") == 0, "rename a -> z");
    printf("after parent rename: w/a/c/f %s, w/z/c/f %s\n", stat_result("w/a/c/f"), stat_result("w/z/c/f"));
    check(mkdir("w/a", 0755) == 0, "a new w/a");
    printf("new w/a: w/a/c/f %s\n", stat_result("w/a/c/f"));
    check(symlink("z/c", "w/l") == 0, "symlink w/l -> z/c");
    printf("through link: w/l/f %s\n", stat_result("w/l/f"));
    check(unlink("w/l") == 0 && symlink("a", "w/l") == 0, "re-point w/l -> a");
    printf("re-pointed: w/l/f %s\n", stat_result("w/l/f"));
    touch("w/a/f");
    printf("re-pointed, new file: w/l/f %s\n", stat_result("w/l/f"));
    check(unlink("w/z/c/f") == 0 && rmdir("w/z/c") == 0, "remove w/z/c");
    printf("removed: w/z/c/f %s\n", stat_result("w/z/c/f"));
    check(mkdir("w/z/c", 0755) == 0, "w/z/c again");
    printf("recreated empty: w/z/c/f %s\n", stat_result("w/z/c/f"));
    char cwd[PATH_MAX];
    check(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    check(chdir("w/z") == 0, "chdir w/z");
    touch("c/g");
    printf("relative: c/g %s\n", stat_result("c/g"));
    check(rename("c", "d") == 0, "rename c -> d (relative)");
    printf("relative after rename: c/g %s, d/g %s\n", stat_result("c/g"), stat_result("d/g"));
    printf("/proc/self/cwd/d/g %s\n", stat_result("/proc/self/cwd/d/g"));
    check(chdir(cwd) == 0, "chdir back");
    printf("/proc/self/cwd/d/g after chdir back %s\n", stat_result("/proc/self/cwd/d/g"));
    printf("/proc/self/cwd/w/z/d/g %s\n", stat_result("/proc/self/cwd/w/z/d/g"));
    unlink("w/z/d/g"); rmdir("w/z/d"); rmdir("w/z"); unlink("w/a/f"); rmdir("w/a"); unlink("w/l"); rmdir("w");
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv, "dirs");
    umask(022);
    struct stat st;

    check(mkdir("d", 0755) == 0, "mkdir");
    errno = 0; check_err(mkdir("d", 0755), EEXIST, "mkdir existing");
    errno = 0; check_err(mkdir("nope/d", 0755), ENOENT, "mkdir under missing");
    check(mkdir("d/sub/", 0700) == 0, "mkdir with trailing slash");
    stat("d/sub", &st);
    printf("sub mode %o nlink(d) %lu\n", st.st_mode, nlink("d"));
    touch("d/f");
    errno = 0; check_err(rmdir("d"), ENOTEMPTY, "rmdir non-empty");
    errno = 0; check_err(rmdir("d/f"), ENOTDIR, "rmdir a file");
    errno = 0; check_err(rmdir("d/."), EINVAL, "rmdir dot");
    errno = 0; check_err(unlink("d"), EISDIR, "unlink a directory");
    errno = 0; check_err(unlink("d/missing"), ENOENT, "unlink missing");
    errno = 0; check_err(unlink("d/f/"), ENOTDIR, "unlink file with slash");
    errno = 0; check_err(mkdir("d/f/x", 0755), ENOTDIR, "mkdir under a file");
    check(rmdir("d/sub") == 0, "rmdir");
    printf("nlink(d) after rmdir %lu\n", nlink("d"));

    /* 300 entries */
    check(mkdir("many", 0755) == 0, "mkdir many");
    char p[64];
    for (int i = 0; i < 300; i++) {
        snprintf(p, sizeof p, "many/file-%03d", (i * 7) % 300);
        if (i % 50 == 0) mkdir(p, 0755); else touch(p);
    }
    int fd = open("many", O_RDONLY | O_DIRECTORY);
    char buf[2048];
    char *names[400];
    int count = 0, calls = 0, dirs = 0, bad_off = 0;
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        calls++;
        for (long off = 0; off < n;) {
            struct ent *e = (struct ent *)(buf + off);
            if (count < 400) names[count++] = strdup(e->name);
            if (e->type == DT_DIR) dirs++;
            if (e->off <= 0) bad_off++;
            off += e->reclen;
        }
    }
    qsort(names, count, sizeof *names, cmp);
    printf("entries %d (with . and ..), dirs %d, several calls %d, bad offsets %d\n", count, dirs, calls > 1, bad_off);
    printf("first %s %s %s last %s\n", names[0], names[1], names[2], names[count - 1]);
    int sorted_ok = 1;
    for (int i = 2; i < count; i++) {
        snprintf(p, sizeof p, "file-%03d", i - 2);
        sorted_ok &= strcmp(names[i], p) == 0;
    }
    check(sorted_ok, "every name once");
    check(syscall(SYS_getdents64, fd, buf, sizeof buf) == 0, "getdents at end");
    lseek(fd, 0, SEEK_SET);
    check(syscall(SYS_getdents64, fd, buf, sizeof buf) > 0, "rewind re-reads");
    errno = 0; check_err(syscall(SYS_getdents64, fd, buf, 10), EINVAL, "getdents tiny buffer");
    close(fd);
    fd = open("d/f", O_RDONLY);
    errno = 0; check_err(syscall(SYS_getdents64, fd, buf, sizeof buf), ENOTDIR, "getdents on a file");
    close(fd);
    errno = 0; check_err(syscall(SYS_getdents64, 99, buf, sizeof buf), EBADF, "getdents bad fd");

    /* rename */
    touch("r1");
    int w = open("r2", O_WRONLY | O_CREAT, 0644);
    write(w, "two", 3);
    close(w);
    check(rename("r1", "r2") == 0, "rename over existing");
    stat("r2", &st);
    printf("r2 size after rename %lld, r1 exists %d\n", (long long)st.st_size, access("r1", F_OK) == 0);
    errno = 0; check_err(rename("missing", "x"), ENOENT, "rename missing");
    errno = 0; check_err(rename("d", "d/inside"), EINVAL, "rename dir into itself");
    errno = 0; check_err(rename("r2", "d"), EISDIR, "rename file over dir");
    errno = 0; check_err(rename("d", "r2"), ENOTDIR, "rename dir over file");
    mkdir("e", 0755); touch("e/x");
    errno = 0; check_err(rename("many", "e"), ENOTEMPTY, "rename over non-empty dir");
    rmdir("many/file-000");
    touch("q");
    errno = 0; check_err(syscall(SYS_renameat2, AT_FDCWD, "q", AT_FDCWD, "r2", RENAME_NOREPLACE), EEXIST, "RENAME_NOREPLACE");
    check(syscall(SYS_renameat2, AT_FDCWD, "q", AT_FDCWD, "r2", RENAME_EXCHANGE) == 0, "RENAME_EXCHANGE");
    stat("q", &st);
    printf("after exchange q size %lld\n", (long long)st.st_size);
    errno = 0; check_err(syscall(SYS_renameat2, AT_FDCWD, "q", AT_FDCWD, "zz", RENAME_EXCHANGE), ENOENT, "EXCHANGE with missing");
    errno = 0; check_err(syscall(SYS_renameat2, AT_FDCWD, "q", AT_FDCWD, "zz", 3), EINVAL, "NOREPLACE|EXCHANGE");
    errno = 0; check_err(rename("q", "/dev/shm/kvmbox-x"), EXDEV, "rename across mounts");
    check(rename("d", "d2") == 0 && access("d2/f", F_OK) == 0, "rename a directory");
    check(rename("d2/f", "e/f") == 0, "rename between directories");

    /* links */
    touch("h");
    check(link("h", "h2") == 0, "link");
    printf("nlink after link %lu\n", nlink("h"));
    errno = 0; check_err(link("h", "h2"), EEXIST, "link existing");
    errno = 0; check_err(link("e", "e2"), EPERM, "link a directory");
    errno = 0; check_err(link("missing", "m2"), ENOENT, "link missing");
    errno = 0; check_err(link("h", "/dev/shm/kvmbox-x"), EXDEV, "link across mounts");
    symlink("h", "sh");
    check(linkat(AT_FDCWD, "sh", AT_FDCWD, "h3", AT_SYMLINK_FOLLOW) == 0, "linkat follow");
    check(linkat(AT_FDCWD, "sh", AT_FDCWD, "sh2", 0) == 0, "linkat symlink itself");
    lstat("sh2", &st);
    printf("sh2 is link %d, nlink(h) %lu nlink(sh) %lu\n", S_ISLNK(st.st_mode), nlink("h"), nlink("sh"));
    unlink("h");
    printf("nlink after unlink %lu\n", nlink("h2"));
    check(unlinkat(AT_FDCWD, "e/x", 0) == 0, "unlinkat");
    errno = 0; check_err(unlinkat(AT_FDCWD, "e", 0), EISDIR, "unlinkat dir without flag");
    errno = 0; check_err(unlinkat(AT_FDCWD, "h2", AT_REMOVEDIR), ENOTDIR, "AT_REMOVEDIR on file");
    unlink("e/f");
    check(unlinkat(AT_FDCWD, "e", AT_REMOVEDIR) == 0, "AT_REMOVEDIR");
    errno = 0; check_err(unlinkat(AT_FDCWD, "h2", 0x4000), EINVAL, "unlinkat bad flag");

    /* mknod FIFO */
    check(mknod("fifo", S_IFIFO | 0644, 0) == 0, "mknod FIFO");
    stat("fifo", &st);
    printf("fifo is FIFO %d mode %o\n", S_ISFIFO(st.st_mode), st.st_mode & 0777);
    errno = 0; check_err(mknod("fifo", S_IFIFO | 0644, 0), EEXIST, "mknod existing");
    errno = 0; check_err(mknod("dd", S_IFDIR | 0644, 0), EPERM, "mknod directory type");
    int rf = open("fifo", O_RDONLY | O_NONBLOCK);
    check(rf >= 0, "open FIFO read nonblocking");
    int wf = open("fifo", O_WRONLY | O_NONBLOCK);
    check(wf >= 0, "open FIFO write with a reader");
    char c2[8];
    check(write(wf, "fi", 2) == 2 && read(rf, c2, 8) == 2, "FIFO carries bytes");
    close(wf);
    check(read(rf, c2, 8) == 0, "FIFO EOF without writers");
    close(rf);
    errno = 0; check_err(open("fifo", O_WRONLY | O_NONBLOCK), ENXIO, "FIFO write open without reader");
    check(mknod("plain", S_IFREG | 0600, 0) == 0, "mknod regular");

    /* cwd */
    char cwd[PATH_MAX], cwd2[PATH_MAX];
    getcwd(cwd, sizeof cwd);
    mkdir("cd", 0755);
    check(chdir("cd") == 0, "chdir");
    getcwd(cwd2, sizeof cwd2);
    printf("cwd ends with /cd %d, extends the old one %d\n", strcmp(cwd2 + strlen(cwd2) - 3, "/cd") == 0,
           strncmp(cwd, cwd2, strlen(cwd)) == 0);
    check(chdir("..") == 0, "chdir ..");
    getcwd(cwd2, sizeof cwd2);
    check(strcmp(cwd, cwd2) == 0, "back where we were");
    errno = 0; check_err(chdir("h2"), ENOTDIR, "chdir to a file");
    errno = 0; check_err(chdir("missing"), ENOENT, "chdir missing");
    int dfd = open("cd", O_RDONLY | O_DIRECTORY);
    check(fchdir(dfd) == 0, "fchdir");
    touch("inside");
    check(chdir("..") == 0 && access("cd/inside", F_OK) == 0, "fchdir went there");
    close(dfd);
    int ffd = open("h2", O_RDONLY);
    errno = 0; check_err(fchdir(ffd), ENOTDIR, "fchdir to a file");
    close(ffd);
    errno = 0; check_err(syscall(SYS_getcwd, cwd, 2), ERANGE, "getcwd small buffer");
    check(mkdir("symdir", 0755) == 0 && symlink("symdir", "sd") == 0 && chdir("sd") == 0, "chdir through symlink");
    getcwd(cwd2, sizeof cwd2);
    printf("getcwd is canonical %d\n", strcmp(cwd2 + strlen(cwd2) - 7, "/symdir") == 0);
    chdir("..");

    renamed_paths();
    scratch_leave();
    return finish();
}
