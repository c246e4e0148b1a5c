/*
 * AF_UNIX sockets: socketpair of each type, stream on a path and on an abstract name,
 * autobind, datagrams, seqpacket records, MSG_PEEK/DONTWAIT/WAITALL/TRUNC, SCM_RIGHTS
 * (MSG_CTRUNC, MSG_CMSG_CLOEXEC, fds closed with the queue), SCM_CREDENTIALS with
 * SO_PASSCRED, SO_PEERCRED, shutdown/EOF/EPIPE, poll readiness, getsockname/getpeername
 * lengths, options and the errors of the socket calls, with a forked peer.
 * argv[1]: a writable directory for socket paths.
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>

#ifndef SO_DOMAIN
#define SO_DOMAIN 39
#endif
#ifndef SO_PROTOCOL
#define SO_PROTOCOL 38
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif

static void R(const char *label, long ret)
{
    if (ret < 0)
        printf("%s -> %s\n", label, errname(errno));
    else
        printf("%s = %ld\n", label, ret);
}

static socklen_t mkaddr(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static socklen_t mkabstract(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path + 1, name, strlen(name));
    return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
}

static void pollmask(const char *label, int fd)
{
    struct pollfd p = {fd, POLLIN | POLLOUT | POLLRDHUP, 0};
    poll(&p, 1, 0);
    printf("%s: in %d out %d hup %d rdhup %d err %d\n", label, !!(p.revents & POLLIN),
           !!(p.revents & POLLOUT), !!(p.revents & POLLHUP), !!(p.revents & POLLRDHUP),
           !!(p.revents & POLLERR));
}

static int sendfds(int s, const int *fds, int n, const char *data)
{
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    struct iovec iov = {(void *)data, strlen(data)};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    return sendmsg(s, &m, 0);
}

/* Receive with a control buffer of `clen` bytes; prints what came. Returns the first fd. */
static int recvfds(const char *label, int s, size_t clen, int flags)
{
    char data[64], cbuf[256];
    struct iovec iov = {data, sizeof data};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = clen ? cbuf : NULL;
    m.msg_controllen = clen;
    long n = recvmsg(s, &m, flags);
    if (n < 0) {
        R(label, n);
        return -1;
    }
    int first = -1, count = 0, cloexec = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(&first, CMSG_DATA(c), sizeof first);
            cloexec = fcntl(first, F_GETFD) & FD_CLOEXEC;
        }
    }
    printf("%s: n %ld fds %d ctrunc %d controllen %zu cloexec %d\n", label, n, count,
           !!(m.msg_flags & MSG_CTRUNC), (size_t)m.msg_controllen, cloexec);
    return first;
}

static void pairs(void)
{
    int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    for (int i = 0; i < 3; i++) {
        int sv[2];
        R("socketpair", socketpair(AF_UNIX, types[i] | SOCK_CLOEXEC, 0, sv));
        int v;
        socklen_t l = sizeof v;
        getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &v, &l);
        printf("type %d len %d cloexec %d\n", v, (int)l, !!(fcntl(sv[0], F_GETFD) & FD_CLOEXEC));
        l = sizeof v;
        getsockopt(sv[0], SOL_SOCKET, SO_DOMAIN, &v, &l);
        printf("domain %d\n", v);
        l = sizeof v;
        getsockopt(sv[0], SOL_SOCKET, SO_PROTOCOL, &v, &l);
        printf("protocol %d\n", v);
        struct ucred uc;
        l = sizeof uc;
        getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, &uc, &l);
        printf("peercred pid ok %d uid ok %d len %d\n", uc.pid == getpid(), uc.uid == geteuid(), (int)l);
        struct sockaddr_un a;
        l = sizeof a;
        R("getsockname", getsockname(sv[0], (void *)&a, &l));
        printf("name len %d family %d\n", (int)l, a.sun_family);
        l = sizeof a;
        R("getpeername", getpeername(sv[0], (void *)&a, &l));
        printf("peer len %d\n", (int)l);
        struct stat st;
        fstat(sv[0], &st);
        printf("S_ISSOCK %d perm %o\n", S_ISSOCK(st.st_mode), st.st_mode & 0777);
        pollmask("fresh pair", sv[0]);
        R("write 5", write(sv[0], "hello", 5));
        pollmask("peer with data", sv[1]);
        char buf[16] = {0};
        R("recv peek 3", recv(sv[1], buf, 3, MSG_PEEK));
        if (types[i] == SOCK_STREAM)
            R("recv 2", recv(sv[1], buf, 2, 0));
        else
            R("recv trunc 2", recv(sv[1], buf, 2, MSG_TRUNC));
        R("recv dontwait", recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
        R("recv dontwait again", recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
        R("shutdown WR", shutdown(sv[0], SHUT_WR));
        pollmask("after peer SHUT_WR", sv[1]);
        pollmask("after SHUT_WR self", sv[0]);
        R("recv after SHUT_WR", recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
        R("send after SHUT_WR", send(sv[0], "x", 1, MSG_NOSIGNAL));
        R("shutdown bad", shutdown(sv[0], 7));
        close(sv[0]);
        pollmask("after close", sv[1]);
        R("send to closed", send(sv[1], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT));
        close(sv[1]);
    }
}

static volatile int got_pipe;
static void on_pipe(int s) { got_pipe++; }

static void errors(void)
{
    R("socket bad family", socket(1000, SOCK_STREAM, 0));
    R("socket AF_UNIX RDM", socket(AF_UNIX, SOCK_RDM, 0));
    R("socket bad type", socket(AF_UNIX, 11, 0));
    R("socket bad flags", socket(AF_UNIX, SOCK_STREAM | 0x100000, 0));
    R("socket bad protocol", socket(AF_UNIX, SOCK_STREAM, 7));
    int r = socket(AF_UNIX, SOCK_RAW, 0);
    int v = 0;
    socklen_t l = sizeof v;
    getsockopt(r, SOL_SOCKET, SO_TYPE, &v, &l);
    printf("SOCK_RAW is type %d\n", v);
    close(r);
    int fd = open("/dev/null", O_RDONLY);
    R("bind non-socket", bind(fd, NULL, 0));
    R("listen non-socket", listen(fd, 1));
    R("getsockopt non-socket", getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l));
    close(fd);
    R("listen bad fd", listen(999, 1));
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    R("listen dgram", listen(d, 1));
    R("send dgram unconnected", send(d, "x", 1, 0));
    R("getpeername unconnected", getpeername(d, NULL, NULL));
    struct sockaddr_un a;
    R("bind len 200", bind(d, (void *)&a, 200));
    a.sun_family = AF_INET;
    R("bind wrong family", bind(d, (void *)&a, sizeof a));
    R("bind EFAULT", bind(d, BADPTR, sizeof a));
    R("connect missing path", connect(d, (void *)&a, mkaddr(&a, "/nonexistent/sock")));
    R("connect abstract nobody", connect(d, (void *)&a, mkabstract(&a, "kvmbox-nobody-here")));
    R("sendto missing", sendto(d, "x", 1, 0, (void *)&a, mkabstract(&a, "kvmbox-nobody-here")));
    R("setsockopt short", setsockopt(d, SOL_SOCKET, SO_RCVBUF, &v, 2));
    R("getsockopt unknown", getsockopt(d, SOL_SOCKET, 5000, &v, &l));
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    R("listen unbound stream", listen(s, 1));
    char buf[4];
    R("recv unconnected stream", recv(s, buf, 4, MSG_DONTWAIT));
    R("send unconnected stream", send(s, "x", 1, MSG_NOSIGNAL));
    pollmask("fresh stream", s);
    R("accept unlistened", accept(s, NULL, NULL));
    R("accept4 bad flags", accept4(s, NULL, NULL, 0x77));
    R("shutdown unconnected", shutdown(s, SHUT_RDWR));
    close(s);
    close(d);
    /* SIGPIPE without MSG_NOSIGNAL */
    signal(SIGPIPE, on_pipe);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    close(sv[1]);
    R("write to closed peer", write(sv[0], "x", 1));
    R("send MSG_NOSIGNAL", send(sv[0], "x", 1, MSG_NOSIGNAL));
    printf("SIGPIPE count %d\n", got_pipe);
    close(sv[0]);
    signal(SIGPIPE, SIG_DFL);
}

static void options(void)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    int v = 4096;
    socklen_t l = sizeof v;
    R("set SO_RCVBUF", setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v));
    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &l);
    printf("SO_RCVBUF %d\n", v);
    v = 1;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    getsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, &l);
    printf("SO_SNDBUF min %d\n", v);
    v = 1;
    setsockopt(s, SOL_SOCKET, SO_PASSCRED, &v, sizeof v);
    v = 0;
    getsockopt(s, SOL_SOCKET, SO_PASSCRED, &v, &l);
    printf("SO_PASSCRED %d\n", v);
    v = 5;
    setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v);
    getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, &l);
    printf("SO_KEEPALIVE %d\n", v);
    getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &l);
    printf("SO_ERROR %d\n", v);
    getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &v, &l);
    printf("SO_ACCEPTCONN %d\n", v);
    struct linger lg = {1, 5};
    R("set SO_LINGER", setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    memset(&lg, 0, sizeof lg);
    l = sizeof lg;
    getsockopt(s, SOL_SOCKET, SO_LINGER, &lg, &l);
    printf("SO_LINGER %d %d len %d\n", lg.l_onoff, lg.l_linger, (int)l);
    struct timeval tv = {1, 500000};
    R("set SO_RCVTIMEO", setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    memset(&tv, 0, sizeof tv);
    l = sizeof tv;
    getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, &l);
    printf("SO_RCVTIMEO %ld %ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
    tv.tv_usec = 2000000;
    R("SO_RCVTIMEO bad usec", setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    short sh;
    l = sizeof sh;
    R("getsockopt short len", getsockopt(s, SOL_SOCKET, SO_TYPE, &sh, &l));
    printf("short len %d\n", (int)l);
    close(s);
    /* SO_RCVTIMEO honoured */
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    struct timeval t2 = {0, 100000};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &t2, sizeof t2);
    char b;
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    R("recv with SO_RCVTIMEO", recv(sv[0], &b, 1, 0));
    R("read with SO_RCVTIMEO", read(sv[0], &b, 1));
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    printf("waited at least 190ms %d\n", ms >= 190);
    close(sv[0]);
    close(sv[1]);
}

static void rights(void)
{
    int sv[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(p);
    int two[2] = {p[0], p[1]};
    R("sendmsg 2 fds", sendfds(sv[0], two, 2, "ab"));
    int fd = recvfds("recv 2 fds", sv[1], 256, MSG_CMSG_CLOEXEC);
    R("write via received", write(fd + 1, "Z", 1));
    char c = 0;
    R("read original", read(p[0], &c, 1));
    printf("byte %c\n", c);
    close(fd);
    close(fd + 1);
    /* short control buffer: MSG_CTRUNC, the fds that do not fit are closed */
    R("sendmsg 2 fds again", sendfds(sv[0], two, 2, "cd"));
    recvfds("recv short control", sv[1], CMSG_LEN(sizeof(int)), 0);
    R("sendmsg 1 fd", sendfds(sv[0], two, 1, "ef"));
    recvfds("recv no control", sv[1], 0, 0);
    /* the write end in flight, never received: closed with the socket -> EOF on the pipe */
    close(p[0]);
    int q[2];
    pipe(q);
    R("sendmsg write end", sendfds(sv[0], &q[1], 1, "gh"));
    close(q[1]);
    close(sv[1]);
    close(sv[0]);
    R("read pipe after in-flight close (EOF)", read(q[0], &c, 1));
    close(q[0]);
    close(p[1]);
    R("sendmsg bad fd", sendfds(socket(AF_UNIX, SOCK_DGRAM, 0), (int[]){999}, 1, "x"));
    /* peek with rights, then receive */
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    pipe(p);
    sendfds(sv[0], &p[0], 1, "pk");
    int f1 = recvfds("peek rights", sv[1], 256, MSG_PEEK);
    int f2 = recvfds("recv rights", sv[1], 256, 0);
    printf("different fds %d\n", f1 != f2 && f1 >= 0 && f2 >= 0);
    close(f1);
    close(f2);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

static void creds(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    int one = 1;
    setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    send(sv[0], "c", 1, 0);
    char data[8], cbuf[64];
    struct iovec iov = {data, sizeof data};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    R("recvmsg creds", recvmsg(sv[1], &m, 0));
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c && c->cmsg_type == SCM_CREDENTIALS) {
        struct ucred u;
        memcpy(&u, CMSG_DATA(c), sizeof u);
        printf("SCM_CREDENTIALS pid ok %d uid ok %d gid ok %d len %d\n", u.pid == getpid(),
               u.uid == geteuid(), u.gid == getegid(), (int)c->cmsg_len);
    } else {
        printf("no SCM_CREDENTIALS\n");
    }
    /* explicit credentials: our own are accepted, another pid is EPERM */
    struct ucred mine = {getpid(), geteuid(), getegid()};
    char cb[CMSG_SPACE(sizeof mine)];
    struct msghdr s = {0};
    s.msg_iov = &iov;
    s.msg_iovlen = 1;
    iov.iov_len = 1;
    s.msg_control = cb;
    s.msg_controllen = sizeof cb;
    c = CMSG_FIRSTHDR(&s);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof mine);
    memcpy(CMSG_DATA(c), &mine, sizeof mine);
    R("sendmsg own creds", sendmsg(sv[0], &s, 0));
    mine.pid = getpid() + 100000;
    memcpy(CMSG_DATA(c), &mine, sizeof mine);
    if (geteuid() != 0)
        R("sendmsg other pid", sendmsg(sv[0], &s, 0));
    c->cmsg_type = 77;
    R("sendmsg bad cmsg type", sendmsg(sv[0], &s, 0));
    close(sv[0]);
    close(sv[1]);
}

static void stream_server(const char *dir, int abstract)
{
    char path[256];
    snprintf(path, sizeof path, "%s/kvmbox-unixsock-%d", dir, (int)getpid());
    char aname[64];
    snprintf(aname, sizeof aname, "kvmbox-unixsock-%d", (int)getpid());
    struct sockaddr_un a;
    socklen_t alen = abstract ? mkabstract(&a, aname) : mkaddr(&a, path);
    printf("-- stream on %s\n", abstract ? "abstract" : "path");
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    R("bind", bind(l, (void *)&a, alen));
    R("bind again", bind(l, (void *)&a, alen));
    int other = socket(AF_UNIX, SOCK_STREAM, 0);
    R("bind in use", bind(other, (void *)&a, alen));
    R("connect before listen", connect(other, (void *)&a, alen));
    close(other);
    if (!abstract) {
        struct stat st;
        R("stat socket file", stat(path, &st));
        printf("S_ISSOCK %d\n", S_ISSOCK(st.st_mode));
    }
    struct sockaddr_un got;
    socklen_t gl = sizeof got;
    getsockname(l, (void *)&got, &gl);
    printf("getsockname len ok %d same %d\n", gl == alen, memcmp(&got, &a, alen) == 0);
    R("listen 1", listen(l, 1));
    pollmask("listener idle", l);
    R("accept none", accept(l, NULL, NULL));
    int c1 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int c2 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int c3 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    R("connect 1", connect(c1, (void *)&a, alen));
    R("connect 2", connect(c2, (void *)&a, alen));
    R("connect 3 (backlog full)", connect(c3, (void *)&a, alen));
    R("connect again", connect(c1, (void *)&a, alen));
    int dg = socket(AF_UNIX, SOCK_DGRAM, 0);
    R("dgram connect to stream", connect(dg, (void *)&a, alen));
    close(dg);
    pollmask("listener pending", l);
    gl = sizeof got;
    R("getpeername client", getpeername(c1, (void *)&got, &gl));
    printf("peer len ok %d\n", gl == alen);
    R("send before accept", send(c1, "early", 5, 0));
    gl = sizeof got;
    int s1 = accept4(l, (void *)&got, &gl, SOCK_CLOEXEC);
    R("accept4", s1 >= 0 ? 0 : -1);
    printf("accepted peer len %d cloexec %d nonblock %d\n", (int)gl,
           !!(fcntl(s1, F_GETFD) & FD_CLOEXEC), !!(fcntl(s1, F_GETFL) & O_NONBLOCK));
    gl = sizeof got;
    getsockname(s1, (void *)&got, &gl);
    printf("accepted name len ok %d\n", gl == alen);
    char buf[64] = {0};
    R("recv early", recv(s1, buf, sizeof buf, 0));
    struct ucred uc;
    socklen_t ul = sizeof uc;
    getsockopt(s1, SOL_SOCKET, SO_PEERCRED, &uc, &ul);
    printf("accepted peercred pid ok %d\n", uc.pid == getpid());
    int s2 = accept(l, NULL, NULL);
    R("accept 2", s2 >= 0 ? 0 : -1);
    /* fork a client that talks to a blocking server socket */
    int s3 = -1;
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(c, (void *)&a, alen) < 0)
            _exit(2);
        char big[100000];
        memset(big, 'q', sizeof big);
        if (send(c, big, sizeof big, 0) != sizeof big)
            _exit(3);
        char r[8];
        if (recv(c, r, 2, MSG_WAITALL) != 2)
            _exit(4);
        struct ucred u;
        socklen_t ulen = sizeof u;
        getsockopt(c, SOL_SOCKET, SO_PEERCRED, &u, &ulen);
        _exit(u.pid == getppid() ? 0 : 5);
    }
    struct pollfd pf = {l, POLLIN, 0};
    R("poll listener for child", poll(&pf, 1, 10000));
    s3 = accept(l, NULL, NULL);
    R("accept child", s3 >= 0 ? 0 : -1);
    int fl = fcntl(s3, F_GETFL);
    fcntl(s3, F_SETFL, fl & ~O_NONBLOCK);
    static char big[100000];
    R("recv MSG_WAITALL 100000", recv(s3, big, sizeof big, MSG_WAITALL));
    int allq = 1;
    for (int i = 0; i < 100000; i++)
        allq &= big[i] == 'q';
    printf("all q %d\n", allq);
    R("send 1 byte", send(s3, "o", 1, 0));
    R("send 1 byte more", send(s3, "k", 1, 0));
    int st;
    waitpid(pid, &st, 0);
    printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    R("recv EOF from exited child", recv(s3, buf, sizeof buf, 0));
    /* unread data at close: the peer sees ECONNRESET once, then EOF */
    send(c2, "unread", 6, 0);
    send(s2, "unread", 6, 0);
    close(s2);
    pollmask("after reset", c2);
    R("recv after reset", recv(c2, buf, sizeof buf, MSG_DONTWAIT));
    R("recv after reset again", recv(c2, buf, sizeof buf, MSG_DONTWAIT));
    close(c1);
    close(c2);
    close(c3);
    close(s1);
    close(s3);
    close(l);
    if (!abstract) {
        int n = socket(AF_UNIX, SOCK_STREAM, 0);
        R("connect to stale socket file", connect(n, (void *)&a, alen));
        R("bind over stale file", bind(n, (void *)&a, alen));
        unlink(path);
        R("mknod socket", mknod(path, S_IFSOCK | 0600, 0));
        R("connect to mknod socket", connect(n, (void *)&a, alen));
        unlink(path);
        close(n);
    } else {
        int n = socket(AF_UNIX, SOCK_STREAM, 0);
        R("connect to closed abstract", connect(n, (void *)&a, alen));
        R("rebind closed abstract", bind(n, (void *)&a, alen));
        close(n);
    }
}

static void dgrams(const char *dir)
{
    printf("-- datagrams\n");
    char path[256];
    snprintf(path, sizeof path, "%s/kvmbox-unixdg-%d", dir, (int)getpid());
    struct sockaddr_un a, from;
    socklen_t alen = mkaddr(&a, path);
    int r = socket(AF_UNIX, SOCK_DGRAM, 0);
    R("bind dgram", bind(r, (void *)&a, alen));
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    R("sendto unbound sender", sendto(s, "one", 3, 0, (void *)&a, alen));
    socklen_t fl = sizeof from;
    char buf[64];
    R("recvfrom", recvfrom(r, buf, sizeof buf, 0, (void *)&from, &fl));
    printf("from len %d\n", (int)fl);
    R("autobind", bind(s, (void *)&a, offsetof(struct sockaddr_un, sun_path)));
    fl = sizeof from;
    getsockname(s, (void *)&from, &fl);
    printf("autobind len %d abstract %d\n", (int)fl, from.sun_path[0] == 0);
    sendto(s, "two", 3, 0, (void *)&a, alen);
    fl = sizeof from;
    R("recvfrom bound", recvfrom(r, buf, sizeof buf, 0, (void *)&from, &fl));
    printf("from len %d\n", (int)fl);
    /* queue limit: non-blocking sends stop with EAGAIN */
    int n = 0;
    while (sendto(s, "x", 1, MSG_DONTWAIT, (void *)&a, alen) == 1 && n < 10000)
        n++;
    printf("queued until %s (n > 0: %d)\n", errname(errno), n > 0);
    /* sendmmsg / recvmmsg */
    struct sockaddr_un b = {0};
    b.sun_family = AF_UNIX;
    int x = socket(AF_UNIX, SOCK_DGRAM, 0);
    bind(x, (void *)&b, offsetof(struct sockaddr_un, sun_path));
    socklen_t bl = sizeof b;
    getsockname(x, (void *)&b, &bl);
    struct mmsghdr mm[3];
    struct iovec iv[3];
    char *words[3] = {"alpha", "be", "gamma!"};
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 3; i++) {
        iv[i].iov_base = words[i];
        iv[i].iov_len = strlen(words[i]);
        mm[i].msg_hdr.msg_iov = &iv[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &b;
        mm[i].msg_hdr.msg_namelen = bl;
    }
    R("sendmmsg", sendmmsg(s, mm, 3, 0));
    printf("msg_len %u %u %u\n", mm[0].msg_len, mm[1].msg_len, mm[2].msg_len);
    char rb[3][4];
    for (int i = 0; i < 3; i++) {
        iv[i].iov_base = rb[i];
        iv[i].iov_len = 4;
        mm[i].msg_hdr.msg_name = NULL;
        mm[i].msg_hdr.msg_namelen = 0;
        mm[i].msg_len = 0;
    }
    R("recvmmsg", recvmmsg(x, mm, 3, MSG_DONTWAIT, NULL));
    printf("msg_len %u %u %u trunc %d %d %d\n", mm[0].msg_len, mm[1].msg_len, mm[2].msg_len,
           !!(mm[0].msg_hdr.msg_flags & MSG_TRUNC), !!(mm[1].msg_hdr.msg_flags & MSG_TRUNC),
           !!(mm[2].msg_hdr.msg_flags & MSG_TRUNC));
    /* connected dgram: another sender gets EPERM, peer closed gives ECONNREFUSED */
    int y = socket(AF_UNIX, SOCK_DGRAM, 0);
    R("connect x to autobound s", connect(x, (void *)&from, fl));
    R("send x connected", send(x, "hi", 2, 0));
    R("y sendto x (connected elsewhere)", sendto(y, "no", 2, 0, (void *)&b, bl));
    close(s);
    R("send x to closed peer", send(x, "hi", 2, 0));
    R("send x again", send(x, "hi", 2, 0));
    struct sockaddr_un un = {0};
    un.sun_family = AF_UNSPEC;
    R("dgram disconnect", connect(x, (void *)&un, sizeof un));
    R("big dgram", send(y, buf, 300000, 0));
    close(x);
    close(y);
    close(r);
    unlink(path);
    /* seqpacket records */
    int sv[2];
    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
    send(sv[0], "rec1", 4, 0);
    send(sv[0], "record2", 7, 0);
    R("seqpacket recv 10", recv(sv[1], buf, 10, 0));
    R("seqpacket recv 3 trunc", recv(sv[1], buf, 3, MSG_TRUNC));
    close(sv[0]);
    R("seqpacket EOF", recv(sv[1], buf, 10, 0));
    R("seqpacket send to closed", send(sv[1], "x", 1, MSG_NOSIGNAL));
    close(sv[1]);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    setvbuf(stdout, NULL, _IOLBF, 0);
    pairs();
    errors();
    options();
    rights();
    creds();
    stream_server(dir, 0);
    stream_server(dir, 1);
    dgrams(dir);
    return finish();
}
