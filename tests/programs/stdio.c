/*
 * stdio: what a program observes about its standard streams 0, 1 and 2, whatever
 * they are (a regular file, a file opened for appending or read-write, a pipe,
 * /dev/null, a tty, a block device, closed): fstat type, isatty, F_GETFL, lseek
 * (SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE), pread, FIONREAD, writes and their
 * positions, pwrite, O_APPEND set and cleared with F_SETFL, ftruncate, fsync,
 * fdatasync, fallocate, mmap, the /proc/self/fd/N link and a reopen through it.
 *
 * The report goes to the file argv[1] (the streams themselves are under test);
 * tests/syscalls/test_stdio.py runs this natively and through `kvmbox run` with
 * each redirection and compares the reports, and the streams' files, byte for
 * byte.  argv[2] "ro" probes without writing or reopening for writing (a block
 * device).  Pipe inode numbers are printed as N (they differ between runs); a
 * tty's link is not printed (its /dev/pts name is outside the sandbox's /dev).
 */
#include "common.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>

#ifndef SEEK_DATA
#define SEEK_DATA 3
#define SEEK_HOLE 4
#endif

static FILE *out;
static int readonly_probe;

static const char *kind(mode_t m)
{
    if (S_ISREG(m)) return "reg";
    if (S_ISFIFO(m)) return "fifo";
    if (S_ISCHR(m)) return "chr";
    if (S_ISBLK(m)) return "blk";
    if (S_ISSOCK(m)) return "sock";
    if (S_ISDIR(m)) return "dir";
    return "other";
}

/* "value" or the errno name of a call returning -1 */
static const char *res(long r)
{
    static char buf[8][48];
    static int i;
    char *b = buf[i++ % 8];
    if (r == -1)
        snprintf(b, 48, "%s", errname(errno));
    else
        snprintf(b, 48, "%ld", r);
    return b;
}

static void bytes(const char *label, const char *p, long n)
{
    fprintf(out, " %s=", label);
    if (n < 0) {
        fprintf(out, "%s", errname(errno));
        return;
    }
    fputc('"', out);
    for (long i = 0; i < n; i++)
        fputc(p[i] >= 32 && p[i] < 127 ? p[i] : '.', out);
    fputc('"', out);
}

static void link_of(int fd, int tty)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n < 0) {
        fprintf(out, " link=%s", errname(errno));
        return;
    }
    buf[n] = 0;
    if (tty) {
        fprintf(out, " link=(tty)");
        return;
    }
    fprintf(out, " link=");
    for (char *p = buf; *p; p++) {
        if (*p >= '0' && *p <= '9' && strchr(buf, '[')) {   /* pipe:[123] -> pipe:[N] */
            while (p[1] >= '0' && p[1] <= '9')
                p++;
            fputc('N', out);
        } else {
            fputc(*p, out);
        }
    }
    struct stat a, b;
    if (buf[0] == '/' && fstat(fd, &a) == 0 && stat(buf, &b) == 0)
        fprintf(out, " same-as-path=%d", a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

static void probe_reopen(int fd, int readable, int writable, mode_t m)
{
    char path[64], buf[8];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (readable) {
        int r = open(path, O_RDONLY | O_NONBLOCK);
        fprintf(out, "  reopen-r=%s", r < 0 ? errname(errno) : "ok");
        if (r >= 0) {
            struct stat st;
            fstat(r, &st);
            fprintf(out, " type=%s", kind(st.st_mode));
            if (S_ISREG(st.st_mode)) {       /* its own offset, from 0 */
                fprintf(out, " pos=%s", res(lseek(r, 0, SEEK_CUR)));
                bytes("read", buf, read(r, buf, 4));
            }
            close(r);
        }
        fputc('\n', out);
    }
    if (writable && !readonly_probe) {
        int w = open(path, O_WRONLY | O_NONBLOCK);
        fprintf(out, "  reopen-w=%s", w < 0 ? errname(errno) : "ok");
        if (w >= 0) {
            fprintf(out, " write=%s", res(write(w, "R", 1)));
            if (S_ISREG(m))
                fprintf(out, " pos=%s", res(lseek(w, 0, SEEK_CUR)));
            close(w);
        }
        fputc('\n', out);
    }
}

static void probe(int fd)
{
    struct stat st;
    fprintf(out, "fd%d:", fd);
    if (fstat(fd, &st) < 0) {
        fprintf(out, " fstat=%s\n", errname(errno));
        return;
    }
    int tty = isatty(fd);
    int fl = fcntl(fd, F_GETFL);
    int acc = fl & O_ACCMODE;
    int readable = acc == O_RDONLY || acc == O_RDWR, writable = acc == O_WRONLY || acc == O_RDWR;
    fprintf(out, " type=%s tty=%d acc=%d append=%d nonblock=%d", kind(st.st_mode), tty, acc,
            !!(fl & O_APPEND), !!(fl & O_NONBLOCK));
    if (S_ISREG(st.st_mode))
        fprintf(out, " size=%ld", (long)st.st_size);
    link_of(fd, tty);
    fputc('\n', out);

    struct termios tio;
    int avail = 0;
    long cur = lseek(fd, 0, SEEK_CUR);
    fprintf(out, "  cur=%s", res(cur));
    fprintf(out, " tcgets=%s", res(tcgetattr(fd, &tio)));
    int fr = ioctl(fd, FIONREAD, &avail);
    fprintf(out, " fionread=%s", fr < 0 ? errname(errno) : (S_ISREG(st.st_mode) ? res(avail) : "ok"));
    if (!S_ISBLK(st.st_mode)) {
        fprintf(out, " end=%s", res(lseek(fd, 0, SEEK_END)));
        fprintf(out, " data=%s hole=%s", res(lseek(fd, 0, SEEK_DATA)), res(lseek(fd, 0, SEEK_HOLE)));
    } else {
        fprintf(out, " end>0=%d", lseek(fd, 0, SEEK_END) > 0);
    }
    fprintf(out, " bad-whence=%s", res(lseek(fd, 0, 77)));
    if (cur >= 0)
        lseek(fd, cur, SEEK_SET);
    char buf[16];
    if (readable && !tty && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
        bytes("pread", buf, pread(fd, buf, 4, 1));
        fprintf(out, " cur-after=%s", res(lseek(fd, 0, SEEK_CUR)));
    } else {
        fprintf(out, " pread=%s", res(pread(fd, buf, 4, 1)));
    }
    fputc('\n', out);

    void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    fprintf(out, "  mmap=%s", p == MAP_FAILED ? errname(errno) : "ok");
    if (p != MAP_FAILED) {
        if (S_ISREG(st.st_mode) && st.st_size >= 4)
            bytes("mapped", p, 4);
        munmap(p, 4096);
    }
    fprintf(out, " fsync=%s fdatasync=%s", res(fsync(fd)), res(fdatasync(fd)));
    if (readonly_probe) {
        fputc('\n', out);
        probe_reopen(fd, readable, 0, st.st_mode);
        return;
    }
    fprintf(out, " fallocate=%s", res(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096)));
    fprintf(out, " ftruncate-grow=%s", res(S_ISREG(st.st_mode) && writable
                                          ? ftruncate(fd, st.st_size + 3) : ftruncate(fd, 0)));
    fputc('\n', out);

    if (writable) {
        char w[4] = {'W', (char)('0' + fd), '\n', 0};
        fprintf(out, "  write=%s", res(write(fd, w, 3)));
        fprintf(out, " pos=%s", res(lseek(fd, 0, SEEK_CUR)));
        fprintf(out, " pwrite@0=%s", res(pwrite(fd, "p", 1, 0)));
        fprintf(out, " pos=%s", res(lseek(fd, 0, SEEK_CUR)));
        /* O_APPEND the program sets and clears itself */
        int set = fcntl(fd, F_SETFL, fl | O_APPEND);
        fprintf(out, " setfl-append=%s getfl-append=%d", res(set), !!(fcntl(fd, F_GETFL) & O_APPEND));
        if (S_ISREG(st.st_mode))
            lseek(fd, 0, SEEK_SET);
        fprintf(out, " write=%s", res(write(fd, "a", 1)));
        fprintf(out, " pos=%s", res(lseek(fd, 0, SEEK_CUR)));
        fprintf(out, " pwrite@0=%s", res(pwrite(fd, "q", 1, 0)));
        fcntl(fd, F_SETFL, fl);
        fprintf(out, " restored-append=%d", !!(fcntl(fd, F_GETFL) & O_APPEND));
        if (S_ISREG(st.st_mode))
            fprintf(out, " size=%ld", (fstat(fd, &st), (long)st.st_size));
        fputc('\n', out);
    }
    int set = fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fprintf(out, "  setfl-nonblock=%s getfl-nonblock=%d", res(set), !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    fcntl(fd, F_SETFL, fl);
    fprintf(out, " restored=%d\n", fcntl(fd, F_GETFL) == fl);
    if (readable && !tty && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
        long before = lseek(fd, 0, SEEK_CUR);
        lseek(fd, 0, SEEK_SET);
        ssize_t n = read(fd, buf, 5);
        bytes("  read", buf, n);
        fprintf(out, " pos=%s\n", res(lseek(fd, 0, SEEK_CUR)));
        if (before >= 0)
            lseek(fd, before, SEEK_SET);
    }
    probe_reopen(fd, readable, writable, st.st_mode);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: stdio REPORT [ro]\n");
        return 2;
    }
    readonly_probe = argc > 2 && !strcmp(argv[2], "ro");
    int rfd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (rfd < 0) {
        perror(argv[1]);
        return 2;
    }
    int high = fcntl(rfd, F_DUPFD_CLOEXEC, 10);  /* never one of 0..2, even if one is closed */
    close(rfd);
    out = fdopen(high, "w");
    for (int fd = 0; fd < 3; fd++)
        probe(fd);
    fclose(out);
    return 0;
}
