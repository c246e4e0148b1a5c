/*
 * Writes into a read-only host mount, every way the syscall ABI offers: each
 * must fail (EROFS, or EXDEV/EBADF/EINVAL/EACCES where Linux checks those
 * first) and the host files must keep their bytes and mtimes.  Run only in
 * the sandbox by tests/security/test_fs_escape.py.
 *
 * usage: escape_ro RO
 *   RO  a read-only host mount holding file.txt, sub/inner.txt, empty/ and
 *       link -> file.txt
 */
#define _GNU_SOURCE
#include "escape_common.h"
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/xattr.h>

static const char *g_ro;

static const char *ro(const char *name) { return esc_join(g_ro, name); }

static void opens(void)
{
    esc_try_write("open_wronly", ro("file.txt"), O_WRONLY, "X");
    esc_try_write("open_rdwr", ro("file.txt"), O_RDWR, "X");
    esc_try_write("open_rdwr_trunc", ro("file.txt"), O_RDWR | O_TRUNC, "X");
    esc_try_write("open_wronly_append", ro("file.txt"), O_WRONLY | O_APPEND, "X");
    esc_try_write("open_rdonly_trunc", ro("file.txt"), O_RDONLY | O_TRUNC, "X");
    esc_try_write("open_creat_new", ro("new.txt"), O_WRONLY | O_CREAT, "X");
    esc_try_write("open_creat_excl", ro("new2.txt"), O_WRONLY | O_CREAT | O_EXCL, "X");
    esc_try_write("open_creat_existing", ro("file.txt"), O_WRONLY | O_CREAT, "X");
    esc_try_write("open_via_symlink", ro("link"), O_WRONLY, "X");
    esc_try_write("open_via_dotdot", ro("sub/../file.txt"), O_WRONLY, "X");
    esc_try_write("open_inner_trunc", ro("sub/inner.txt"), O_WRONLY | O_TRUNC, "X");
    int fd = (int)creat(ro("new3.txt"), 0644);
    if (fd < 0)
        esc_fail("creat");
    else {
        printf("creat: ok\n");
        close(fd);
    }
    struct { unsigned long long flags, mode, resolve; } how = { O_WRONLY, 0, 0 };
    fd = (int)syscall(SYS_openat2, AT_FDCWD, ro("file.txt"), &how, sizeof how);
    if (fd < 0)
        esc_fail("openat2_wronly");
    else {
        printf("openat2_wronly: ok\n");
        close(fd);
    }
    /* Reopen an O_PATH fd for writing through /proc/self/fd. */
    int pfd = open(ro("file.txt"), O_PATH | O_CLOEXEC);
    if (pfd < 0)
        esc_fail("opath");
    else {
        char q[64];
        snprintf(q, sizeof q, "/proc/self/fd/%d", pfd);
        esc_try_write("reopen_procfd_wronly", q, O_WRONLY, "X");
        esc_ret("fchmod_opath", fchmod(pfd, 0777));
        close(pfd);
    }
    esc_ret("access_w", access(ro("file.txt"), W_OK));
}

static void names(void)
{
    esc_ret("unlink", unlink(ro("file.txt")));
    esc_ret("unlink_symlink", unlink(ro("link")));
    esc_ret("unlinkat_dir", unlinkat(AT_FDCWD, ro("empty"), AT_REMOVEDIR));
    esc_ret("rmdir_empty", rmdir(ro("empty")));
    esc_ret("rmdir_nonempty", rmdir(ro("sub")));
    esc_ret("rename_within", rename(ro("file.txt"), ro("renamed.txt")));
    esc_ret("rename_dir_within", rename(ro("sub"), ro("sub2")));
    esc_ret("rename_over", rename(ro("sub/inner.txt"), ro("file.txt")));
    esc_ret("rename_out_to_tmp", rename(ro("file.txt"), "/tmp/esc_ro_out"));
    int fd = open("/tmp/esc_ro_in", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
    esc_ret("rename_in_from_tmp", rename("/tmp/esc_ro_in", ro("file.txt")));
    esc_ret("renameat2_exchange", syscall(SYS_renameat2, AT_FDCWD, ro("file.txt"), AT_FDCWD, ro("link"), 2));
    esc_ret("renameat2_noreplace", syscall(SYS_renameat2, AT_FDCWD, ro("file.txt"), AT_FDCWD, ro("nr.txt"), 1));
    esc_ret("mkdir", mkdir(ro("newdir"), 0755));
    esc_ret("mkdir_existing", mkdir(ro("sub"), 0755));
    esc_ret("mkfifo", mkfifo(ro("fifo"), 0644));
    esc_ret("symlink", symlink("file.txt", ro("newlink")));
    esc_ret("link_within", link(ro("file.txt"), ro("hardlink")));
    esc_ret("link_out_to_tmp", link(ro("file.txt"), "/tmp/esc_ro_link"));
}

static void attrs(void)
{
    esc_ret("chmod", chmod(ro("file.txt"), 0777));
    esc_ret("chmod_dir", chmod(ro("sub"), 0777));
    esc_ret("chown", chown(ro("file.txt"), 1234, 1234));
    esc_ret("lchown_symlink", lchown(ro("link"), 1234, 1234));
    esc_ret("fchmodat", fchmodat(AT_FDCWD, ro("file.txt"), 0600, 0));
    esc_ret("utimensat_now", utimensat(AT_FDCWD, ro("file.txt"), NULL, 0));
    struct timespec ts[2] = { { 12345, 0 }, { 12345, 0 } };
    esc_ret("utimensat_past", utimensat(AT_FDCWD, ro("file.txt"), ts, 0));
    esc_ret("utimensat_dir", utimensat(AT_FDCWD, ro("sub"), ts, 0));
    struct timeval tv[2] = { { 54321, 0 }, { 54321, 0 } };
    esc_ret("utimes", utimes(ro("file.txt"), tv));
    esc_ret("truncate", truncate(ro("file.txt"), 0));
    esc_ret("truncate_grow", truncate(ro("file.txt"), 1 << 20));
    esc_ret("setxattr", setxattr(ro("file.txt"), "user.kvmbox", "x", 1, 0));
    esc_ret("removexattr", removexattr(ro("file.txt"), "user.kvmbox"));

    int fd = open(ro("file.txt"), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        esc_fail("open_rdonly");
        return;
    }
    printf("open_rdonly: ok\n");
    esc_ret("fchmod", fchmod(fd, 0777));
    esc_ret("fchown", fchown(fd, 1234, 1234));
    esc_ret("futimens", futimens(fd, ts));
    esc_ret("ftruncate", ftruncate(fd, 0));
    esc_ret("fallocate", fallocate(fd, 0, 0, 4096));
    esc_ret("write_rdonly_fd", write(fd, "X", 1));
    esc_ret("pwrite_rdonly_fd", pwrite(fd, "X", 1, 0));
    esc_ret("fsetxattr", fsetxattr(fd, "user.kvmbox", "x", 1, 0));
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        esc_fail("mmap_shared_write");
    else {
        printf("mmap_shared_write: ok\n");
        memcpy(m, "MMAP", 4);
        msync(m, 4096, MS_SYNC);
        munmap(m, 4096);
    }
    m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        esc_fail("mmap_shared_read");
    else {
        printf("mmap_shared_read: ok\n");
        esc_ret("mprotect_shared_write", mprotect(m, 4096, PROT_READ | PROT_WRITE));
        munmap(m, 4096);
    }
    m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
        esc_fail("mmap_private_write");
    else {
        printf("mmap_private_write: ok\n");
        memcpy(m, "PRIV", 4);
        msync(m, 4096, MS_SYNC);
        munmap(m, 4096);
    }
    close(fd);
    /* What the file holds afterwards, as the sandbox sees it. */
    esc_try_read("file_after", ro("file.txt"));
}

int main(int argc, char **argv)
{
    escape_guard();
    if (argc < 2) {
        fprintf(stderr, "usage: escape_ro RO\n");
        return 2;
    }
    g_ro = argv[1];
    opens();
    names();
    attrs();
    printf("done\n");
    return 0;
}
