/*
 * Escape attempts with hard links, renames and file handles: link() of a file
 * outside the mounts, linkat(AT_SYMLINK_FOLLOW) and linkat(AT_EMPTY_PATH) of
 * O_PATH fds, rename/link across mounts (EXDEV), name_to_handle_at +
 * open_by_handle_at (the "shocker" escape).  Run only in the sandbox by
 * tests/security/test_fs_escape.py; see escape_common.h for the output.
 *
 * usage: escape_links MNT OTHER HOST_OUTSIDE
 *   MNT    read-write host mount holding file.txt, sub/, h_abs, h_rel (host-planted)
 *   OTHER  a second read-write host mount (empty)
 *   HOST_OUTSIDE  absolute host path of the never-mounted directory with secret.txt
 */
#include "escape_common.h"

static const char *g_mnt, *g_other;
static char g_secret_host[4096];

static const char *in(const char *name) { return esc_join(g_mnt, name); }

/* After a link was (maybe) made: what opening it gives. */
static void read_back(const char *label, const char *path)
{
    char l[128];
    snprintf(l, sizeof l, "%s_readback", label);
    esc_try_read(l, path);
}

static void hard_links(void)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/../../outside/secret.txt", g_mnt);
    esc_ret("link_dotdot", link(p, in("stolen1")));
    read_back("link_dotdot", in("stolen1"));
    esc_ret("link_hostpath", link(g_secret_host, in("stolen2")));
    read_back("link_hostpath", in("stolen2"));
    esc_ret("link_root_dotdot", link("/../outside/secret.txt", in("stolen2b")));

    /* link() does not follow a final symlink: a second name for the symlink itself. */
    esc_ret("link_symlink_nofollow", link(in("h_rel"), in("stolen3")));
    read_back("link_symlink_nofollow", in("stolen3"));
    /* AT_SYMLINK_FOLLOW: the target must be resolved in the sandbox, not by the host. */
    esc_ret("linkat_follow_abs", linkat(AT_FDCWD, in("h_abs"), AT_FDCWD, in("stolen4"), AT_SYMLINK_FOLLOW));
    read_back("linkat_follow_abs", in("stolen4"));
    esc_ret("linkat_follow_rel", linkat(AT_FDCWD, in("h_rel"), AT_FDCWD, in("stolen4b"), AT_SYMLINK_FOLLOW));
    read_back("linkat_follow_rel", in("stolen4b"));

    /* AT_EMPTY_PATH on an O_PATH fd of the symlink, and via /proc/self/fd with FOLLOW. */
    int fd = open(in("h_abs"), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        esc_fail("opath_h_abs");
    else {
        esc_ret("linkat_empty_symlink", linkat(fd, "", AT_FDCWD, in("stolen5"), AT_EMPTY_PATH));
        read_back("linkat_empty_symlink", in("stolen5"));
        char q[64];
        snprintf(q, sizeof q, "/proc/self/fd/%d", fd);
        esc_ret("linkat_procfd_symlink", linkat(AT_FDCWD, q, AT_FDCWD, in("stolen6"), AT_SYMLINK_FOLLOW));
        read_back("linkat_procfd_symlink", in("stolen6"));
        close(fd);
    }
    fd = open(in("file.txt"), O_PATH | O_CLOEXEC);
    if (fd < 0)
        esc_fail("opath_file");
    else {
        esc_ret("linkat_empty_other_mount", linkat(fd, "", AT_FDCWD, esc_join(g_other, "x"), AT_EMPTY_PATH));
        esc_ret("linkat_empty_tmp", linkat(fd, "", AT_FDCWD, "/tmp/esc_x", AT_EMPTY_PATH));
        esc_ret("linkat_empty_root", linkat(fd, "", AT_FDCWD, "/esc_x", AT_EMPTY_PATH));
        close(fd);
    }
    fd = open(g_mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        esc_ret("linkat_empty_dir", linkat(fd, "", AT_FDCWD, in("dirlink"), AT_EMPTY_PATH));
        close(fd);
    }
    esc_ret("link_other_mount", link(in("file.txt"), esc_join(g_other, "f")));
    esc_ret("link_to_tmp", link(in("file.txt"), "/tmp/esc_f"));
    esc_ret("link_to_root", link(in("file.txt"), "/esc_f"));
    snprintf(p, sizeof p, "%s/../../outside/hl", g_mnt);
    esc_ret("link_into_outside", link(in("file.txt"), p));
}

static void renames(void)
{
    char p[8192];
    esc_ret("rename_other_mount", rename(in("file.txt"), esc_join(g_other, "moved")));
    esc_ret("rename_to_tmp", rename(in("file.txt"), "/tmp/esc_moved"));
    esc_ret("rename_to_root", rename(in("file.txt"), "/esc_moved"));
    esc_ret("rename_dir_to_tmp", rename(in("sub"), "/tmp/esc_sub"));
    esc_ret("rename_mountpoint", rename(g_mnt, "/tmp/esc_mnt"));
    snprintf(p, sizeof p, "%s/../../outside/secret.txt", g_mnt);
    esc_ret("rename_outside_in", rename(p, in("got")));
    read_back("rename_outside_in", in("got"));
    snprintf(p, sizeof p, "%s/../../outside/new.txt", g_mnt);
    esc_ret("rename_inside_out", rename(in("file.txt"), p));
    snprintf(p, sizeof p, "%s/%s", g_mnt, "../../../../outside/new2.txt");
    esc_ret("rename_inside_out_deep", rename(in("file.txt"), p));
    int fd = open("/tmp/esc_tmpfile", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        (void)!write(fd, "from tmp\n", 9);
        close(fd);
    }
    esc_ret("rename_tmp_into_mnt", rename("/tmp/esc_tmpfile", in("from_tmp")));
    esc_ret("renameat2_exchange_mounts",
            syscall(SYS_renameat2, AT_FDCWD, in("file.txt"), AT_FDCWD, "/tmp/esc_tmpfile", 2));
    /* The file is still where it was, with its bytes. */
    esc_try_read("file_after", in("file.txt"));
}

/* name_to_handle_at + open_by_handle_at: real and forged handles. */
static void handles(void)
{
    struct { unsigned int bytes; int type; unsigned char f[128]; } h;
    int mnt_id = 0;
    memset(&h, 0, sizeof h);
    h.bytes = 128;
    long r = syscall(SYS_name_to_handle_at, AT_FDCWD, in("file.txt"), &h, &mnt_id, 0);
    esc_ret("name_to_handle_at", r);
    int mfd = open(g_mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r == 0) {
        long fd = syscall(SYS_open_by_handle_at, mfd, &h, O_RDONLY);
        if (fd < 0)
            esc_fail("open_by_handle_real");
        else
            esc_report_fd("open_by_handle_real", (int)fd);
    }
    /* Forged: ext4/xfs-style FILEID_INO32_GEN for the root inode (2) and nearby inodes. */
    for (unsigned ino = 2; ino <= 12; ino += 10) {
        memset(&h, 0, sizeof h);
        h.bytes = 8;
        h.type = 1;
        memcpy(h.f, &ino, 4);
        long fd = syscall(SYS_open_by_handle_at, mfd, &h, O_RDONLY);
        char label[64];
        snprintf(label, sizeof label, "open_by_handle_forged_%u", ino);
        if (fd < 0)
            esc_fail(label);
        else
            esc_report_fd(label, (int)fd);
    }
    if (mfd >= 0)
        close(mfd);
}

int main(int argc, char **argv)
{
    escape_guard();
    if (argc < 4) {
        fprintf(stderr, "usage: escape_links MNT OTHER HOST_OUTSIDE\n");
        return 2;
    }
    g_mnt = argv[1];
    g_other = argv[2];
    snprintf(g_secret_host, sizeof g_secret_host, "%s/secret.txt", argv[3]);
    hard_links();
    renames();
    handles();
    printf("done\n");
    return 0;
}
