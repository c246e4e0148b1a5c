/*
 * The descriptor table: lowest-free numbering, dup/dup2/dup3, shared offsets,
 * close-on-exec flags, F_DUPFD, F_GETFL/F_SETFL, close_range, EMFILE at
 * RLIMIT_NOFILE, record locks (F_GETLK, OFD), flock, ioctl FIONREAD/FIOCLEX, access mode 3.
 * argv[1]: where to make scratch files.
 */
#include "scratch.h"
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif

int main(int argc, char **argv)
{
    scratch_enter(argc, argv, "fdops");
    int fd = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    printf("first free fd %d\n", fd);
    write(fd, "0123456789", 10);
    int d = dup(fd);
    printf("dup gives %d\n", d);
    lseek(fd, 2, SEEK_SET);
    printf("shared offset %lld\n", (long long)lseek(d, 0, SEEK_CUR));
    close(fd);
    int again = open("f", O_RDONLY);
    printf("lowest free reused %d\n", again == fd);
    check(dup2(d, 10) == 10, "dup2 to 10");
    check(dup2(d, d) == d, "dup2 same fd");
    errno = 0; check_err(dup2(99, 11), EBADF, "dup2 bad old");
    errno = 0; check_err(dup2(d, -1), EBADF, "dup2 negative new");
    errno = 0; check_err(syscall(SYS_dup3, d, d, 0), EINVAL, "dup3 same fd");
    errno = 0; check_err(syscall(SYS_dup3, d, 12, 1), EINVAL, "dup3 bad flags");
    check(dup3(d, 12, O_CLOEXEC) == 12, "dup3 O_CLOEXEC");
    printf("FD_CLOEXEC 12:%d 10:%d\n", fcntl(12, F_GETFD), fcntl(10, F_GETFD));
    check(dup2(again, 10) == 10, "dup2 over an open fd");
    char c;
    check(read(10, &c, 1) == 1 && c == '0', "dup2 replaced the target");
    printf("F_DUPFD >= 20: %d\n", fcntl(d, F_DUPFD, 20));
    int cx = fcntl(d, F_DUPFD_CLOEXEC, 20);
    printf("F_DUPFD_CLOEXEC: %d flags %d\n", cx, fcntl(cx, F_GETFD));
    errno = 0; check_err(fcntl(d, F_DUPFD, -1), EINVAL, "F_DUPFD negative");
    check(fcntl(cx, F_SETFD, 0) == 0 && fcntl(cx, F_GETFD) == 0, "F_SETFD clears");
    check(ioctl(cx, FIOCLEX) == 0 && fcntl(cx, F_GETFD) == FD_CLOEXEC, "FIOCLEX");
    check(ioctl(cx, FIONCLEX) == 0 && fcntl(cx, F_GETFD) == 0, "FIONCLEX");
    errno = 0; check_err(fcntl(99, F_GETFD), EBADF, "fcntl bad fd");
    errno = 0; check_err(fcntl(d, 9999), EINVAL, "fcntl bad cmd");

    /* status flags */
    int fl = fcntl(d, F_GETFL);
    printf("F_GETFL O_RDWR %d append %d nonblock %d\n", (fl & O_ACCMODE) == O_RDWR, !!(fl & O_APPEND), !!(fl & O_NONBLOCK));
    check(fcntl(d, F_SETFL, fl | O_APPEND | O_NONBLOCK) == 0, "F_SETFL");
    fl = fcntl(d, F_GETFL);
    printf("after F_SETFL append %d nonblock %d (shared with dup: %d)\n", !!(fl & O_APPEND), !!(fl & O_NONBLOCK),
           !!(fcntl(12, F_GETFL) & O_APPEND));
    lseek(d, 0, SEEK_SET);
    write(d, "X", 1);
    printf("append wrote at end: size %lld\n", (long long)lseek(d, 0, SEEK_END));
    check(fcntl(d, F_SETFL, O_RDONLY) == 0 && (fcntl(d, F_GETFL) & O_ACCMODE) == O_RDWR, "F_SETFL keeps access mode");
    int ro = open("f", O_RDONLY | O_CLOEXEC);
    printf("O_CLOEXEC open FD_CLOEXEC %d, F_GETFL shows cloexec %d\n", fcntl(ro, F_GETFD), !!(fcntl(ro, F_GETFL) & O_CLOEXEC));
    int nread = -1;
    check(ioctl(ro, FIONREAD, &nread) == 0, "FIONREAD on a file");
    printf("FIONREAD %d\n", nread);
    errno = 0; check_err(ioctl(ro, TIOCGWINSZ, &nread), ENOTTY, "TIOCGWINSZ on a file");

    /* access mode 3: open asks for read and write permission, the file is neither readable nor writable */
    int m3 = open("/dev/zero", 3);
    check(m3 >= 0, "/dev/zero with access mode 3");
    errno = 0; check_err(read(m3, &c, 1), EBADF, "read of access mode 3");
    errno = 0; check_err(write(m3, "x", 1), EBADF, "write of access mode 3");
    printf("F_GETFL access mode %d\n", fcntl(m3, F_GETFL) & O_ACCMODE);
    close(m3);
    m3 = open("/proc/self/status", 3);     /* root opens it (others: EACCES, it is 0444) */
    printf("/proc/self/status mode 3 readable %d\n", m3 >= 0 && read(m3, &c, 1) == 1);
    if (m3 >= 0)
        close(m3);
    /* /proc/sys files keep their mode even for root */
    errno = 0; check_err(open("/proc/sys/kernel/ostype", O_WRONLY), EACCES, "/proc/sys/kernel/ostype for writing");
    errno = 0; check_err(open("/proc/sys/kernel/ostype", 3), EACCES, "/proc/sys/kernel/ostype mode 3");

    /* locks */
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 5};
    check(fcntl(d, F_SETLK, &lk) == 0, "F_SETLK write lock");
    lk.l_type = F_WRLCK;
    check(fcntl(d, F_GETLK, &lk) == 0 && lk.l_type == F_UNLCK, "F_GETLK own lock -> F_UNLCK");
    lk.l_type = F_WRLCK;
    errno = 0; check_err(fcntl(ro, F_SETLK, &lk), EBADF, "write lock on read-only fd");
    lk.l_type = 7;
    errno = 0; check_err(fcntl(d, F_SETLK, &lk), EINVAL, "bad lock type");
    struct flock ofd = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    errno = 0; check_err(fcntl(d, F_OFD_SETLK, &ofd), EAGAIN, "OFD lock against own POSIX lock");
    lk.l_type = F_UNLCK;
    check(fcntl(d, F_SETLK, &lk) == 0, "POSIX unlock");
    check(fcntl(d, F_OFD_SETLK, &ofd) == 0, "OFD lock");
    lk.l_type = F_RDLCK;
    check(fcntl(d, F_GETLK, &lk) == 0, "F_GETLK against an OFD lock");
    printf("POSIX sees OFD lock type %d start %lld len %lld pid %d\n", lk.l_type, (long long)lk.l_start,
           (long long)lk.l_len, lk.l_pid);
    int other = open("f", O_RDWR);
    struct flock q = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 2, .l_len = 1};
    check(fcntl(other, F_OFD_GETLK, &q) == 0, "F_OFD_GETLK");
    printf("OFD conflict type %d start %lld len %lld pid %d\n", q.l_type, (long long)q.l_start, (long long)q.l_len,
           q.l_pid == getpid() ? 1 : q.l_pid);
    q.l_type = F_RDLCK; q.l_start = 2; q.l_len = 1; q.l_pid = 0;
    errno = 0; check_err(fcntl(other, F_OFD_SETLK, &q), EAGAIN, "OFD conflicting lock");
    ofd.l_type = F_UNLCK;
    check(fcntl(d, F_OFD_SETLK, &ofd) == 0, "OFD unlock");
    check(fcntl(other, F_OFD_SETLK, &q) == 0, "OFD lock after unlock");
    check(flock(d, LOCK_EX) == 0, "flock EX");
    errno = 0; check_err(flock(other, LOCK_EX | LOCK_NB), EWOULDBLOCK, "flock conflict");
    check(flock(12, LOCK_SH | LOCK_NB) == 0, "flock same description converts");
    check(flock(d, LOCK_UN) == 0 && flock(other, LOCK_SH | LOCK_NB) == 0, "flock after unlock");
    errno = 0; check_err(flock(d, 77), EINVAL, "flock bad op");

    /* close_range and EMFILE */
    check(syscall(SYS_close_range, 20, 30, 4 /* CLOEXEC */) == 0, "close_range CLOEXEC");
    printf("fd 20 cloexec %d\n", fcntl(20, F_GETFD));
    check(syscall(SYS_close_range, 20, ~0U, 0) == 0, "close_range");
    errno = 0; check_err(fcntl(20, F_GETFD), EBADF, "closed by close_range");
    errno = 0; check_err(syscall(SYS_close_range, 5, 4, 0), EINVAL, "close_range first > last");
    struct rlimit rl = {32, 32};
    check(setrlimit(RLIMIT_NOFILE, &rl) == 0, "RLIMIT_NOFILE 32");
    int last = -1, opened = 0;
    for (;;) {
        int x = open("f", O_RDONLY);
        if (x < 0) break;
        last = x; opened++;
    }
    printf("EMFILE after reaching fd %d: %s\n", last, errname(errno));
    errno = 0; check_err(dup(0), EMFILE, "dup at the limit");
    errno = 0; check_err(fcntl(0, F_DUPFD, 40), EINVAL, "F_DUPFD above the limit");
    errno = 0; check_err(dup2(0, 40), EBADF, "dup2 above the limit");
    errno = 0; check_err(close(99), EBADF, "close bad fd");
    close(last);
    check(dup(0) == last, "dup after freeing one");
    syscall(SYS_close_range, 3, ~0U, 0);
    scratch_leave();
    return finish();
}
