/*
 * reopen: opening the standard streams and pipes again through /proc/self/fd/N and
 * /dev/stdin|stdout|stderr, as scripts do (`cat /dev/stdin`, `echo x > /dev/stderr`).
 * A pipe reopens as another end of the same pipe (never waiting for a peer, never
 * ENXIO), an eventfd refuses (ENXIO); stat follows the link to the object itself.
 * Expects stdin to be a pipe holding some bytes (the harness gives one).
 */
#include "common.h"
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

static int reopen(int fd, int flags)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return open(path, flags);
}

static void link_is_pipe(int fd, const char *label)
{
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = 0;
    check(n > 0 && !strncmp(buf, "pipe:[", 6), "%s: readlink is pipe:[...]", label);
}

int main(void)
{
    char buf[256];
    int p[2];
    if (pipe(p) < 0)
        return 2;
    link_is_pipe(p[0], "pipe read end");
    struct stat a, b;
    check(fstat(p[0], &a) == 0 && stat("/proc/self/fd/3", &b) == 0 && p[0] == 3 && S_ISFIFO(b.st_mode)
          && a.st_ino == b.st_ino, "stat follows fd/N of a pipe to the pipe");

    int w = reopen(p[0], O_WRONLY);            /* a write end opened on the read end's pipe */
    check(w >= 0, "reopen of a pipe's read end for writing");
    check(write(w, "abc", 3) == 3 && read(p[0], buf, sizeof buf) == 3 && !memcmp(buf, "abc", 3),
          "bytes written through the new end come out of the old one");
    int r = reopen(p[1], O_RDONLY);
    check(r >= 0, "reopen of a pipe's write end for reading");
    check(write(p[1], "xyz", 3) == 3 && read(r, buf, sizeof buf) == 3, "and reads what the old end wrote");
    int rw = reopen(p[0], O_RDWR);
    check(rw >= 0, "O_RDWR reopen of a pipe");
    check_err(reopen(p[0], 3), EINVAL, "access mode 3");
    check_err(reopen(p[0], O_RDONLY | O_NOFOLLOW), ELOOP, "O_NOFOLLOW on the magic link");
    check_err(reopen(p[0], O_RDONLY | O_DIRECTORY), ENOTDIR, "O_DIRECTORY");
    check_err(reopen(p[0], O_WRONLY | O_CREAT | O_EXCL), EEXIST, "O_CREAT|O_EXCL");
    int t = reopen(p[0], O_WRONLY | O_TRUNC | O_CREAT);
    check(t >= 0, "O_WRONLY|O_CREAT|O_TRUNC of a pipe (python's open(..., 'w'))");
    close(t);
    close(rw);
    close(r);
    close(p[0]);
    t = reopen(p[1], O_WRONLY | O_NONBLOCK);   /* no reader left: still no ENXIO for a pipe */
    check(t >= 0, "non-blocking write reopen of a pipe without readers");
    close(t);
    close(w);
    close(p[1]);

    int e = eventfd(0, 0);
    check_err(reopen(e, O_RDWR), ENXIO, "reopen of an eventfd");
    close(e);

    /* The standard streams: stdin and stdout are pipes here. */
    link_is_pipe(0, "stdin");
    ssize_t n = readlink("/dev/stdin", buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = 0;
    check(!strcmp(buf, "/proc/self/fd/0"), "/dev/stdin -> %s", buf);
    int in = open("/dev/stdin", O_RDONLY);
    check(in >= 0, "open /dev/stdin");
    ssize_t got = read(in, buf, 5);
    check(got == 5, "read from /dev/stdin: %.5s", got == 5 ? buf : "");
    got = read(0, buf, 4);
    check(got == 4, "fd 0 goes on where the reopened pipe left off: %.4s", got == 4 ? buf : "");
    close(in);
    check(stat("/dev/stdout", &b) == 0 && S_ISFIFO(b.st_mode), "stat /dev/stdout: a pipe");
    int o = open("/dev/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0666);
    check(o >= 0, "open /dev/stdout for writing");
    fflush(stdout);
    check(write(o, "through /dev/stdout\n", 20) == 20, "write through it");
    close(o);
    o = open("/proc/self/fd/1", O_WRONLY | O_APPEND);
    fflush(stdout);
    check(o >= 0 && write(o, "through fd/1\n", 13) == 13, "open and write /proc/self/fd/1");
    close(o);
    return finish();
}
