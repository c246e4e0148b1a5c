/*
 * Which timestamps each file-system operation changes: the object itself, its
 * directory, the directory above, and a second directory.  Prints relations only
 * ("m+" changed, "m=" unchanged, "m==c" equal), never absolute times.
 *
 *   timestamps DIR              make a scratch tree under DIR, age it, check, remove it
 *   timestamps DIR prepare      make the tree in the empty directory DIR and age it
 *   timestamps DIR lower        check a tree made by "prepare" (in the sandbox: the
 *                               overlay's lower layer, so every change copies up)
 * A further argument "noxattr" leaves the extended-attribute check out.
 *
 * Aged: every entry gets atime = mtime = 1700000000 (children first, so no
 * directory is stamped afterwards).  Between operations the program sleeps 12 ms,
 * so a coarse (jiffy) clock still shows a change.
 */
#include "scratch.h"
#include <sys/xattr.h>
#include <time.h>

#define OLD 1700000000L

static const char *const DIRS[] = {"top", "top/d", "top/e", "top/d/sub_rmdir", "top/d/sub_chmod"};
static const char *const FILES[] = {
    "f_unlink", "f_chmod", "f_fchmod", "f_chown", "f_xattr", "f_link", "f_ren", "f_ren2",
    "f_over_src", "f_over_dst", "f_write", "f_trunc", "f_trunc_same", "f_ftrunc_same",
    "f_otrunc", "f_otrunc_empty", "f_utime", "f_utime_now", "f_utime_omit", "f_open_rw",
    "f_read",
};

static void age(const char *path)
{
    struct timespec ts[2] = {{OLD, 0}, {OLD, 0}};
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) {
        perror(path);
        exit(2);
    }
}

static void prepare(void)
{
    char p[256];
    for (size_t i = 0; i < sizeof DIRS / sizeof *DIRS; i++)
        if (mkdir(DIRS[i], 0755) != 0) {
            perror(DIRS[i]);
            exit(2);
        }
    for (size_t i = 0; i < sizeof FILES / sizeof *FILES; i++) {
        snprintf(p, sizeof p, "top/d/%s", FILES[i]);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || (strcmp(FILES[i], "f_otrunc_empty") && write(fd, "hello\n", 6) != 6)) {
            perror(p);
            exit(2);
        }
        close(fd);
        age(p);
    }
    if (symlink("f_chmod", "top/d/l_old") != 0) {
        perror("symlink");
        exit(2);
    }
    age("top/d/l_old");
    for (int i = (int)(sizeof DIRS / sizeof *DIRS) - 1; i >= 0; i--)
        age(DIRS[i]);
}

/* --- observing -------------------------------------------------------------------------- */
struct seen {
    const char *label;
    char path[256];
    int present;
    struct stat st;
};

static struct seen g_obs[5];
static int g_nobs;

static void observe(const char *label, const char *path)
{
    struct seen *o = &g_obs[g_nobs++];
    o->label = label;
    snprintf(o->path, sizeof o->path, "%s", path);
    o->present = lstat(path, &o->st) == 0;
}

static int same(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* Start an operation on `path` (in `dir`): remember the times of everything watched. */
static void begin(const char *path, const char *dir)
{
    struct timespec pause = {0, 12 * 1000 * 1000};
    g_nobs = 0;
    observe("obj", path);
    observe("dir", dir);
    observe("top", "top");
    observe("e", strcmp(dir, "top/e") ? "top/e" : "top/d");
    nanosleep(&pause, NULL);
}

/* After the operation: one line of relations. */
static void end(const char *op, int ret)
{
    printf("%-16s %s", op, ret < 0 ? errname(errno) : "ok");
    for (int i = 0; i < g_nobs; i++) {
        struct seen *o = &g_obs[i];
        struct stat now;
        int present = lstat(o->path, &now) == 0;
        printf(" | %s", o->label);
        if (!present) {
            printf(o->present ? " gone" : " absent");
            continue;
        }
        if (!o->present) {          /* made by the operation */
            printf(" new%s%s", same(now.st_mtim, now.st_ctim) ? " m==c" : " m!=c",
                   same(now.st_atim, now.st_mtim) ? " a==m" : " a!=m");
            continue;
        }
        int m = !same(now.st_mtim, o->st.st_mtim), c = !same(now.st_ctim, o->st.st_ctim);
        printf(" m%s c%s", m ? "+" : "=", c ? "+" : "=");
        if (m && c)
            printf(same(now.st_mtim, now.st_ctim) ? " m==c" : " m!=c");
    }
    printf("\n");
}

/* The times of `path` after a utimensat, against what was asked. */
static void show_times(const char *path, long want_m, int atime_omitted, const struct stat *before)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        printf("  %s: %s\n", path, errname(errno));
        return;
    }
    printf("  times:");
    if (want_m >= 0)
        printf(" m%s", st.st_mtim.tv_sec == want_m && st.st_mtim.tv_nsec == 0 ? "=given" : "!=given");
    if (atime_omitted)
        printf(" a%s", same(st.st_atim, before->st_atim) ? "=kept" : "=changed");
    printf(" m%sc a%sm\n", same(st.st_mtim, st.st_ctim) ? "==" : "!=",
           same(st.st_atim, st.st_mtim) ? "==" : "!=");
}

/* --- the operations --------------------------------------------------------------------- */
static void check_all(int with_xattr)
{
    int fd, r;
    char buf[16];

    begin("top/d/new", "top/d");
    fd = open("top/d/new", O_WRONLY | O_CREAT | O_EXCL, 0644);
    end("create", fd);
    if (fd >= 0)
        close(fd);

    begin("top/d/f_unlink", "top/d");
    end("unlink", unlink("top/d/f_unlink"));

    begin("top/d/f_chmod", "top/d");
    end("chmod", chmod("top/d/f_chmod", 0600));

    begin("top/d/f_fchmod", "top/d");
    fd = open("top/d/f_fchmod", O_RDONLY);
    r = fchmod(fd, 0640);
    close(fd);
    end("fchmod", r);

    begin("top/d/f_chown", "top/d");
    end("chown same ids", chown("top/d/f_chown", getuid(), getgid()));

    begin("top/d/l_old", "top/d");
    end("lchown symlink", lchown("top/d/l_old", getuid(), getgid()));

    if (with_xattr) {
        begin("top/d/f_xattr", "top/d");
        end("setxattr", setxattr("top/d/f_xattr", "user.k", "v", 1, 0));
        begin("top/d/f_xattr", "top/d");
        end("removexattr", removexattr("top/d/f_xattr", "user.k"));
    }

    begin("top/d/f_link", "top/d");
    end("link (old name)", link("top/d/f_link", "top/d/f_link2"));
    begin("top/d/f_link3", "top/d");
    end("link (new name)", link("top/d/f_link", "top/d/f_link3"));
    begin("top/d/f_link", "top/d");
    end("unlink 1 of 3", unlink("top/d/f_link2"));

    begin("top/e/f_ren", "top/e");
    end("rename to e", rename("top/d/f_ren", "top/e/f_ren"));
    begin("top/d/f_ren", "top/d");
    end("rename (old name)", rename("top/e/f_ren", "top/d/f_ren_back"));
    begin("top/d/f_ren3", "top/d");
    end("rename same dir", rename("top/d/f_ren2", "top/d/f_ren3"));
    begin("top/d/f_over_dst", "top/d");
    end("rename over", rename("top/d/f_over_src", "top/d/f_over_dst"));

    begin("top/d/newdir", "top/d");
    end("mkdir", mkdir("top/d/newdir", 0755));
    begin("top/d/sub_rmdir", "top/d");
    end("rmdir", rmdir("top/d/sub_rmdir"));
    begin("top/d/sub_chmod", "top/d");
    end("chmod dir", chmod("top/d/sub_chmod", 0700));
    begin("top/d/newlink", "top/d");
    end("symlink", symlink("f_chmod", "top/d/newlink"));
    begin("top/d/fifo", "top/d");
    end("mknod fifo", mknod("top/d/fifo", S_IFIFO | 0644, 0));

    begin("top/d/f_write", "top/d");
    fd = open("top/d/f_write", O_WRONLY);
    r = (int)write(fd, "more\n", 5);
    close(fd);
    end("write", r);

    begin("top/d/f_read", "top/d");
    fd = open("top/d/f_read", O_RDONLY);
    r = (int)read(fd, buf, sizeof buf);
    close(fd);
    end("read", r);

    begin("top/d/f_open_rw", "top/d");
    fd = open("top/d/f_open_rw", O_RDWR);
    end("open O_RDWR", fd);
    close(fd);

    begin("top/d/f_trunc", "top/d");
    end("truncate", truncate("top/d/f_trunc", 2));
    begin("top/d/f_trunc_same", "top/d");
    end("truncate same", truncate("top/d/f_trunc_same", 6));
    begin("top/d/f_ftrunc_same", "top/d");
    fd = open("top/d/f_ftrunc_same", O_WRONLY);
    r = ftruncate(fd, 6);
    close(fd);
    end("ftruncate same", r);
    begin("top/d/f_otrunc", "top/d");
    fd = open("top/d/f_otrunc", O_WRONLY | O_TRUNC);
    end("open O_TRUNC", fd);
    close(fd);
    begin("top/d/f_otrunc_empty", "top/d");
    fd = open("top/d/f_otrunc_empty", O_WRONLY | O_TRUNC);
    end("O_TRUNC empty", fd);
    close(fd);

    struct stat before;
    struct timespec given[2] = {{OLD + 5, 0}, {OLD + 7, 0}};
    lstat("top/d/f_utime", &before);
    begin("top/d/f_utime", "top/d");
    end("utimensat given", utimensat(AT_FDCWD, "top/d/f_utime", given, 0));
    show_times("top/d/f_utime", OLD + 7, 0, &before);

    lstat("top/d/f_utime_now", &before);
    begin("top/d/f_utime_now", "top/d");
    end("utimensat NULL", utimensat(AT_FDCWD, "top/d/f_utime_now", NULL, 0));
    show_times("top/d/f_utime_now", -1, 0, &before);

    struct timespec omit[2] = {{0, UTIME_OMIT}, {OLD + 9, 0}};
    lstat("top/d/f_utime_omit", &before);
    begin("top/d/f_utime_omit", "top/d");
    end("utimensat OMIT", utimensat(AT_FDCWD, "top/d/f_utime_omit", omit, 0));
    show_times("top/d/f_utime_omit", OLD + 9, 1, &before);

    struct timespec both_omit[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    begin("top/d/f_utime_omit", "top/d");
    end("utimensat 2xOMIT", utimensat(AT_FDCWD, "top/d/f_utime_omit", both_omit, 0));

    begin("top/d/l_old", "top/d");
    end("utimensat link", utimensat(AT_FDCWD, "top/d/l_old", given, AT_SYMLINK_NOFOLLOW));
}

int main(int argc, char **argv)
{
    const char *mode = argc > 2 ? argv[2] : "";
    int with_xattr = !(argc > 3 && !strcmp(argv[3], "noxattr")) && strcmp(mode, "noxattr");
    if (!strcmp(mode, "prepare") || !strcmp(mode, "lower")) {
        if (chdir(argv[1]) != 0) {
            perror(argv[1]);
            return 2;
        }
        if (!strcmp(mode, "prepare")) {
            prepare();
            return 0;
        }
        check_all(with_xattr);
        return finish();
    }
    scratch_enter(argc, argv, "timestamps");
    prepare();
    check_all(with_xattr);
    scratch_leave();
    return finish();
}
