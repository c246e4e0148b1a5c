/*
 * O_TMPFILE: an unnamed regular file in a directory (nlink 0, not listed), made
 * visible with linkat(fd, "", ..., AT_EMPTY_PATH) or through /proc/self/fd/N with
 * AT_SYMLINK_FOLLOW; O_EXCL forbids that; the flag checks (EINVAL without write
 * access, with O_CREAT or without O_DIRECTORY), ENOENT/ENOTDIR for the directory,
 * access mode 3, O_PATH.  (EACCES needs another user: tests/unit/test_vfs_tmpfs.py.)  argv[1]: a directory on a file system with
 * O_TMPFILE (/dev/shm natively and in the sandbox; /tmp: the overlay's upper).
 */
#include "scratch.h"

/* The bare flag (glibc's __O_TMPFILE already includes O_DIRECTORY). */
#define TMPFILE_BIT 020000000
#ifndef O_TMPFILE
#define O_TMPFILE (TMPFILE_BIT | O_DIRECTORY)
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

/* check_err, closing a descriptor an unexpected success opened. */
static void expect_err(long ret, int want, const char *label)
{
    check_err(ret, want, label);
    if (ret >= 0 && want != 0)
        close((int)ret);
}

/* Entries of `dir` other than . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static void show_fd(int fd, const char *label)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        printf("%s: fstat %s\n", label, errname(errno));
        return;
    }
    printf("%s: reg %d nlink %lu mode %o size %lld owner is me %d\n", label, S_ISREG(st.st_mode),
           (unsigned long)st.st_nlink, st.st_mode & 07777, (long long)st.st_size, st.st_uid == geteuid());
}

static void proc_path(char *buf, size_t n, int fd)
{
    snprintf(buf, n, "/proc/self/fd/%d", fd);
}

int main(int argc, char **argv)
{
    umask(022);
    scratch_enter(argc, argv, "tmpfile");
    check(mkdir("d", 0755) == 0, "mkdir d");
    int reg = open("file", O_CREAT | O_WRONLY, 0644);
    close(reg);

    /* flag checks */
    errno = 0; expect_err(open("d", O_TMPFILE | O_RDONLY, 0600), EINVAL, "O_TMPFILE|O_RDONLY");
    errno = 0; expect_err(open("d", TMPFILE_BIT | O_RDWR, 0600), EINVAL, "__O_TMPFILE without O_DIRECTORY");
    errno = 0; expect_err(open("d", O_TMPFILE | O_RDWR | O_CREAT, 0600), EINVAL, "O_TMPFILE|O_CREAT");
    errno = 0; expect_err(open("missing", O_TMPFILE | O_RDWR, 0600), ENOENT, "O_TMPFILE in a missing dir");
    errno = 0; expect_err(open("file", O_TMPFILE | O_RDWR, 0600), ENOTDIR, "O_TMPFILE on a file");
    errno = 0; expect_err(open("d/", O_TMPFILE | O_RDONLY | O_TRUNC, 0600), EINVAL, "O_TMPFILE|O_RDONLY|O_TRUNC");

    /* an unnamed file */
    int fd = open("d", O_TMPFILE | O_RDWR, 0640);
    check(fd >= 0, "O_TMPFILE|O_RDWR");
    show_fd(fd, "tmpfile");
    int fl = fcntl(fd, F_GETFL);
    printf("F_GETFL accmode %d O_DIRECTORY %d __O_TMPFILE %d\n", fl & O_ACCMODE, !!(fl & O_DIRECTORY),
           !!(fl & TMPFILE_BIT));
    check(write(fd, "unnamed bytes", 13) == 13, "write");
    char buf[64] = {0};
    check(pread(fd, buf, sizeof buf - 1, 0) == 13 && !strcmp(buf, "unnamed bytes"), "pread back");
    show_fd(fd, "after write");
    printf("entries in d: %d\n", count_entries("d"));
    int wo = open("d", O_TMPFILE | O_WRONLY, 0600);
    check(wo >= 0, "O_TMPFILE|O_WRONLY");
    errno = 0; expect_err(read(wo, buf, 1), EBADF, "read of a write-only tmpfile");
    close(wo);
    printf("entries after closing an unlinked one: %d\n", count_entries("d"));

    /* naming it */
    check(linkat(fd, "", AT_FDCWD, "d/named", AT_EMPTY_PATH) == 0, "linkat AT_EMPTY_PATH");
    show_fd(fd, "after linkat");
    struct stat a, b;
    check(fstat(fd, &a) == 0 && stat("d/named", &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev,
          "the name is the same inode");
    int rd = open("d/named", O_RDONLY);
    memset(buf, 0, sizeof buf);
    check(rd >= 0 && read(rd, buf, sizeof buf - 1) == 13 && !strcmp(buf, "unnamed bytes"), "read through the name");
    close(rd);
    check(linkat(fd, "", AT_FDCWD, "d/second", AT_EMPTY_PATH) == 0, "a second link");
    show_fd(fd, "two links");
    errno = 0; expect_err(linkat(fd, "", AT_FDCWD, "d/named", AT_EMPTY_PATH), EEXIST, "linkat over a name");
    errno = 0; expect_err(linkat(fd, "", AT_FDCWD, "d/x", 0), ENOENT, "linkat of \"\" without AT_EMPTY_PATH");
    check(unlink("d/named") == 0 && unlink("d/second") == 0, "unlink both names");
    show_fd(fd, "names removed");
    errno = 0; expect_err(linkat(fd, "", AT_FDCWD, "d/again", AT_EMPTY_PATH), ENOENT, "relink after unlink");
    close(fd);
    printf("entries in d: %d\n", count_entries("d"));

    /* through /proc/self/fd */
    char p[64];
    fd = open("d", O_TMPFILE | O_RDWR, 0600);
    check(fd >= 0, "second tmpfile");
    proc_path(p, sizeof p, fd);
    errno = 0; expect_err(linkat(AT_FDCWD, p, AT_FDCWD, "d/nofollow", 0), EXDEV, "linkat of the proc link itself");
    check(linkat(AT_FDCWD, p, AT_FDCWD, "d/viaproc", AT_SYMLINK_FOLLOW) == 0, "linkat via /proc/self/fd");
    show_fd(fd, "via proc");
    check(write(fd, "abc", 3) == 3, "write after linking");
    struct stat st;
    check(stat("d/viaproc", &st) == 0 && st.st_size == 3, "size seen through the name");
    close(fd);

    /* O_EXCL: never linkable */
    fd = open("d", O_TMPFILE | O_RDWR | O_EXCL, 0600);
    check(fd >= 0, "O_TMPFILE|O_EXCL");
    show_fd(fd, "excl");
    errno = 0; expect_err(linkat(fd, "", AT_FDCWD, "d/excl", AT_EMPTY_PATH), ENOENT, "linkat of an O_EXCL tmpfile");
    proc_path(p, sizeof p, fd);
    errno = 0; expect_err(linkat(AT_FDCWD, p, AT_FDCWD, "d/excl", AT_SYMLINK_FOLLOW), ENOENT,
                          "linkat via proc of an O_EXCL tmpfile");
    close(fd);

    /* access mode 3: write permission asked, neither read nor write granted; O_PATH drops O_TMPFILE */
    fd = open("d", O_TMPFILE | 3, 0600);
    check(fd >= 0, "O_TMPFILE with access mode 3");
    errno = 0; expect_err(read(fd, buf, 1), EBADF, "read of mode 3");
    errno = 0; expect_err(write(fd, "x", 1), EBADF, "write of mode 3");
    close(fd);
    fd = open("d", O_TMPFILE | O_RDWR | O_PATH, 0600);
    check(fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode), "O_PATH|O_TMPFILE opens the directory");
    close(fd);

    /* umask, O_APPEND */
    umask(077);
    fd = open("d", O_TMPFILE | O_RDWR | O_APPEND, 0666);
    show_fd(fd, "umask 077");
    check(pwrite(fd, "xy", 2, 0) == 2 && write(fd, "z", 1) == 1, "O_APPEND writes");
    show_fd(fd, "appended");
    close(fd);
    umask(022);

    printf("entries in d at the end: %d\n", count_entries("d"));
    scratch_leave();
    return finish();
}
