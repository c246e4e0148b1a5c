/*
 * Regular files through the VFS: open flags (O_CREAT/O_EXCL/O_TRUNC/O_APPEND/
 * O_DIRECTORY/O_NOFOLLOW/O_PATH), read/write/lseek with holes, positional and
 * vector I/O, stat/statx/access/readlink, symlink loops, truncate/fallocate,
 * sendfile/copy_file_range, times and modes.  argv[1]: where to make scratch files.
 */
#include "scratch.h"
#include <sys/sendfile.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <limits.h>

#ifndef SYS_statx
#define SYS_statx 332
#endif
#ifndef SYS_copy_file_range
#define SYS_copy_file_range 326
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef O_PATH
#define O_PATH 010000000
#endif

struct kstatx_ts { long long sec; unsigned nsec; int pad; };
struct kstatx {
    unsigned mask, blksize; unsigned long long attributes;
    unsigned nlink, uid, gid; unsigned short mode, pad1;
    unsigned long long ino, size, blocks, attributes_mask;
    struct kstatx_ts atime, btime, ctime, mtime;
    unsigned rdev_major, rdev_minor, dev_major, dev_minor;
    unsigned long long mnt_id; unsigned long long spare[13];
};

static void put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        printf("put %s failed\n", path);
    close(fd);
}

static void show(const char *path)
{
    char buf[256];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (n < 0) {
        printf("%s: unreadable (%s)\n", path, errname(errno));
    } else {
        buf[n] = 0;
        printf("%s: [%s]\n", path, buf);
    }
    if (fd >= 0)
        close(fd);
}

/* openat2 from a directory fd under RESOLVE_*: d/{e/, f, rel->e, up->.., abs->/, dang->newfile, out->../top}. */
static long o2(int dirfd, const char *path, unsigned long long flags, unsigned long long resolve)
{
    struct { unsigned long long flags, mode, resolve; } how = {flags, flags & O_CREAT ? 0644 : 0, resolve};
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0)
        close((int)fd);
    return fd;
}

#define R_NO_XDEV 0x01
#define R_NO_MAGICLINKS 0x02
#define R_NO_SYMLINKS 0x04
#define R_BENEATH 0x08
#define R_IN_ROOT 0x10

static void openat2_resolve(void)
{
    mkdir("d", 0755);
    mkdir("d/e", 0755);
    put("d/f", "F");
    put("top", "T");
    check(symlink("e", "d/rel") == 0 && symlink("..", "d/up") == 0 && symlink("/", "d/abs") == 0
          && symlink("newfile", "d/dang") == 0 && symlink("../top", "d/out") == 0, "resolve tree");
    int d = open("d", O_RDONLY | O_DIRECTORY);
    const int R = O_RDONLY, D = O_RDONLY | O_DIRECTORY;
    /* BENEATH: stay under d */
    check(o2(d, "e/../f", R, R_BENEATH) >= 0, "BENEATH e/../f");
    check(o2(d, "rel/../rel/.", D, R_BENEATH) >= 0, "BENEATH relative symlink");
    errno = 0; check_err(o2(d, "..", D, R_BENEATH), EXDEV, "BENEATH ..");
    errno = 0; check_err(o2(d, "e/../../top", R, R_BENEATH), EXDEV, "BENEATH e/../..");
    errno = 0; check_err(o2(d, "up/d/f", R, R_BENEATH), EXDEV, "BENEATH symlink to ..");
    errno = 0; check_err(o2(d, "out", R, R_BENEATH), EXDEV, "BENEATH symlink ../top");
    errno = 0; check_err(o2(d, "abs", D, R_BENEATH), EXDEV, "BENEATH absolute symlink");
    errno = 0; check_err(o2(d, "/", D, R_BENEATH), EXDEV, "BENEATH absolute path");
    check(o2(d, "abs", O_PATH | O_NOFOLLOW, R_BENEATH) >= 0, "BENEATH O_NOFOLLOW link itself");
    /* IN_ROOT: d is "/" */
    check(o2(d, "../../f", R, R_IN_ROOT) >= 0, "IN_ROOT ../../f clamps");
    check(o2(d, "/f", R, R_IN_ROOT) >= 0, "IN_ROOT /f");
    check(o2(d, "abs/e/../f", R, R_IN_ROOT) >= 0, "IN_ROOT absolute symlink");
    check(o2(d, "up/up/f", R, R_IN_ROOT) >= 0, "IN_ROOT symlink to ..");
    errno = 0; check_err(o2(d, "out", R, R_IN_ROOT), ENOENT, "IN_ROOT ../top is /top");
    /* NO_SYMLINKS */
    errno = 0; check_err(o2(d, "rel", D, R_NO_SYMLINKS), ELOOP, "NO_SYMLINKS last");
    errno = 0; check_err(o2(d, "rel/../f", R, R_NO_SYMLINKS), ELOOP, "NO_SYMLINKS middle");
    check(o2(d, "rel", O_PATH | O_NOFOLLOW, R_NO_SYMLINKS) >= 0, "NO_SYMLINKS O_PATH|O_NOFOLLOW");
    errno = 0; check_err(o2(d, "rel", R | O_NOFOLLOW, R_NO_SYMLINKS), ELOOP, "NO_SYMLINKS O_NOFOLLOW");
    check(o2(d, "e/../f", R, R_NO_SYMLINKS) >= 0, "NO_SYMLINKS no links");
    /* magic links: /proc/self/fd/N */
    int pfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY);
    char n[16];
    snprintf(n, sizeof n, "%d", d);
    check(o2(pfd, n, D, 0) >= 0, "fd link followed");
    check(o2(AT_FDCWD, "/proc/self/fd", D, R_NO_MAGICLINKS) >= 0, "NO_MAGICLINKS /proc/self");
    errno = 0; check_err(o2(pfd, n, D, R_NO_MAGICLINKS), ELOOP, "NO_MAGICLINKS fd link");
    errno = 0; check_err(o2(pfd, n, D, R_NO_MAGICLINKS | R_BENEATH), ELOOP, "NO_MAGICLINKS before BENEATH");
    check(o2(pfd, n, O_PATH | O_NOFOLLOW, R_NO_MAGICLINKS) >= 0, "NO_MAGICLINKS O_PATH|O_NOFOLLOW");
    errno = 0; check_err(o2(pfd, n, D, R_BENEATH), EXDEV, "BENEATH fd link");
    errno = 0; check_err(o2(pfd, n, D, R_IN_ROOT), EXDEV, "IN_ROOT fd link");
    errno = 0; check_err(o2(pfd, n, D, R_NO_XDEV), EXDEV, "NO_XDEV fd link to another mount");
    errno = 0; check_err(o2(pfd, n, D, R_NO_SYMLINKS), ELOOP, "NO_SYMLINKS fd link");
    check(o2(pfd, "../fd/.", D, R_NO_XDEV) >= 0, "NO_XDEV ../fd within /proc");
    close(pfd);
    /* NO_XDEV: /proc is another mount than / */
    int root = open("/", O_PATH | O_DIRECTORY);
    int proc = open("/proc", O_PATH | O_DIRECTORY);
    errno = 0; check_err(o2(root, "proc/self", D, R_NO_XDEV), EXDEV, "NO_XDEV into /proc");
    errno = 0; check_err(o2(proc, "..", D, R_NO_XDEV), EXDEV, "NO_XDEV .. out of /proc");
    errno = 0; check_err(o2(proc, "/proc", D, R_NO_XDEV), EXDEV, "NO_XDEV absolute into /proc");
    check(o2(proc, "/", D, R_NO_XDEV) >= 0, "NO_XDEV absolute / from /proc");
    check(o2(proc, "self/fd", D, R_NO_XDEV) >= 0, "NO_XDEV within /proc");
    check(o2(proc, "self/fd", D, R_BENEATH) >= 0, "BENEATH /proc/self is a plain link");
    check(o2(proc, "..", D, R_IN_ROOT) >= 0, "IN_ROOT .. of /proc");
    close(proc);
    close(root);
    /* O_CREAT under restrictions */
    const int C = O_WRONLY | O_CREAT;
    check(o2(d, "e/new", C, R_BENEATH) >= 0 && access("d/e/new", F_OK) == 0, "BENEATH O_CREAT");
    errno = 0; check_err(o2(d, "../new", C, R_BENEATH), EXDEV, "BENEATH O_CREAT ..");
    errno = 0; check_err(o2(d, "up/new", C, R_BENEATH), EXDEV, "BENEATH O_CREAT via symlink");
    check(o2(d, "/rootnew", C, R_IN_ROOT) >= 0 && access("d/rootnew", F_OK) == 0, "IN_ROOT O_CREAT /x");
    errno = 0; check_err(o2(d, "dang", C | O_EXCL, R_BENEATH), EEXIST, "O_EXCL on a dangling link");
    errno = 0; check_err(o2(d, "dang", C, R_NO_SYMLINKS), ELOOP, "NO_SYMLINKS O_CREAT dangling");
    errno = 0; check_err(o2(d, "dang", C | O_NOFOLLOW, R_BENEATH), ELOOP, "O_CREAT|O_NOFOLLOW link");
    check(o2(d, "dang", C, R_BENEATH) >= 0 && access("d/newfile", F_OK) == 0, "O_CREAT through dangling link");
    check(o2(d, "f", C | O_TRUNC, R_BENEATH) >= 0, "O_CREAT existing");
    errno = 0; check_err(o2(d, "f", C | O_EXCL, R_BENEATH), EEXIST, "O_EXCL existing");
    errno = 0; check_err(o2(d, "slash/", C, R_BENEATH), EISDIR, "O_CREAT trailing slash");
    errno = 0; check_err(o2(d, "f/", C, R_BENEATH), EISDIR, "O_CREAT file/");
    errno = 0; check_err(o2(d, "e/", C, R_BENEATH), EISDIR, "O_CREAT dir/");
    errno = 0; check_err(o2(d, ".", C, R_BENEATH), EISDIR, "O_CREAT .");
    errno = 0; check_err(o2(d, "..", C, R_BENEATH), EXDEV, "O_CREAT .. BENEATH");
    errno = 0; check_err(o2(d, "nodir/x", C, R_BENEATH), ENOENT, "O_CREAT missing dir");
    /* walk errors */
    errno = 0; check_err(o2(d, "f/", R, R_BENEATH), ENOTDIR, "BENEATH file/");
    errno = 0; check_err(o2(d, "f/x", R, R_BENEATH), ENOTDIR, "BENEATH file/x");
    errno = 0; check_err(o2(d, "nope", R, R_BENEATH), ENOENT, "BENEATH missing");
    close(d);
}

/* read(2) into a buffer that ends early: Linux delivers what fits (a short count) and
 * keeps the rest in the file or pipe; EFAULT only when nothing fits. */
static void short_reads(void)
{
    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(m + 4096, 4096);
    char *tail = m + 4096 - 100;
    int fd = open("shortread", O_RDWR | O_CREAT | O_TRUNC, 0644);
    static char block[5000];
    memset(block, 'x', sizeof block);
    write(fd, block, sizeof block);
    lseek(fd, 0, SEEK_SET);
    long r = read(fd, tail, 4096);
    printf("file into a 100-byte tail: %ld, position %ld\n", r, (long)lseek(fd, 0, SEEK_CUR));
    r = pread(fd, tail, 4096, 10);
    printf("pread into the tail: %ld\n", r);
    errno = 0; check_err(read(fd, m + 4096, 10), EFAULT, "read into an unmapped page");
    lseek(fd, 4998, SEEK_SET);
    printf("2 bytes left into the tail: %ld\n", (long)read(fd, tail, 4096));
    close(fd);
    unlink("shortread");
    int p[2];
    pipe(p);
    write(p[1], block, 300);
    r = read(p[0], tail, 4096);
    printf("pipe into the tail: %ld, then %ld left\n", r, (long)read(p[0], block, sizeof block));
    close(p[0]);
    close(p[1]);
    munmap(m, 4096);
}

/* An open file outlives its name: fstat, read and mmap still work after unlink. */
static void unlinked_but_open(void)
{
    int fd = open("doomed", O_RDWR | O_CREAT | O_TRUNC, 0640);
    check(fd >= 0 && write(fd, "still here", 10) == 10, "create doomed");
    check(unlink("doomed") == 0, "unlink doomed while open");
    struct stat st;
    check(fstat(fd, &st) == 0, "fstat after unlink");
    printf("unlinked: nlink %lu size %lld mode %o\n", (unsigned long)st.st_nlink,
           (long long)st.st_size, st.st_mode);
    char b[16] = {0};
    check(pread(fd, b, 10, 0) == 10 && !memcmp(b, "still here", 10), "pread after unlink");
    char *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    check(m != MAP_FAILED && !memcmp(m, "still", 5), "mmap after unlink");
    if (m != MAP_FAILED)
        munmap(m, 4096);
    check(ftruncate(fd, 4) == 0 && fstat(fd, &st) == 0 && st.st_size == 4, "ftruncate after unlink");
    errno = 0; check_err(open("doomed", O_RDONLY), ENOENT, "name gone");
    close(fd);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv, "files");
    umask(022);
    char buf[8192];
    struct stat st;

    /* creation, modes, O_EXCL, O_TRUNC */
    int fd = open("a", O_RDWR | O_CREAT | O_EXCL, 0666);
    check(fd >= 0, "create a");
    fstat(fd, &st);
    printf("a mode %o size %lld nlink %lu\n", st.st_mode, (long long)st.st_size, (unsigned long)st.st_nlink);
    check(write(fd, "hello world", 11) == 11, "write 11");
    check(lseek(fd, 0, SEEK_CUR) == 11, "position 11");
    check(lseek(fd, 0, SEEK_SET) == 0, "rewind");
    check(read(fd, buf, 5) == 5 && !memcmp(buf, "hello", 5), "read hello");
    errno = 0; check_err(open("a", O_RDWR | O_CREAT | O_EXCL, 0644), EEXIST, "O_EXCL existing");
    errno = 0; check_err(open("missing", O_RDONLY), ENOENT, "open missing");
    errno = 0; check_err(open("missing/x", O_RDWR | O_CREAT, 0644), ENOENT, "create under missing dir");
    errno = 0; check_err(open("a/x", O_RDONLY), ENOTDIR, "file as directory");
    errno = 0; check_err(open("a", O_RDONLY | O_DIRECTORY), ENOTDIR, "O_DIRECTORY on a file");
    errno = 0; check_err(open(".", O_WRONLY), EISDIR, "O_WRONLY on a directory");
    errno = 0; check_err(open(".", O_RDWR | O_CREAT, 0644), EISDIR, "O_CREAT on a directory");
    errno = 0; check_err(open("", O_RDONLY), ENOENT, "empty path");
    errno = 0; check_err(open(BADPTR, O_RDONLY), EFAULT, "bad path pointer");
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    errno = 0; check_err(open(longname, O_RDONLY), ENAMETOOLONG, "component too long");
    close(fd);
    fd = open("a", O_RDWR | O_TRUNC);
    fstat(fd, &st);
    check(st.st_size == 0, "O_TRUNC empties");
    close(fd);
    fd = creat("c", 0600);
    check(fd >= 0, "creat");
    errno = 0; check_err(read(fd, buf, 1), EBADF, "read on O_WRONLY");
    close(fd);
    stat("c", &st);
    printf("c mode %o\n", st.st_mode);
    umask(0077);
    close(open("u", O_CREAT | O_WRONLY, 0666));
    stat("u", &st);
    printf("umask 077 gives %o\n", st.st_mode & 0777);
    umask(022);

    /* O_APPEND, holes, pread/pwrite, vectors */
    put("ap", "start:");
    fd = open("ap", O_WRONLY | O_APPEND);
    lseek(fd, 0, SEEK_SET);
    write(fd, "end", 3);
    printf("append position %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
    close(fd);
    show("ap");
    fd = open("hole", O_RDWR | O_CREAT, 0644);
    check(lseek(fd, 10000, SEEK_SET) == 10000, "seek past EOF");
    write(fd, "Z", 1);
    fstat(fd, &st);
    printf("hole size %lld\n", (long long)st.st_size);
    memset(buf, 1, sizeof buf);
    check(pread(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf, "pread hole");
    int zeros = 1;
    for (int i = 0; i < 8192; i++)
        zeros &= buf[i] == 0;
    check(zeros, "hole reads zeros");
    check(pread(fd, buf, 10, 10000) == 1 && buf[0] == 'Z', "pread after hole");
    check(pread(fd, buf, 10, 20000) == 0, "pread past EOF");
    check(pwrite(fd, "abc", 3, 2) == 3, "pwrite");
    check(lseek(fd, 0, SEEK_CUR) == 10001, "pwrite leaves the position");
    errno = 0; check_err(lseek(fd, -1, SEEK_SET), EINVAL, "lseek negative");
    errno = 0; check_err(lseek(fd, 0, 99), EINVAL, "lseek bad whence");
    printf("SEEK_END-1 %lld\n", (long long)lseek(fd, -1, SEEK_END));
    struct iovec iov[3] = {{"one ", 4}, {"two ", 4}, {"three", 5}};
    lseek(fd, 0, SEEK_SET);
    check(writev(fd, iov, 3) == 13, "writev");
    char x1[4], x2[9];
    struct iovec rv[2] = {{x1, 4}, {x2, 9}};
    check(preadv(fd, rv, 2, 0) == 13 && !memcmp(x1, "one ", 4) && !memcmp(x2, "two three", 9), "preadv");
    check(pwritev(fd, iov + 2, 1, 100) == 5, "pwritev");
    close(fd);

    /* truncate, ftruncate, fallocate */
    put("t", "0123456789");
    check(truncate("t", 4) == 0, "truncate shrink");
    show("t");
    check(truncate("t", 6) == 0, "truncate grow");
    stat("t", &st);
    printf("t size %lld\n", (long long)st.st_size);
    errno = 0; check_err(truncate("t", -1), EINVAL, "truncate negative");
    errno = 0; check_err(truncate(".", 0), EISDIR, "truncate a directory");
    fd = open("t", O_RDONLY);
    errno = 0; check_err(ftruncate(fd, 0), EINVAL, "ftruncate read-only fd");
    close(fd);
    fd = open("t", O_RDWR);
    check(ftruncate(fd, 2) == 0, "ftruncate");
    check(fallocate(fd, 0, 0, 8192) == 0, "fallocate mode 0");
    fstat(fd, &st);
    printf("after fallocate size %lld\n", (long long)st.st_size);
    check(fallocate(fd, 1 /* KEEP_SIZE */, 0, 100000) == 0, "fallocate KEEP_SIZE");
    fstat(fd, &st);
    printf("after KEEP_SIZE size %lld\n", (long long)st.st_size);
    errno = 0; check_err(fallocate(fd, 0, -1, 10), EINVAL, "fallocate negative offset");
    errno = 0; check_err(fallocate(fd, 0, 0, 0), EINVAL, "fallocate zero length");
    check(fsync(fd) == 0 && fdatasync(fd) == 0, "fsync fdatasync");
    close(fd);
    sync();

    /* symlinks, readlink, O_NOFOLLOW, loops, O_PATH */
    check(symlink("t", "lt") == 0, "symlink");
    check(symlink("nowhere", "dangling") == 0, "dangling symlink");
    check(symlink("loop2", "loop1") == 0 && symlink("loop1", "loop2") == 0, "symlink loop");
    errno = 0; check_err(symlink("t", "lt"), EEXIST, "symlink over existing");
    errno = 0; check_err(open("loop1", O_RDONLY), ELOOP, "open a loop");
    errno = 0; check_err(open("lt", O_RDONLY | O_NOFOLLOW), ELOOP, "O_NOFOLLOW on a symlink");
    errno = 0; check_err(open("dangling", O_RDONLY), ENOENT, "open dangling");
    errno = 0; check_err(open("dangling", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST, "O_EXCL on dangling");
    fd = open("dangling", O_WRONLY | O_CREAT, 0644);
    check(fd >= 0, "O_CREAT through dangling creates the target");
    close(fd);
    check(access("nowhere", F_OK) == 0, "target exists now");
    /* O_CREAT of things that are not a new name */
    errno = 0; check_err(open(".", O_WRONLY | O_CREAT, 0644), EISDIR, "O_CREAT .");
    errno = 0; check_err(open("..", O_RDONLY | O_CREAT | O_EXCL, 0644), EEXIST, "O_CREAT|O_EXCL ..");
    errno = 0; check_err(open("./", O_RDONLY | O_CREAT, 0644), EISDIR, "O_CREAT ./");
    check(mkdir("cdir", 0755) == 0, "mkdir cdir");
    errno = 0; check_err(open("cdir/", O_RDONLY | O_CREAT | O_EXCL, 0644), EISDIR, "O_CREAT|O_EXCL dir/");
    errno = 0; check_err(open("cdir", O_RDONLY | O_CREAT | O_EXCL, 0644), EEXIST, "O_CREAT|O_EXCL dir");
    errno = 0; check_err(open("cdir", O_RDONLY | O_CREAT, 0644), EISDIR, "O_CREAT dir");
    rmdir("cdir");
    errno = 0; check_err(open("/", O_RDONLY | O_CREAT, 0644), EISDIR, "O_CREAT /");
    errno = 0; check_err(open("gone/.", O_RDONLY | O_CREAT, 0644), ENOENT, "O_CREAT missing/.");
    errno = 0; check_err(open("newdir/", O_RDONLY | O_CREAT, 0644), EISDIR, "O_CREAT new name with /");
    errno = 0; check_err(open("lt", O_RDONLY | O_CREAT | O_NOFOLLOW, 0644), ELOOP, "O_CREAT|O_NOFOLLOW on a link");
    check(symlink("cloop2", "cloop1") == 0 && symlink("cloop1", "cloop2") == 0, "a symlink loop");
    errno = 0; check_err(open("cloop1", O_WRONLY | O_CREAT, 0644), ELOOP, "O_CREAT through a loop");
    check(symlink("chain/x", "into_missing") == 0, "link into a missing dir");
    errno = 0; check_err(open("into_missing", O_WRONLY | O_CREAT, 0644), ENOENT, "O_CREAT via link into missing dir");
    unlink("cloop1"); unlink("cloop2"); unlink("into_missing");
    ssize_t n = readlink("lt", buf, sizeof buf);
    printf("readlink lt -> %.*s (%zd)\n", (int)(n > 0 ? n : 0), buf, n);
    n = readlink("lt", buf, 0 + 1);
    printf("readlink bufsiz 1 -> %zd\n", n);
    errno = 0; check_err(readlink("t", buf, sizeof buf), EINVAL, "readlink a file");
    errno = 0; check_err(readlink("missing", buf, sizeof buf), ENOENT, "readlink missing");
    lstat("lt", &st);
    printf("lstat lt: link %d size %lld\n", S_ISLNK(st.st_mode), (long long)st.st_size);
    stat("lt", &st);
    printf("stat lt: reg %d size %lld\n", S_ISREG(st.st_mode), (long long)st.st_size);
    int pfd = open("lt", O_PATH | O_NOFOLLOW);
    check(pfd >= 0, "O_PATH|O_NOFOLLOW on a symlink");
    fstat(pfd, &st);
    printf("O_PATH fstat link %d\n", S_ISLNK(st.st_mode));
    errno = 0; check_err(read(pfd, buf, 1), EBADF, "read on O_PATH");
    n = readlinkat(pfd, "", buf, sizeof buf);
    printf("readlinkat(O_PATH fd, \"\") -> %zd\n", n);
    close(pfd);
    pfd = open(".", O_PATH | O_DIRECTORY);
    check(openat(pfd, "t", O_RDONLY) >= 0, "O_PATH dir as dirfd");
    struct stat st2;
    check(fstatat(pfd, "t", &st2, 0) == 0 && st2.st_size == 8192, "fstatat through O_PATH dirfd");
    errno = 0; check_err(syscall(SYS_fchmod, pfd, 0700), EBADF, "fchmod on O_PATH");
    close(pfd);
    fd = open("t", O_RDONLY);
    errno = 0; check_err(openat(fd, "x", O_RDONLY), ENOTDIR, "openat with a file dirfd");
    close(fd);
    errno = 0; check_err(openat(999, "x", O_RDONLY), EBADF, "openat bad dirfd");
    check(openat(999, "/proc/self", O_RDONLY) >= 0, "absolute path ignores dirfd");

    /* access, chmod, chown, times */
    check(access("t", R_OK | W_OK) == 0, "access rw");
    errno = 0; check_err(access("t", 8), EINVAL, "access bad mode");
    errno = 0; check_err(access("missing", F_OK), ENOENT, "access missing");
    check(chmod("t", 0751) == 0, "chmod");
    stat("t", &st);
    printf("chmod -> %o\n", st.st_mode & 07777);
    check(chown("t", getuid(), getgid()) == 0, "chown to self");
    check(lchown("lt", -1, -1) == 0, "lchown no-op");
    struct timespec ts[2] = {{1000000000, 5}, {1200000000, 7}};
    check(utimensat(AT_FDCWD, "t", ts, 0) == 0, "utimensat explicit");
    stat("t", &st);
    printf("times %lld.%ld %lld.%ld\n", (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
           (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timespec omit[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    check(utimensat(AT_FDCWD, "t", omit, 0) == 0, "utimensat omit/now");
    stat("t", &st);
    printf("atime kept %d mtime now %d\n", st.st_atim.tv_sec == 1000000000, st.st_mtim.tv_sec > 1600000000);
    struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
    errno = 0; check_err(utimensat(AT_FDCWD, "t", bad, 0), EINVAL, "utimensat bad nsec");
    struct timeval tv[2] = {{1100000000, 0}, {1100000001, 0}};
    check(utimes("t", tv) == 0, "utimes");
    stat("t", &st);
    printf("utimes mtime %lld\n", (long long)st.st_mtim.tv_sec);

    /* statx, statfs */
    struct kstatx sx;
    memset(&sx, 0, sizeof sx);
    check(syscall(SYS_statx, AT_FDCWD, "t", 0, 0x7ff, &sx) == 0, "statx");
    stat("t", &st);
    printf("statx basic %d size %llu mode %o same ino %d nlink %u\n", (sx.mask & 0x7ff) == 0x7ff,
           sx.size, sx.mode, sx.ino == (unsigned long long)st.st_ino, sx.nlink);
    errno = 0; check_err(syscall(SYS_statx, AT_FDCWD, "t", 0x6000, 0x7ff, &sx), EINVAL, "statx both sync flags");
    fd = open("t", O_RDONLY);
    memset(&sx, 0, sizeof sx);
    check(syscall(SYS_statx, fd, "", 0x1000 /* AT_EMPTY_PATH */, 0x7ff, &sx) == 0 && sx.size == 8192,
          "statx AT_EMPTY_PATH");
    struct statfs sf;
    check(fstatfs(fd, &sf) == 0 && sf.f_bsize > 0, "fstatfs");
    check(statfs(".", &sf) == 0, "statfs");
    close(fd);

    /* sendfile, copy_file_range */
    put("src", "0123456789abcdef");
    int in = open("src", O_RDONLY), out = open("dst", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    off_t off = 4;
    check(sendfile(out, in, &off, 6) == 6 && off == 10, "sendfile with offset");
    check(lseek(in, 0, SEEK_CUR) == 0, "sendfile offset leaves position");
    check(sendfile(out, in, NULL, 3) == 3 && lseek(in, 0, SEEK_CUR) == 3, "sendfile from position");
    close(out);
    show("dst");
    out = open("cfr", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    loff_t oi = 10, oo = 0;
    check(syscall(SYS_copy_file_range, in, &oi, out, &oo, 6, 0) == 6 && oi == 16 && oo == 6, "copy_file_range");
    close(out);
    close(in);
    show("cfr");
    check(posix_fadvise(open("src", O_RDONLY), 0, 0, POSIX_FADV_SEQUENTIAL) == 0, "fadvise");

    /* openat2 */
    struct { unsigned long long flags, mode, resolve; } how = {O_RDONLY, 0, 0};
    check(syscall(SYS_openat2, AT_FDCWD, "t", &how, sizeof how) >= 0, "openat2 plain");
    how.resolve = 0x04; /* RESOLVE_NO_SYMLINKS */
    errno = 0; check_err(syscall(SYS_openat2, AT_FDCWD, "lt", &how, sizeof how), ELOOP, "openat2 NO_SYMLINKS");
    how.resolve = 0x08; /* RESOLVE_BENEATH */
    errno = 0; check_err(syscall(SYS_openat2, AT_FDCWD, "../x", &how, sizeof how), EXDEV, "openat2 BENEATH ..");
    errno = 0; check_err(syscall(SYS_openat2, AT_FDCWD, "/etc/passwd", &how, sizeof how), EXDEV, "openat2 BENEATH absolute");
    how.resolve = 0x1000;
    errno = 0; check_err(syscall(SYS_openat2, AT_FDCWD, "t", &how, sizeof how), EINVAL, "openat2 bad resolve");
    how.resolve = 0; how.mode = 0644;
    errno = 0; check_err(syscall(SYS_openat2, AT_FDCWD, "t", &how, sizeof how), EINVAL, "openat2 mode without O_CREAT");
    how.mode = 0;
    errno = 0; check_err(syscall(SYS_openat2, AT_FDCWD, "t", &how, 8), EINVAL, "openat2 small size");

    openat2_resolve();
    unlinked_but_open();
    short_reads();

    scratch_leave();
    return finish();
}
