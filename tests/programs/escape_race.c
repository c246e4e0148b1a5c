/*
 * A symlink swapped during resolution: while the host test keeps exchanging
 * MNT/d between a real directory and a symlink to ../outside, open
 * "d/secret.txt" (relative, absolute, and from a dirfd) COUNT times and report
 * how often each outcome happened and every distinct content read.  Run only
 * in the sandbox by tests/security/test_fs_escape.py.
 *
 * usage: escape_race MNT COUNT
 * output: "race_<outcome>: N" lines (outcome ok or an errno name), then one
 *         "race_content: read N <text>" line per distinct content, then "done".
 */
#include "escape_common.h"

#define MAX_KINDS 16
#define MAX_CONTENTS 8

static struct { char name[32]; long n; } g_kinds[MAX_KINDS];
static char g_contents[MAX_CONTENTS][128];
static long g_content_len[MAX_CONTENTS];
static int g_ncontents;

static void count(const char *name)
{
    for (int i = 0; i < MAX_KINDS; i++) {
        if (g_kinds[i].name[0] == 0)
            snprintf(g_kinds[i].name, sizeof g_kinds[i].name, "%s", name);
        if (strcmp(g_kinds[i].name, name) == 0) {
            g_kinds[i].n++;
            return;
        }
    }
}

static void seen(const char *buf, long n)
{
    if (n > 127)
        n = 127;
    for (int i = 0; i < g_ncontents; i++)
        if (g_content_len[i] == n && memcmp(g_contents[i], buf, n) == 0)
            return;
    if (g_ncontents < MAX_CONTENTS) {
        memcpy(g_contents[g_ncontents], buf, n);
        g_content_len[g_ncontents++] = n;
    }
}

static void attempt(int dirfd, const char *path)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        count(esc_errname(errno));
        return;
    }
    char buf[128];
    long n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0) {
        count("read_error");
        return;
    }
    count("ok");
    seen(buf, n);
}

int main(int argc, char **argv)
{
    escape_guard();
    if (argc < 3) {
        fprintf(stderr, "usage: escape_race MNT COUNT\n");
        return 2;
    }
    const char *mnt = argv[1];
    long total = atol(argv[2]);
    if (chdir(mnt) != 0) {
        esc_fail("chdir_mnt");
        return 1;
    }
    int mfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char abs[4096];
    snprintf(abs, sizeof abs, "%s/d/secret.txt", mnt);
    for (long i = 0; i < total; i++) {
        switch (i % 4) {
        case 0: attempt(AT_FDCWD, "d/secret.txt"); break;
        case 1: attempt(AT_FDCWD, abs); break;
        case 2: attempt(mfd, "d/secret.txt"); break;
        default: {
            /* Open the directory first, then the file in it. */
            int d = openat(mfd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (d < 0) {
                count(esc_errname(errno));
                break;
            }
            attempt(d, "secret.txt");
            close(d);
        }
        }
    }
    for (int i = 0; i < MAX_KINDS && g_kinds[i].name[0]; i++)
        printf("race_%s: %ld\n", g_kinds[i].name, g_kinds[i].n);
    for (int i = 0; i < g_ncontents; i++)
        esc_print_read("race_content", g_contents[i], g_content_len[i]);
    printf("done\n");
    return 0;
}
