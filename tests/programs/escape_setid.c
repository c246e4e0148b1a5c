/*
 * A read-write host mount must not become a way up on the host: the guest runs as
 * root and so may the Sentry, but what it leaves in the mount must not give a host
 * user more than the user who ran kvmbox has.  Tries to make set-id executables
 * (creat/open/mkdir/mknod modes, chmod, fchmod, fchmodat), to give files away
 * (chown/lchown/fchown/fchownat to root and to other ids), to make device nodes,
 * to set file capabilities (security.capability), to change a set-id program the
 * host planted, and reads the mount tables.  Prints "label: RESULT" and, for files
 * it made, "label_mode: 0NNNN uid U gid G" as the guest sees them.  Run only in the
 * sandbox by tests/security/test_host_mount_privilege.py, which checks the host side.
 *
 * usage: escape_setid MNT
 *   MNT  a read-write host mount holding the host-planted files
 *        suid_root (04755), sgid_prog (02755), theirs (owned by uid 12345 when the
 *        test runs as root), keep_suid (04755, only read)
 */
#include "escape_common.h"
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static const char *g_mnt;

static const char *p(const char *name)
{
    return esc_join(g_mnt, name);
}

/* What the guest sees of `name` afterwards. */
static void show(const char *label, const char *name)
{
    struct stat st;
    if (lstat(p(name), &st) != 0) {
        printf("%s_mode: %s\n", label, esc_errname(errno));
        return;
    }
    printf("%s_mode: 0%04o uid %u gid %u\n", label, st.st_mode & 07777, st.st_uid, st.st_gid);
}

static void try_creat(const char *label, const char *name, int mode)
{
    int fd = open(p(name), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        esc_fail(label);
        return;
    }
    if (write(fd, "#!/bin/sh\nid\n", 13) != 13)
        printf("%s: write %s\n", label, esc_errname(errno));
    else
        printf("%s: ok\n", label);
    close(fd);
    show(label, name);
}

static void dump(const char *path)
{
    char buf[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("dump %s: %s\n", path, esc_errname(errno));
        return;
    }
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = 0;
    printf("dump %s %ld\n", path, n);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        printf("| %s\n", line);
}

int main(int argc, char **argv)
{
    escape_guard();
    if (argc < 2) {
        fprintf(stderr, "usage: escape_setid MNT\n");
        return 2;
    }
    g_mnt = argv[1];
    umask(0);

    /* Set-id bits at birth. */
    try_creat("creat_suid", "c_suid", 04755);
    try_creat("creat_sgid", "c_sgid", 02755);
    try_creat("creat_both", "c_both", 06777);
    esc_ret("mkdir_sgid", mkdir(p("d_sgid"), 02755));
    show("mkdir_sgid", "d_sgid");
    esc_ret("mkdir_suid", mkdir(p("d_suid"), 04755));
    show("mkdir_suid", "d_suid");
    esc_ret("mknod_fifo_suid", mknod(p("fifo_suid"), S_IFIFO | 06644, 0));
    show("mknod_fifo_suid", "fifo_suid");
    esc_ret("mknod_reg_suid", mknod(p("reg_suid"), S_IFREG | 04755, 0));
    show("mknod_reg_suid", "reg_suid");

    /* Set-id bits later. */
    try_creat("plain", "plain", 0755);
    esc_ret("chmod_suid", chmod(p("plain"), 04755));
    show("chmod_suid", "plain");
    esc_ret("chmod_sgid", chmod(p("plain"), 02755));
    show("chmod_sgid", "plain");
    int fd = open(p("plain"), O_RDONLY | O_CLOEXEC);
    esc_ret("fchmod_suid", fchmod(fd, 06755));
    close(fd);
    show("fchmod_suid", "plain");
    esc_ret("fchmodat_suid", fchmodat(AT_FDCWD, p("plain"), 04711, 0));
    show("fchmodat_suid", "plain");
    fd = open(p("plain"), O_PATH | O_CLOEXEC);
    char procpath[64];
    snprintf(procpath, sizeof procpath, "/proc/self/fd/%d", fd);
    esc_ret("chmod_via_opath", chmod(procpath, 04755));
    close(fd);
    show("chmod_via_opath", "plain");
    esc_ret("chmod_dir_sgid", chmod(p("d_suid"), 02755));
    show("chmod_dir_sgid", "d_suid");
    esc_ret("chmod_dir_suid", chmod(p("d_sgid"), 04755));
    show("chmod_dir_suid", "d_sgid");

    /* Giving files away. */
    try_creat("mine", "mine", 0755);
    esc_ret("chown_mine_root", chown(p("mine"), 0, 0));
    esc_ret("chown_mine_other", chown(p("mine"), 12345, 12345));
    esc_ret("chown_mine_nobody", chown(p("mine"), 65534, -1));
    esc_ret("chgrp_mine_other", chown(p("mine"), -1, 12345));
    fd = open(p("mine"), O_RDONLY | O_CLOEXEC);
    esc_ret("fchown_mine_other", fchown(fd, 12345, 12345));
    close(fd);
    esc_ret("fchownat_mine_other", fchownat(AT_FDCWD, p("mine"), 12345, -1, 0));
    esc_ret("symlink_mine", symlink("mine", p("mine_link")));
    esc_ret("lchown_link_other", lchown(p("mine_link"), 12345, 12345));
    esc_ret("chown_theirs_root", chown(p("theirs"), 0, 0));
    esc_ret("chown_theirs_same", chown(p("theirs"), -1, -1));
    show("mine", "mine");
    show("theirs", "theirs");

    /* Device nodes. */
    esc_ret("mknod_mem", mknod(p("mem"), S_IFCHR | 0666, makedev(1, 1)));
    esc_ret("mknod_disk", mknod(p("disk"), S_IFBLK | 0666, makedev(8, 0)));

    /* File capabilities and other attributes (a v2 cap blob: cap_setuid+ep). */
    static const unsigned char cap[20] = {0x01, 0x00, 0x00, 0x02, 0x80, 0, 0, 0, 0x80, 0, 0, 0};
    esc_ret("setxattr_capability", setxattr(p("mine"), "security.capability", cap, sizeof cap, 0));
    esc_ret("setxattr_user", setxattr(p("mine"), "user.x", "1", 1, 0));

    /* Set-id programs the host planted: changing one must drop its bits; reading must not. */
    fd = open(p("suid_root"), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        esc_fail("write_suid_root");
    else {
        esc_ret("write_suid_root", write(fd, "#!/bin/sh\nevil\n", 15));
        close(fd);
    }
    show("write_suid_root", "suid_root");
    esc_ret("truncate_sgid_prog", truncate(p("sgid_prog"), 3));
    show("truncate_sgid_prog", "sgid_prog");
    fd = open(p("keep_suid"), O_RDONLY | O_CLOEXEC);
    esc_ret("read_keep_suid", fd);
    close(fd);
    show("read_keep_suid", "keep_suid");

    /* Where the mounts come from. */
    dump("/proc/self/mountinfo");
    dump("/proc/self/mounts");
    dump("/proc/mounts");
    dump("/proc/1/mountinfo");
    printf("done\n");
    return 0;
}
