/*
 * Host devices: /dev/kvm, /dev/mem, disks ... must not exist in the sandbox
 * (ENOENT), by any path, and mknod of a character or block device must fail
 * (EPERM) even for root and even on a read-write host mount.  Run only in the
 * sandbox by tests/security/test_fs_escape.py.
 *
 * usage: escape_dev MNT
 *   MNT  a read-write host mount (mknod there must not create a host node)
 */
#include "escape_common.h"
#include <sys/sysmacros.h>

static const char *DEVICES[] = {
    "/dev/kvm", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/sda", "/dev/sda1",
    "/dev/vda", "/dev/vda1", "/dev/nvme0n1", "/dev/loop0", "/dev/loop-control",
    "/dev/net/tun", "/dev/fuse", "/dev/vhost-net", "/dev/vhost-vsock", "/dev/vsock",
    "/dev/hpet", "/dev/cpu/0/msr", "/dev/mapper/control", "/dev/kmsg", "/dev/uinput",
    "/dev/console", "/dev/tty0", "/dev/ttyS0", "/dev/rtc0", "/dev/dri/card0",
    "/dev/userfaultfd", "/dev/btrfs-control", "/dev/snapshot", "/dev/watchdog",
    "/dev/../dev/kvm", "/dev/./mem", "/dev//kvm", "/proc/self/root/dev/kvm",
    "/sys/dev/char/10:232", "/sys/class/misc/kvm/dev", "/sys/block/vda/dev",
    "/proc/kcore", "/proc/kmsg", "/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern",
    NULL,
};

static void try_device(const char *path)
{
    char label[160];
    snprintf(label, sizeof label, "open %s", path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EISDIR))
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        esc_fail(label);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
        printf("%s: opened %s %u:%u\n", label, S_ISCHR(st.st_mode) ? "chr" : "blk",
               major(st.st_rdev), minor(st.st_rdev));
    else
        printf("%s: opened\n", label);
    close(fd);
}

static void try_mknod(const char *label, const char *path, mode_t mode, dev_t dev)
{
    unlink(path);
    esc_ret(label, mknod(path, mode, dev));
    struct stat st;
    if (lstat(path, &st) == 0) {
        printf("%s_node: %s %u:%u\n", label,
               S_ISCHR(st.st_mode) ? "chr" : S_ISBLK(st.st_mode) ? "blk" : "other",
               major(st.st_rdev), minor(st.st_rdev));
        try_device(path);
        unlink(path);
    }
}

int main(int argc, char **argv)
{
    escape_guard();
    if (argc < 2) {
        fprintf(stderr, "usage: escape_dev MNT\n");
        return 2;
    }
    const char *mnt = argv[1];
    for (int i = 0; DEVICES[i]; i++)
        try_device(DEVICES[i]);

    /* A symlink to the device, made by the program and planted by the host. */
    unlink("/tmp/esc_kvmlink");
    esc_ret("symlink_kvm", symlink("/dev/kvm", "/tmp/esc_kvmlink"));
    try_device("/tmp/esc_kvmlink");
    try_device(esc_join(mnt, "h_kvm"));
    try_device(esc_join(mnt, "h_mem"));

    try_mknod("mknod_mem_tmp", "/tmp/esc_mem", S_IFCHR | 0600, makedev(1, 1));
    try_mknod("mknod_kvm_tmp", "/tmp/esc_kvm", S_IFCHR | 0600, makedev(10, 232));
    try_mknod("mknod_disk_tmp", "/tmp/esc_sda", S_IFBLK | 0600, makedev(8, 0));
    try_mknod("mknod_mem_mnt", esc_join(mnt, "esc_mem"), S_IFCHR | 0600, makedev(1, 1));
    try_mknod("mknod_disk_mnt", esc_join(mnt, "esc_vda"), S_IFBLK | 0600, makedev(253, 0));
    try_mknod("mknod_mem_dev", "/dev/esc_mem", S_IFCHR | 0600, makedev(1, 1));
    try_mknod("mknod_mem_root", "/esc_mem", S_IFCHR | 0600, makedev(1, 1));
    /* A whiteout-looking node (0:0) and a null device are devices too. */
    try_mknod("mknod_whiteout_tmp", "/tmp/esc_wh", S_IFCHR | 0600, makedev(0, 0));
    errno = 0;
    esc_ret("mknodat_mem_tmp", mknodat(AT_FDCWD, "/tmp/esc_mem2", S_IFCHR | 0600, makedev(1, 1)));
    unlink("/tmp/esc_mem2");
    printf("done\n");
    return 0;
}
