/*
 * What statfs says of a size- and inode-limited tmpfs, and how filling it ends.
 * Prints relations between statfs counts before and after each step (never the
 * limits themselves): creating files and directories and hard links takes an
 * inode each, file pages and long symlink targets take blocks, short targets
 * none; writing until full gives ENOSPC after exactly the free blocks; creating
 * until full gives ENOSPC after exactly the free inodes; removing gives it all
 * back.
 *
 * argv[1]: a tmpfs of its own (natively: a private tmpfs mounted with size= and
 * nr_inodes=; in the sandbox: /dev/shm, whose limits come from --memory).
 *
 *   fsspace DIR flood N LEN     only: up to N symlinks with LEN-byte targets
 *   fsspace DIR write MIB       only: write up to MIB MiB into one file
 * print how each ended (for tests that also measure the Sentry's memory).
 */
#include "scratch.h"
#include <sys/statfs.h>

static struct statfs g_sf;

static void sample(void)
{
    if (statfs(".", &g_sf) != 0) {
        perror("statfs");
        exit(2);
    }
}

/* "label: blocks -N inodes -M" from the previous sample to now. */
static void delta(const char *label)
{
    long b0 = (long)g_sf.f_bfree, i0 = (long)g_sf.f_ffree;
    sample();
    printf("%-22s blocks %+ld inodes %+ld\n", label, (long)g_sf.f_bfree - b0, (long)g_sf.f_ffree - i0);
}

static const char *name(const char *prefix, long i)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "%s%ld", prefix, i);
    return buf;
}

/* The flood and the big write alone: how they end, relative to what was asked. */
static int only(const char *what, long n, long len)
{
    long done = 0;
    if (!strcmp(what, "flood")) {
        char *target = malloc(len + 1);
        memset(target, 'L', len);
        target[len] = 0;
        while (done < n && symlink(target, name("l", done)) == 0)
            done++;
        printf("flood: %s, made < asked %d\n", done < n ? errname(errno) : "all made", done < n);
        for (long i = 0; i < done; i++)
            unlink(name("l", i));
    } else {
        static char chunk[1 << 20];
        memset(chunk, 'w', sizeof chunk);
        int fd = open("big", O_WRONLY | O_CREAT, 0644);
        ssize_t w = 0;
        while (done < n << 20 && (w = write(fd, chunk, sizeof chunk)) > 0)
            done += w;
        printf("write: %s, written < asked %d, whole pages %d\n", done < n << 20 ? errname(errno) : "all written",
               done < n << 20, done % 4096 == 0);
        close(fd);
        unlink("big");
    }
    scratch_leave();
    return 0;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv, "fsspace");
    if (argc > 3)
        return only(argv[2], atol(argv[3]), argc > 4 ? atol(argv[4]) : 0);
    sample();
    printf("bsize %ld frsize %ld namelen %ld\n", (long)g_sf.f_bsize, (long)g_sf.f_frsize,
           (long)g_sf.f_namelen);
    printf("bavail==bfree %d bfree<=blocks %d ffree<files %d\n", g_sf.f_bavail == g_sf.f_bfree,
           g_sf.f_bfree <= g_sf.f_blocks, g_sf.f_ffree < g_sf.f_files);

    /* One step at a time.  (Sampled again after the first output: in the sandbox the free
     * count also reflects the program's own memory, which stdio's buffer just grew.) */
    fflush(stdout);
    sample();
    static char page[4096 * 10];
    memset(page, 'p', sizeof page);
    int fd = open("empty", O_WRONLY | O_CREAT, 0644);
    close(fd);
    delta("create empty");
    fd = open("ten", O_WRONLY | O_CREAT, 0644);
    check(write(fd, page, sizeof page) == (ssize_t)sizeof page, "write 10 pages");
    delta("write 10 pages");
    check(ftruncate(fd, 4096 * 3 + 1) == 0, "truncate to 3 pages + 1");
    delta("truncate to 4 pages");
    close(fd);
    check(mkdir("dir", 0755) == 0, "mkdir");
    delta("mkdir");
    char target[300];
    memset(target, 't', sizeof target - 1);
    target[sizeof target - 1] = 0;
    check(symlink(target, "long") == 0, "symlink, 299-byte target");
    delta("long symlink");
    check(symlink("short", "short") == 0, "symlink, short target");
    delta("short symlink");
    check(link("ten", "ten2") == 0, "link");
    delta("hard link");
    check(unlink("ten2") == 0, "unlink the link");
    delta("unlink the link");
    unlink("ten");
    unlink("empty");
    unlink("long");
    unlink("short");
    rmdir("dir");
    delta("remove all");

    /* Fill the blocks. */
    long free_blocks = (long)g_sf.f_bfree, bsize = (long)g_sf.f_bsize;
    static char chunk[1 << 20];
    memset(chunk, 'x', sizeof chunk);
    fd = open("big", O_WRONLY | O_CREAT, 0644);
    long written = 0;
    ssize_t w;
    while ((w = write(fd, chunk, sizeof chunk)) > 0)
        written += w;
    printf("fill: ends with %s, written == free blocks %d, bfree %ld\n", errname(errno),
           written == free_blocks * bsize, (statfs(".", &g_sf), (long)g_sf.f_bfree));
    errno = 0;
    check_err(write(fd, "x", 1), ENOSPC, "one more byte");
    check(ftruncate(fd, 0) == 0 && close(fd) == 0, "truncate the big file");
    sample();
    printf("after truncate: bfree back %d\n", (long)g_sf.f_bfree == free_blocks);
    unlink("big");
    sample();

    /* Fill the inodes. */
    long free_inodes = (long)g_sf.f_ffree, made = 0;
    for (;;) {
        fd = open(name("f", made), O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
            break;
        close(fd);
        made++;
    }
    int e = errno;
    sample();
    printf("files: ends with %s, made == free inodes %d, ffree %ld\n", errname(e),
           made == free_inodes, (long)g_sf.f_ffree);
    errno = 0;
    check_err(mkdir("one more", 0755), ENOSPC, "mkdir when full");
    for (long i = 0; i < made; i++)
        unlink(name("f", i));
    sample();
    printf("after unlink: ffree back %d\n", (long)g_sf.f_ffree == free_inodes);

    /* Symlinks with page-sized targets: whichever runs out first. */
    static char big_target[4001];
    memset(big_target, 'L', 4000);
    long free_b = (long)g_sf.f_bfree;
    made = 0;
    while (symlink(big_target, name("l", made)) == 0)
        made++;
    e = errno;
    printf("symlinks: ends with %s, made == min(bfree, ffree) %d\n", errname(e),
           made == (free_b < free_inodes ? free_b : free_inodes));
    for (long i = 0; i < made; i++)
        unlink(name("l", i));
    sample();
    printf("after unlink: bfree back %d ffree back %d\n", (long)g_sf.f_bfree == free_b,
           (long)g_sf.f_ffree == free_inodes);
    scratch_leave();
    return finish();
}
