/*
 * The default root (the host's / read-only under an in-memory overlay): the
 * program writes, creates, removes, renames and chmods host files such as
 * /etc/passwd.  Each change must succeed in the sandbox (the overlay) and be
 * visible to the program, while the host files stay unchanged.  Run only in
 * the sandbox by tests/security/test_fs_escape.py.
 *
 * usage: escape_root VICTIMS
 *   VICTIMS  a host directory (seen through the root overlay) holding a.txt,
 *            b.txt, c.txt and sub/inner.txt
 */
#include "escape_common.h"

#define MARKER "kvmbox-escape-marker"

static int file_has(const char *path, const char *needle)
{
    char buf[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static void readback(const char *label, const char *path, const char *needle)
{
    int r = file_has(path, needle);
    if (r < 0)
        esc_fail(label);
    else
        printf("%s: %s\n", label, r ? "has_marker" : "no_marker");
}

static void exists(const char *label, const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        esc_fail(label);
    else
        printf("%s: exists mode %o\n", label, (unsigned)(st.st_mode & 07777));
}

int main(int argc, char **argv)
{
    escape_guard();
    if (argc < 2) {
        fprintf(stderr, "usage: escape_root VICTIMS\n");
        return 2;
    }
    const char *v = argv[1];

    esc_try_write("etc_passwd_append", "/etc/passwd", O_WRONLY | O_APPEND,
                  MARKER ":x:0:0::/:/bin/sh\n");
    readback("etc_passwd_readback", "/etc/passwd", MARKER);
    esc_try_write("etc_create", "/etc/kvmbox-escape-test", O_WRONLY | O_CREAT | O_EXCL, MARKER "\n");
    readback("etc_create_readback", "/etc/kvmbox-escape-test", MARKER);
    esc_ret("etc_hostname_unlink", unlink("/etc/hostname"));
    exists("etc_hostname_after", "/etc/hostname");
    esc_ret("etc_hosts_rename", rename("/etc/hosts", "/etc/hosts.kvmbox-moved"));
    exists("etc_hosts_after", "/etc/hosts");
    esc_ret("etc_shadow_chmod", chmod("/etc/shadow", 0666));
    exists("etc_shadow_after", "/etc/shadow");
    esc_ret("etc_group_truncate", truncate("/etc/group", 0));
    esc_ret("etc_mkdir", mkdir("/etc/kvmbox-escape-dir", 0755));
    esc_ret("etc_symlink", symlink("/etc/passwd", "/etc/kvmbox-escape-link"));
    esc_try_write("etc_motd_trunc", "/etc/motd", O_WRONLY | O_TRUNC, MARKER "\n");
    readback("etc_motd_readback", "/etc/motd", MARKER);

    esc_try_write("victim_a_trunc", esc_join(v, "a.txt"), O_WRONLY | O_TRUNC, MARKER "\n");
    readback("victim_a_readback", esc_join(v, "a.txt"), MARKER);
    esc_try_write("victim_b_rdwr", esc_join(v, "b.txt"), O_RDWR, MARKER);
    esc_ret("victim_c_unlink", unlink(esc_join(v, "c.txt")));
    esc_ret("victim_inner_unlink", unlink(esc_join(v, "sub/inner.txt")));
    esc_ret("victim_sub_rmdir", rmdir(esc_join(v, "sub")));
    esc_try_write("victim_new", esc_join(v, "new.txt"), O_WRONLY | O_CREAT, MARKER "\n");
    struct timespec ts[2] = { { 12345, 0 }, { 12345, 0 } };
    esc_ret("victim_b_utimensat", utimensat(AT_FDCWD, esc_join(v, "b.txt"), ts, 0));
    esc_ret("victim_b_chmod", chmod(esc_join(v, "b.txt"), 0600));

    /* The program's own file, by name and through /proc/self/exe. */
    esc_try_write("self_exe_write", argv[0], O_WRONLY, "PWNED");
    esc_try_write("proc_exe_write", "/proc/self/exe", O_WRONLY, "PWNED");
    printf("done\n");
    return 0;
}
