/*
 * procs.c sections about open files across fork: pipes and FIFOs (EOF once
 * the last writer in any process closes, EPIPE/SIGPIPE once the last reader
 * does), shared offsets and status flags, POSIX/OFD/flock locks between
 * processes, eventfd and epoll shared, close_range, prlimit64 on a child.
 */
#ifndef KVMBOX_PROCS_FILES_H
#define KVMBOX_PROCS_FILES_H

#include "procs.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>

static const char *revents_text(short r)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "%s%s%s%s%s", r & POLLIN ? "IN " : "", r & POLLOUT ? "OUT " : "",
             r & POLLHUP ? "HUP " : "", r & POLLERR ? "ERR " : "", r ? "" : "none");
    return buf;
}

static short poll1(int fd, short events)
{
    struct pollfd p = {fd, events, 0};
    return poll(&p, 1, 0) < 0 ? -1 : p.revents;
}

/* A child that keeps `keep` open, closes `drop`, and exits 0 when the gate closes. */
static pid_t holder(struct gate *g, int keep, int drop)
{
    pid_t pid = fork();
    if (pid == 0) {
        alarm(15);
        close(drop);
        close(g->w);
        gate_await(g);
        close(keep);
        _exit(0);
    }
    return pid;
}

/* ---------------------------------------------------------------- pipes and FIFOs */

static void sec_pipes(void)
{
    int p[2];
    char buf[64];
    if (pipe(p) != 0)
        return say("pipe: %s", errname(errno));
    struct gate g = gate_new();
    pid_t w = holder(&g, p[1], p[0]);
    say("write: %s", res(write(p[1], "x", 1)));
    close(p[1]);
    say("read what was written: %zd", read(p[0], buf, sizeof buf));
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    const char *rd = res(read(p[0], buf, 1));
    say("the child still holds a writer: read %s, poll %s", rd, revents_text(poll1(p[0], POLLIN)));
    gate_close(&g);
    say_wait("writer holder", w);
    ssize_t n = read(p[0], buf, 1);
    say("last writer gone: read %zd, poll %s", n, revents_text(poll1(p[0], POLLIN)));
    close(p[0]);

    if (pipe(p) != 0)
        return say("pipe: %s", errname(errno));
    g = gate_new();
    pid_t r = holder(&g, p[0], p[1]);
    close(p[0]);
    const char *wr = res(write(p[1], "y", 1));
    say("the child still holds a reader: write %s, poll %s", wr, revents_text(poll1(p[1], POLLOUT)));
    gate_close(&g);
    say_wait("reader holder", r);
    say("last reader gone: poll %s", revents_text(poll1(p[1], POLLOUT)));
    pid_t c = fork();
    if (c == 0) {
        signal(SIGPIPE, SIG_DFL);
        ssize_t n = write(p[1], "z", 1);
        _exit(n < 0 ? 100 : 101);
    }
    say_wait("child writing with SIGPIPE at its default", c);
    signal(SIGPIPE, SIG_IGN);
    say("write with SIGPIPE ignored: %s", res(write(p[1], "z", 1)));
    signal(SIGPIPE, SIG_DFL);
    close(p[1]);

    /* 1 MiB through a pipe from a child: blocking on both sides. */
    if (pipe(p) != 0)
        return say("pipe: %s", errname(errno));
    c = fork();
    if (c == 0) {
        alarm(15);
        close(p[0]);
        static unsigned char data[65536 + 13];
        for (int i = 0; i < 16; i++) {
            for (size_t j = 0; j < sizeof data; j++)
                data[j] = (unsigned char)(i * 31 + j);
            for (size_t off = 0; off < sizeof data;) {
                ssize_t n = write(p[1], data + off, sizeof data - off);
                if (n <= 0)
                    _exit(1);
                off += n;
            }
        }
        _exit(0);
    }
    close(p[1]);
    unsigned long sum = 0, total = 0;
    unsigned char big[4096];
    for (;;) {
        ssize_t n = read(p[0], big, sizeof big);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            sum = sum * 33 + big[i];
        total += n;
    }
    close(p[0]);
    say_wait("bulk writer", c);
    say("bulk: %lu bytes, checksum %lx", total, sum);

    const char *fifo = tmp_path("fifo");
    say("mkfifo: %s", res(mkfifo(fifo, 0600)));
    say("open O_WRONLY|O_NONBLOCK without a reader: %s", res(open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)));
    c = fork();
    if (c == 0) {
        alarm(15);
        int fd = open(fifo, O_WRONLY | O_CLOEXEC);     /* blocks until the reader opens */
        if (fd < 0)
            _exit(1);
        _exit(write(fd, "via fifo", 8) == 8 ? 0 : 2);
    }
    int fd = open(fifo, O_RDONLY | O_CLOEXEC);
    const char *opened = res(fd);
    n = fd < 0 ? -1 : read(fd, buf, 8);
    buf[n > 0 ? n : 0] = 0;
    say_wait("fifo writer", c);
    char tail[8];
    ssize_t eof = fd < 0 ? -1 : read(fd, tail, 8);
    say("fifo: open %s, read \"%s\", then %zd (EOF)", opened, buf, eof);
    if (fd >= 0)
        close(fd);
    unlink(fifo);
}

/* ---------------------------------------------------------------- offsets and flags */

static void sec_offsets(void)
{
    const char *path = tmp_path("offsets");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return say("open: %s", errname(errno));
    if (write(fd, "0123456789", 10) != 10)
        say("write failed");
    lseek(fd, 0, SEEK_SET);
    pid_t c = fork();
    if (c == 0) {
        char b[4];
        _exit(read(fd, b, 3) == 3 ? 0 : 1);
    }
    say_wait("child read 3", c);
    char buf[16];
    say("offset after the child's read: %ld", (long)lseek(fd, 0, SEEK_CUR));
    c = fork();
    if (c == 0)
        _exit(write(fd, "AB", 2) == 2 ? 0 : 1);
    say_wait("child wrote 2", c);
    ssize_t n = pread(fd, buf, 10, 0);
    buf[n > 0 ? n : 0] = 0;
    say("offset %ld, contents %s", (long)lseek(fd, 0, SEEK_CUR), buf);
    int fd2 = open(path, O_RDONLY | O_CLOEXEC);
    c = fork();
    if (c == 0) {
        lseek(fd, 1, SEEK_SET);
        fcntl(fd, F_SETFL, O_APPEND);
        fcntl(fd, F_SETFD, 0);
        close(fd2);
        _exit(0);
    }
    say_wait("child changed offset and flags", c);
    say("shared: offset %ld, O_APPEND %d; per process: FD_CLOEXEC %d, our other fd open %s",
        (long)lseek(fd, 0, SEEK_CUR), !!(fcntl(fd, F_GETFL) & O_APPEND), fcntl(fd, F_GETFD), res(fcntl(fd2, F_GETFD)));
    say("a separate open has its own offset: %ld", (long)lseek(fd2, 0, SEEK_CUR));
    close(fd2);
    close(fd);
    unlink(path);
}

/* ---------------------------------------------------------------- locks between processes */

static int lk(int fd, int cmd, short type, off_t start, off_t len, struct flock *out)
{
    struct flock f;
    memset(&f, 0, sizeof f);
    f.l_type = type;
    f.l_whence = SEEK_SET;
    f.l_start = start;
    f.l_len = len;
    int r = fcntl(fd, cmd, &f);
    if (out)
        *out = f;
    return r;
}

static void sec_locks(void)
{
    const char *path = tmp_path("locks");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return say("open: %s", errname(errno));
    pid_t me = getpid();
    say("POSIX write lock on 0-9: %s", res(lk(fd, F_SETLK, F_WRLCK, 0, 10, NULL)));
    pid_t c = fork();
    if (c == 0) {
        struct flock f;
        int r = lk(fd, F_GETLK, F_WRLCK, 0, 10, &f);
        say("child: F_GETLK %s: %s held by the parent %d", res(r), f.l_type == F_WRLCK ? "F_WRLCK" : "other",
            f.l_pid == me);
        const char *a = res(lk(fd, F_SETLK, F_WRLCK, 5, 10, NULL));
        say("child: F_SETLK 5-14: %s; F_SETLK 20-29: %s", a, res(lk(fd, F_SETLK, F_WRLCK, 20, 10, NULL)));
        _exit(0);
    }
    say_wait("child", c);
    int other = open(path, O_RDONLY | O_CLOEXEC);
    close(other);       /* closing any fd of the file drops this process's POSIX locks */
    c = fork();
    if (c == 0) {
        struct flock f;
        lk(fd, F_GETLK, F_WRLCK, 0, 10, &f);
        say("child: after the parent closed another fd of the file: %s", f.l_type == F_UNLCK ? "F_UNLCK" : "locked");
        _exit(0);
    }
    say_wait("child", c);

    lk(fd, F_SETLK, F_WRLCK, 0, 10, NULL);
    c = fork();
    if (c == 0) {
        alarm(10);
        int r = lk(fd, F_SETLKW, F_WRLCK, 0, 10, NULL);      /* waits for the parent's unlock */
        _exit(r == 0 ? 0 : 1);
    }
    sleep_ms(20);
    lk(fd, F_SETLK, F_UNLCK, 0, 10, NULL);
    say_wait("F_SETLKW after the parent unlocks", c);

    say("OFD lock on 0-9: %s", res(lk(fd, F_OFD_SETLK, F_WRLCK, 0, 10, NULL)));
    c = fork();
    if (c == 0) {
        int own = open(path, O_RDWR | O_CLOEXEC);
        struct flock f;
        lk(own, F_OFD_GETLK, F_WRLCK, 0, 10, &f);
        const char *a = res(lk(fd, F_OFD_SETLK, F_WRLCK, 0, 10, NULL));
        say("child: OFD lock via the inherited description: %s; via its own open: %s, F_OFD_GETLK l_pid %d",
            a, res(lk(own, F_OFD_SETLK, F_WRLCK, 0, 10, NULL)), (int)f.l_pid);
        _exit(0);
    }
    say_wait("child", c);
    lk(fd, F_OFD_SETLK, F_UNLCK, 0, 10, NULL);

    say("flock LOCK_EX: %s", res(flock(fd, LOCK_EX)));
    c = fork();
    if (c == 0) {
        int own = open(path, O_RDWR | O_CLOEXEC);
        const char *a = res(flock(fd, LOCK_EX | LOCK_NB));
        say("child: flock via the inherited description: %s; via its own open: %s", a,
            res(flock(own, LOCK_EX | LOCK_NB)));
        _exit(0);
    }
    say_wait("child", c);
    flock(fd, LOCK_UN);
    c = fork();
    if (c == 0) {
        int own = open(path, O_RDWR | O_CLOEXEC);
        say("child: after LOCK_UN, via its own open: %s", res(flock(own, LOCK_EX | LOCK_NB)));
        _exit(0);
    }
    say_wait("child", c);
    close(fd);
    unlink(path);
}

/* ---------------------------------------------------------------- eventfd and epoll */

static void sec_eventfd(void)
{
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0)
        return say("eventfd: %s", errname(errno));
    pid_t c = fork();
    if (c == 0) {
        uint64_t v = 5;
        _exit(write(efd, &v, 8) == 8 ? 0 : 1);
    }
    uint64_t v = 0;
    ssize_t n = read(efd, &v, 8);      /* blocks until the child's write */
    say_wait("child wrote 5", c);
    say("eventfd read in the parent: %zd bytes, %lu", n, (unsigned long)v);

    int p[2];
    if (pipe(p) != 0)
        return say("pipe: %s", errname(errno));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 77};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    struct gate g = gate_new();
    c = fork();
    if (c == 0) {
        alarm(15);
        close(g.w);
        if (write(p[1], "e", 1) != 1)
            _exit(1);
        gate_await(&g);
        epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL);       /* the same epoll instance as the parent's */
        _exit(0);
    }
    struct epoll_event out;
    memset(&out, 0, sizeof out);
    int k = epoll_wait(ep, &out, 1, 10000);
    say("epoll_wait sees the child's write: %d event, data %lu, IN %d", k, (unsigned long)out.data.u64,
        !!(out.events & EPOLLIN));
    gate_close(&g);
    say_wait("child removed the pipe from the shared epoll", c);
    k = epoll_wait(ep, &out, 1, 0);
    say("epoll_wait after the child's EPOLL_CTL_DEL: %d (data still unread: poll %s)", k,
        revents_text(poll1(p[0], POLLIN)));
    ev.data.u64 = 78;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    char b;
    if (read(p[0], &b, 1) != 1)
        say("read failed");
    c = fork();
    if (c == 0) {
        close(p[1]);
        _exit(0);
    }
    say_wait("child closed its writer", c);
    close(p[1]);
    memset(&out, 0, sizeof out);
    k = epoll_wait(ep, &out, 1, 10000);
    say("last writer closed: %d event, HUP %d", k, !!(out.events & EPOLLHUP));
    close(ep);
    close(p[0]);
    close(efd);
}

/* ---------------------------------------------------------------- close_range, prlimit64 */

static const char *fd_states(int lo, int hi)
{
    static char buf[128];
    buf[0] = 0;
    for (int fd = lo; fd <= hi; fd++) {
        int f = fcntl(fd, F_GETFD);
        strcat(buf, f < 0 ? "-" : f & FD_CLOEXEC ? "c" : "o");
    }
    return buf;
}

static void sec_fds(void)
{
    for (int fd = 20; fd <= 27; fd++)
        dup2(1, fd);
    say("fds 20-27: %s", fd_states(20, 27));
    const char *r = res(syscall(SYS_close_range, 22, 23, 0));
    say("close_range(22, 23, 0): %s -> %s", r, fd_states(20, 27));
    r = res(syscall(SYS_close_range, 24, 25, CLOSE_RANGE_CLOEXEC));
    say("close_range(24, 25, CLOEXEC): %s -> %s", r, fd_states(20, 27));
    say("close_range(27, 20, 0): %s", res(syscall(SYS_close_range, 27, 20, 0)));
    say("close_range with unknown flags: %s", res(syscall(SYS_close_range, 20, 27, 1U << 30)));
    pid_t c = fork();
    if (c == 0) {
        syscall(SYS_close_range, 20, ~0U, 0);
        _exit(fcntl(20, F_GETFD) < 0 && errno == EBADF ? 0 : 1);
    }
    say_wait("child closed 20 and up", c);
    say("ours after the child's close_range: %s", fd_states(20, 27));
    syscall(SYS_close_range, 20, 27, 0);

    struct gate g = gate_new();
    int rep[2];
    if (pipe(rep) != 0)
        return say("pipe: %s", errname(errno));
    c = fork();
    if (c == 0) {
        alarm(15);
        close(g.w);
        gate_await(&g);
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        send_int(rep[1], (int)rl.rlim_cur);
        send_int(rep[1], (int)rl.rlim_max);
        _exit(0);
    }
    struct rlimit old, now = {64, 128};
    say("prlimit64(child, NOFILE, NULL, &old): %s", res(syscall(SYS_prlimit64, c, RLIMIT_NOFILE, NULL, &old)));
    struct rlimit mine;
    getrlimit(RLIMIT_NOFILE, &mine);
    say("the child's limit is the inherited one: %d", old.rlim_cur == mine.rlim_cur && old.rlim_max == mine.rlim_max);
    say("prlimit64(child, NOFILE, {64, 128}): %s", res(syscall(SYS_prlimit64, c, RLIMIT_NOFILE, &now, NULL)));
    struct rlimit bad = {200, 100};
    say("prlimit64 with soft > hard: %s", res(syscall(SYS_prlimit64, c, RLIMIT_NOFILE, &bad, NULL)));
    gate_close(&g);
    int soft = recv_int(rep[0]), hard = recv_int(rep[0]);
    say_wait("child", c);
    say("the child sees soft %d hard %d; ours unchanged %d", soft, hard,
        getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_cur == mine.rlim_cur);
    say("prlimit64 of a reaped pid: %s", res(syscall(SYS_prlimit64, c, RLIMIT_NOFILE, NULL, &old)));
    close(rep[0]);
    close(rep[1]);
}

#endif
