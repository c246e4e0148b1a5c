/*
 * Pipes: capacity (64 KiB, page-slot accounting), EAGAIN with O_NONBLOCK,
 * EOF without writers, EPIPE with SIGPIPE ignored, FIONREAD, F_GETPIPE_SZ/
 * F_SETPIPE_SZ, pipe2 flags, fstat of the ends.
 */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#ifndef F_SETPIPE_SZ
#define F_SETPIPE_SZ 1031
#define F_GETPIPE_SZ 1032
#endif

static long fill(int w, size_t chunk)
{
    static char buf[65536 * 2];
    long total = 0;
    for (;;) {
        ssize_t n = write(w, buf, chunk);
        if (n < 0) break;
        total += n;
    }
    return total;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int p[2];
    check(pipe(p) == 0, "pipe");
    printf("F_GETFL read %d write %d\n", fcntl(p[0], F_GETFL), fcntl(p[1], F_GETFL));
    printf("F_GETPIPE_SZ %d\n", fcntl(p[0], F_GETPIPE_SZ));
    struct stat st;
    fstat(p[0], &st);
    struct stat st2;
    fstat(p[1], &st2);
    printf("fifo %d same inode %d\n", S_ISFIFO(st.st_mode), st.st_ino == st2.st_ino);
    errno = 0; check_err(write(p[0], "x", 1), EBADF, "write to the read end");
    errno = 0; check_err(lseek(p[0], 0, SEEK_SET), ESPIPE, "lseek on a pipe");
    char buf[70000];
    check(write(p[1], "hello", 5) == 5, "write");
    int n = -1;
    ioctl(p[0], FIONREAD, &n);
    printf("FIONREAD %d\n", n);
    check(read(p[0], buf, 3) == 3 && read(p[0], buf, 100) == 2, "reads take what is there");
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    errno = 0; check_err(read(p[0], buf, 1), EAGAIN, "empty nonblocking read");
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    printf("capacity with 4096-byte writes %ld (%s)\n", fill(p[1], 4096), errname(errno));
    check(read(p[0], buf, 70000) == 65536, "read it all");
    printf("capacity with 1-byte writes %ld\n", fill(p[1], 1));
    check(read(p[0], buf, 70000) == 65536, "drain");
    printf("capacity with 1000-byte writes %ld\n", fill(p[1], 1000));
    check(read(p[0], buf, 70000) > 0, "drain again");
    printf("capacity with 5000-byte writes %ld\n", fill(p[1], 5000));
    while (read(p[0], buf, sizeof buf) > 0) {}
    printf("one big write %zd\n", write(p[1], buf, 70000));
    errno = 0; check_err(write(p[1], buf, 100), EAGAIN, "full pipe nonblocking write");
    while (read(p[0], buf, sizeof buf) > 0) {}
    printf("F_SETPIPE_SZ 5000 -> %d\n", fcntl(p[1], F_SETPIPE_SZ, 5000));
    printf("F_SETPIPE_SZ 0 -> %d\n", fcntl(p[1], F_SETPIPE_SZ, 0));
    printf("capacity now %ld\n", fill(p[1], 1));
    printf("F_SETPIPE_SZ 0 while one page is full -> %d\n", fcntl(p[1], F_SETPIPE_SZ, 0));
    printf("F_SETPIPE_SZ 1 MiB -> %d\n", fcntl(p[1], F_SETPIPE_SZ, 1 << 20));
    close(p[1]);
    check(read(p[0], buf, sizeof buf) == 4096, "data survives the writer");
    check(read(p[0], buf, sizeof buf) == 0, "then EOF");
    close(p[0]);

    check(pipe(p) == 0, "second pipe");
    close(p[0]);
    errno = 0; check_err(write(p[1], "x", 1), EPIPE, "write without readers");
    close(p[1]);

    check(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2");
    printf("pipe2 FD_CLOEXEC %d nonblock %d\n", fcntl(p[0], F_GETFD), !!(fcntl(p[1], F_GETFL) & O_NONBLOCK));
    errno = 0; check_err(pipe2(p, 0x1234), EINVAL, "pipe2 bad flags");
    errno = 0; check_err(syscall(SYS_pipe, BADPTR), EFAULT, "pipe bad pointer");
    errno = 0; check_err(fcntl(0 + 99, F_GETPIPE_SZ), EBADF, "F_GETPIPE_SZ bad fd");
    int d = dup(p[1]);
    close(p[1]);
    check(write(d, "y", 1) == 1, "a dup keeps the write end open");
    close(d);
    check(read(p[0], buf, 10) == 1 && read(p[0], buf, 10) == 0, "EOF once every writer closed");
    return finish();
}
