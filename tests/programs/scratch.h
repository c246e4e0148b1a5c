/*
 * A scratch directory for the file-system test programs: a fresh directory made
 * under argv[1] (natively the host's /tmp, in the sandbox its own tmpfs), entered
 * with chdir, and removed with everything in it at the end.  Only relative paths
 * are printed, so the output does not depend on where it lives.
 */
#ifndef KVMBOX_TEST_SCRATCH_H
#define KVMBOX_TEST_SCRATCH_H

#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

static char g_scratch[4096];

static void scratch_enter(int argc, char **argv, const char *name)
{
    snprintf(g_scratch, sizeof g_scratch, "%s/kvmbox-%s-XXXXXX", argc > 1 ? argv[1] : "/tmp", name);
    if (!mkdtemp(g_scratch) || chdir(g_scratch) != 0) {
        perror("scratch");
        exit(2);
    }
}

/* rm -r of dirfd's entry `name` (never follows symlinks). */
static void remove_tree_at(int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd >= 0) {
            fchmod(fd, 0700);
            DIR *d = fdopendir(fd);
            struct dirent *e;
            while (d && (e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                    remove_tree_at(fd, e->d_name);
            }
            if (d)
                closedir(d);
        }
        unlinkat(dirfd, name, AT_REMOVEDIR);
    } else {
        unlinkat(dirfd, name, 0);
    }
}

static void scratch_leave(void)
{
    if (chdir("/") == 0)
        remove_tree_at(AT_FDCWD, g_scratch);
}

#endif
