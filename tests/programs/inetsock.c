/*
 * AF_INET / AF_INET6 on the loopback only (127.0.0.1 and ::1; never another address: the
 * native run must not send traffic anywhere else): TCP listen/connect/accept4, names,
 * bulk data with a forked peer, MSG_PEEK/DONTWAIT/WAITALL, half-close, reset on close
 * with unread data, EPIPE/SIGPIPE, ECONNREFUSED, EADDRINUSE, SO_REUSEADDR (TIME_WAIT),
 * SO_REUSEPORT, non-blocking connect, v4-mapped peers and IPV6_V6ONLY, options, UDP
 * (sendto/recvfrom, connected, MSG_TRUNC, ECONNREFUSED, boundaries), poll/epoll.
 * Ports are never printed; only relations between them.
 * argv[1]: a section (tcp, errors, opts, udp, more, extra, inherit, queued, backlog,
 * blocking) or nothing for all.
 */
#include "common.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#ifndef SO_DOMAIN
#define SO_DOMAIN 39
#endif
#ifndef SO_PROTOCOL
#define SO_PROTOCOL 38
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
} addr_t;

static const char *ename(int e)
{
    switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EINPROGRESS: return "EINPROGRESS";
    case EALREADY: return "EALREADY";
    case EISCONN: return "EISCONN";
    case ENOTCONN: return "ENOTCONN";
    case ENETUNREACH: return "ENETUNREACH";
    case EDESTADDRREQ: return "EDESTADDRREQ";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ECONNABORTED: return "ECONNABORTED";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    default: return errname(e);
    }
}

static void R(const char *label, long ret)
{
    if (ret < 0)
        printf("%s -> %s\n", label, ename(errno));
    else
        printf("%s = %ld\n", label, ret);
}

static int sigpipes;
static void on_pipe(int sig) { sigpipes++; }

static socklen_t mk(addr_t *a, int fam, int port)
{
    memset(a, 0, sizeof *a);
    if (fam == AF_INET) {
        a->in4.sin_family = AF_INET;
        a->in4.sin_port = htons(port);
        a->in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof a->in4;
    }
    a->in6.sin6_family = AF_INET6;
    a->in6.sin6_port = htons(port);
    a->in6.sin6_addr = in6addr_loopback;
    return sizeof a->in6;
}

static int port_of(const addr_t *a)
{
    return ntohs(a->sa.sa_family == AF_INET ? a->in4.sin_port : a->in6.sin6_port);
}

static const char *ntop(const addr_t *a)
{
    static char buf[2][64];
    static int i;
    i ^= 1;
    if (a->sa.sa_family == AF_INET)
        inet_ntop(AF_INET, &a->in4.sin_addr, buf[i], sizeof buf[i]);
    else if (a->sa.sa_family == AF_INET6)
        inet_ntop(AF_INET6, &a->in6.sin6_addr, buf[i], sizeof buf[i]);
    else
        snprintf(buf[i], sizeof buf[i], "family%d", a->sa.sa_family);
    return buf[i];
}

static int local_port(int s)
{
    addr_t a;
    socklen_t l = sizeof a;
    if (getsockname(s, &a.sa, &l) < 0)
        return -1;
    return port_of(&a);
}

static int peer_port(int s)
{
    addr_t a;
    socklen_t l = sizeof a;
    if (getpeername(s, &a.sa, &l) < 0)
        return -1;
    return port_of(&a);
}

static int geti(int s, int level, int name)
{
    int v = -12345;
    socklen_t l = sizeof v;
    if (getsockopt(s, level, name, &v, &l) < 0)
        return -errno;
    return v;
}

static int seti(int s, int level, int name, int v)
{
    return setsockopt(s, level, name, &v, sizeof v);
}

/* A TCP port no socket of either family holds: the kernel picks it for a dual-stack
 * wildcard bind, which conflicts with every v4 and v6 socket on its port. The socket is
 * closed before it is used; it never listened, so the port is free again at once. */
static int free_port(void)
{
    addr_t a;
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    seti(s, IPPROTO_IPV6, IPV6_V6ONLY, 0);
    memset(&a, 0, sizeof a);
    a.in6.sin6_family = AF_INET6;
    bind(s, &a.sa, sizeof a.in6);
    int p = local_port(s);
    close(s);
    return p;
}

static int pollrev(int fd, int events, int timeout)
{
    struct pollfd p = {fd, events, 0};
    if (poll(&p, 1, timeout) < 0)
        return -1;
    return p.revents;
}

static void pollmask(const char *label, int fd, int timeout)
{
    int r = pollrev(fd, POLLIN | POLLOUT | POLLRDHUP, timeout);
    printf("%s: in %d out %d hup %d rdhup %d err %d\n", label, !!(r & POLLIN), !!(r & POLLOUT),
           !!(r & POLLHUP), !!(r & POLLRDHUP), !!(r & POLLERR));
}

/* A listener on the loopback of `fam`, port 0 (ephemeral); its port in *port. */
static int listener(int fam, int *port)
{
    int l = socket(fam, SOCK_STREAM, 0);
    addr_t a;
    socklen_t n = mk(&a, fam, 0);
    if (bind(l, &a.sa, n) < 0 || listen(l, 16) < 0) {
        printf("listener setup -> %s\n", ename(errno));
        g_failures++;
    }
    *port = local_port(l);
    return l;
}

static int connect_to(int fam, int port, int type)
{
    int c = socket(fam, type, 0);
    addr_t a;
    socklen_t n = mk(&a, fam, port);
    if (connect(c, &a.sa, n) < 0)
        return -errno;
    return c;
}

/* A free port of the loopback: bound, then closed. */
static int closed_port(int fam, int type)
{
    int s = socket(fam, type, 0);
    addr_t a;
    socklen_t n = mk(&a, fam, 0);
    bind(s, &a.sa, n);
    int p = local_port(s);
    close(s);
    return p;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------------------- */

static void tcp_basic(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== tcp %s\n", f);
    int lp;
    int l = listener(fam, &lp);
    check(lp > 0, "%s ephemeral port nonzero", f);
    printf("acceptconn listener %d\n", geti(l, SOL_SOCKET, SO_ACCEPTCONN));
    pollmask("listener before connect", l, 0);
    int c = connect_to(fam, lp, SOCK_STREAM);
    R("connect", c < 0 ? (errno = -c, -1) : 0);
    printf("acceptconn client %d\n", geti(c, SOL_SOCKET, SO_ACCEPTCONN));
    pollmask("listener with a pending connection", l, 1000);
    addr_t pa;
    socklen_t pl = sizeof pa;
    int a = accept4(l, &pa.sa, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    R("accept4", a < 0 ? -1 : 0);
    printf("accepted nonblock %d cloexec %d peer %s len %d\n", !!(fcntl(a, F_GETFL) & O_NONBLOCK),
           !!(fcntl(a, F_GETFD) & FD_CLOEXEC), ntop(&pa), (int)pl);
    check(port_of(&pa) == local_port(c), "accept peer port == client's local port");
    check(peer_port(a) == local_port(c), "getpeername(accepted) == getsockname(client)");
    check(peer_port(c) == lp, "getpeername(client) == listener port");
    check(local_port(a) == lp, "getsockname(accepted) == listener port");
    check(local_port(c) != lp && local_port(c) > 0, "client port distinct and nonzero");
    addr_t n1;
    socklen_t nl = sizeof n1;
    getsockname(c, &n1.sa, &nl);
    printf("client name %s len %d\n", ntop(&n1), (int)nl);
    nl = sizeof n1;
    getpeername(c, &n1.sa, &nl);
    printf("client peer %s len %d\n", ntop(&n1), (int)nl);
    R("getpeername(listener)", getpeername(l, &n1.sa, &nl));
    pollmask("client connected", c, 0);
    pollmask("accepted, nothing sent", a, 0);

    char buf[256];
    R("recv nonblocking accepted, nothing there", recv(a, buf, sizeof buf, 0));
    R("recv MSG_DONTWAIT client", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    R("send hello world", send(c, "hello world", 11, 0));
    pollmask("accepted with data", a, 1000);
    long n = recv(a, buf, 5, MSG_PEEK);
    printf("peek %ld '%.*s'\n", n, (int)(n > 0 ? n : 0), buf);
    n = recv(a, buf, sizeof buf, 0);
    printf("recv %ld '%.*s'\n", n, (int)(n > 0 ? n : 0), buf);
    R("write 3", write(a, "xyz", 3));
    n = read(c, buf, sizeof buf);
    printf("read %ld '%.*s'\n", n, (int)(n > 0 ? n : 0), buf);

    /* MSG_WAITALL across three sends from a child */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 3; i++) {
            usleep(20000);
            send(a, "abc" + 0, 3, 0);
        }
        _exit(0);
    }
    n = recv(c, buf, 9, MSG_WAITALL);
    printf("waitall %ld\n", n);
    waitpid(pid, NULL, 0);

    /* 1 MiB to a forked reader, which answers with the sum */
    size_t big = 1 << 20;
    unsigned char *data = malloc(big);
    unsigned long long sum = 0;
    for (size_t i = 0; i < big; i++) {
        data[i] = (unsigned char)(i * 7 + (i >> 11));
        sum += data[i] * (i % 13 + 1);
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        fcntl(a, F_SETFL, 0);
        unsigned long long s = 0;
        size_t got = 0;
        unsigned char rb[65536];
        while (got < big) {
            long r = recv(a, rb, sizeof rb, 0);
            if (r <= 0)
                break;
            for (long i = 0; i < r; i++, got++)
                s += rb[i] * (got % 13 + 1);
        }
        send(a, &s, sizeof s, 0);
        send(a, &got, sizeof got, 0);
        _exit(0);
    }
    R("send 1 MiB", send(c, data, big, 0));
    unsigned long long rsum = 0;
    size_t rgot = 0;
    recv(c, &rsum, sizeof rsum, MSG_WAITALL);
    recv(c, &rgot, sizeof rgot, MSG_WAITALL);
    waitpid(pid, NULL, 0);
    check(rgot == big, "peer got 1 MiB");
    check(rsum == sum, "peer's checksum matches");
    free(data);

    /* half-close */
    R("shutdown(client, SHUT_WR)", shutdown(c, SHUT_WR));
    pollmask("accepted after the peer's SHUT_WR", a, 1000);
    R("recv EOF", recv(a, buf, sizeof buf, 0));
    R("send back after peer's SHUT_WR", send(a, "back", 4, 0));
    n = recv(c, buf, sizeof buf, 0);
    printf("client reads %ld '%.*s'\n", n, (int)(n > 0 ? n : 0), buf);
    R("client send after SHUT_WR, MSG_NOSIGNAL", send(c, "x", 1, MSG_NOSIGNAL));
    struct tcp_info ti;
    socklen_t til = sizeof ti;
    if (getsockopt(c, IPPROTO_TCP, TCP_INFO, &ti, &til) == 0)
        printf("tcp_info state client %d\n", ti.tcpi_state);
    til = sizeof ti;
    if (getsockopt(a, IPPROTO_TCP, TCP_INFO, &ti, &til) == 0)
        printf("tcp_info state accepted %d\n", ti.tcpi_state);
    R("shutdown(accepted, SHUT_WR)", shutdown(a, SHUT_WR));
    pollmask("client after both shut", c, 1000);
    R("client recv EOF", recv(c, buf, sizeof buf, 0));
    close(a);
    close(c);

    /* close with unread data: reset */
    c = connect_to(fam, lp, SOCK_STREAM);
    a = accept(l, NULL, NULL);
    R("send unread", send(c, "unread", 6, 0));
    pollrev(a, POLLIN, 1000);
    close(a);
    pollmask("client after the peer closed with unread data", c, 1000);
    int soe = geti(c, SOL_SOCKET, SO_ERROR);
    printf("so_error after reset %s\n", ename(soe));
    R("recv after SO_ERROR was read", recv(c, buf, sizeof buf, 0));
    close(c);
    c = connect_to(fam, lp, SOCK_STREAM);
    a = accept(l, NULL, NULL);
    send(c, "unread", 6, 0);
    pollrev(a, POLLIN, 1000);
    close(a);
    pollrev(c, POLLERR, 1000);
    R("recv after reset", recv(c, buf, sizeof buf, 0));
    R("recv again", recv(c, buf, sizeof buf, 0));
    R("send MSG_NOSIGNAL after reset", send(c, "x", 1, MSG_NOSIGNAL));
    set_handler(SIGPIPE, on_pipe, 0);
    sigpipes = 0;
    R("send after reset", send(c, "x", 1, 0));
    printf("sigpipes %d\n", sigpipes);
    {
        addr_t rn;
        socklen_t rl = sizeof rn;
        getsockname(c, &rn.sa, &rl);
        printf("reset socket still named %s port %d\n", ntop(&rn), port_of(&rn) > 0);
        int b = socket(fam, SOCK_STREAM, 0);
        R("bind the reset socket's port (the reset freed it)", bind(b, &rn.sa, rl));
        close(b);
    }
    close(c);

    /* peer closes cleanly: EOF, then a send is answered by a reset */
    c = connect_to(fam, lp, SOCK_STREAM);
    a = accept(l, NULL, NULL);
    close(a);
    pollmask("client after the peer's clean close", c, 1000);
    R("recv EOF after clean close", recv(c, buf, sizeof buf, 0));
    R("send to closed peer", send(c, "x", 1, MSG_NOSIGNAL));
    pollrev(c, POLLERR, 1000);
    pollmask("client after its send was reset", c, 0);
    R("send again", send(c, "x", 1, MSG_NOSIGNAL));
    close(c);
    set_handler(SIGPIPE, SIG_DFL, 0);

    close(l);
    int cr = connect_to(fam, lp, SOCK_STREAM);
    R("connect to the closed listener's port", cr < 0 ? (errno = -cr, -1) : 0);
    if (cr >= 0)
        close(cr);
}

static void tcp_errors(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== tcp errors %s\n", f);
    int p = closed_port(fam, SOCK_STREAM);
    int c = socket(fam, SOCK_STREAM, 0);
    addr_t a, rn;
    socklen_t n = mk(&a, fam, p), rl = sizeof rn;
    R("connect to a closed port", connect(c, &a.sa, n));
    getsockname(c, &rn.sa, &rl);
    printf("after refused: name %s port %d\n", ntop(&rn), port_of(&rn) > 0);
    R("connect again", connect(c, &a.sa, n));
    n = mk(&rn, fam, 0);
    R("bind after refused", bind(c, &rn.sa, n));
    n = mk(&a, fam, p);
    R("connect once more", connect(c, &a.sa, n));
    rl = sizeof rn;
    getsockname(c, &rn.sa, &rl);
    printf("bound, refused: name %s port %d\n", ntop(&rn), port_of(&rn) > 0);
    n = mk(&rn, fam, 0);
    R("bind again after refused (port 0 was never locked)", bind(c, &rn.sa, n));
    n = mk(&rn, fam, local_port(c));
    R("bind a port after refused", bind(c, &rn.sa, n));
    close(c);

    /* EADDRINUSE, SO_REUSEADDR */
    int lp;
    int l = listener(fam, &lp);
    int s = socket(fam, SOCK_STREAM, 0);
    n = mk(&a, fam, lp);
    R("bind the listener's port", bind(s, &a.sa, n));
    seti(s, SOL_SOCKET, SO_REUSEADDR, 1);
    R("bind the listener's port with SO_REUSEADDR", bind(s, &a.sa, n));
    R("bind twice", bind(l, &a.sa, n));
    close(l);
    R("bind after the listener closed", bind(s, &a.sa, n));
    R("bind again -> EINVAL", bind(s, &a.sa, n));
    close(s);

    /* TIME_WAIT: the side that closes first keeps the port */
    l = socket(fam, SOCK_STREAM, 0);
    seti(l, SOL_SOCKET, SO_REUSEADDR, 1);
    n = mk(&a, fam, 0);
    bind(l, &a.sa, n);
    listen(l, 4);
    lp = local_port(l);
    c = connect_to(fam, lp, SOCK_STREAM);
    int acc = accept(l, NULL, NULL);
    close(acc);                     /* active close by the server side */
    pollrev(c, POLLRDHUP, 1000);
    close(c);
    close(l);
    n = mk(&a, fam, lp);
    s = socket(fam, SOCK_STREAM, 0);
    R("rebind after active close, no SO_REUSEADDR", bind(s, &a.sa, n));
    close(s);
    s = socket(fam, SOCK_STREAM, 0);
    seti(s, SOL_SOCKET, SO_REUSEADDR, 1);
    R("rebind after active close, SO_REUSEADDR", bind(s, &a.sa, n));
    R("listen there", listen(s, 4));
    close(s);

    /* SO_REUSEPORT: two listeners share a port */
    int l1 = socket(fam, SOCK_STREAM, 0), l2 = socket(fam, SOCK_STREAM, 0);
    seti(l1, SOL_SOCKET, SO_REUSEPORT, 1);
    seti(l2, SOL_SOCKET, SO_REUSEPORT, 1);
    n = mk(&a, fam, 0);
    R("reuseport bind 1", bind(l1, &a.sa, n));
    n = mk(&a, fam, local_port(l1));
    R("reuseport bind 2", bind(l2, &a.sa, n));
    R("listen 1", listen(l1, 8));
    R("listen 2", listen(l2, 8));
    int l3 = socket(fam, SOCK_STREAM, 0);
    R("third bind without SO_REUSEPORT", bind(l3, &a.sa, n));
    close(l3);
    int cs[6], got = 0;
    for (int i = 0; i < 6; i++)
        cs[i] = connect_to(fam, local_port(l1), SOCK_STREAM);
    fcntl(l1, F_SETFL, O_NONBLOCK);
    fcntl(l2, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 12; i++) {
        int x = accept(i % 2 ? l2 : l1, NULL, NULL);
        if (x >= 0) {
            got++;
            close(x);
        }
    }
    printf("reuseport accepted %d of 6\n", got);
    for (int i = 0; i < 6; i++)
        if (cs[i] >= 0)
            close(cs[i]);
    close(l1);
    close(l2);

    /* non-blocking connect */
    l = listener(fam, &lp);
    c = socket(fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
    n = mk(&a, fam, lp);
    int r = connect(c, &a.sa, n);
    printf("nonblocking connect: %s\n", r == 0 || errno == EINPROGRESS ? "0 or EINPROGRESS" : ename(errno));
    int rev = pollrev(c, POLLOUT, 1000);
    printf("pollout %d err %d\n", !!(rev & POLLOUT), !!(rev & POLLERR));
    printf("so_error %s\n", ename(geti(c, SOL_SOCKET, SO_ERROR)));
    R("connect again", connect(c, &a.sa, n));
    R("and again", connect(c, &a.sa, n));
    acc = accept(l, NULL, NULL);
    R("accept after the nonblocking connect", acc < 0 ? -1 : 0);
    close(acc);
    close(c);
    close(l);

    p = closed_port(fam, SOCK_STREAM);
    c = socket(fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
    n = mk(&a, fam, p);
    r = connect(c, &a.sa, n);
    printf("nonblocking connect to a closed port: %s\n",
           r < 0 && (errno == EINPROGRESS || errno == ECONNREFUSED) ? "EINPROGRESS or ECONNREFUSED"
                                                                    : ename(r < 0 ? errno : 0));
    if (r < 0 && errno == EINPROGRESS) {
        rev = pollrev(c, POLLOUT, 1000);
        printf("pollout %d err %d hup %d\n", !!(rev & POLLOUT), !!(rev & POLLERR), !!(rev & POLLHUP));
        printf("so_error %s\n", ename(geti(c, SOL_SOCKET, SO_ERROR)));
        printf("so_error again %s\n", ename(geti(c, SOL_SOCKET, SO_ERROR)));
    } else {
        printf("pollout 1 err 0 hup 1\nso_error ECONNREFUSED\nso_error again 0\n");
    }
    R("connect after the error was read", connect(c, &a.sa, n));
    r = connect(c, &a.sa, n);
    printf("and again: %s\n", r < 0 && (errno == EINPROGRESS || errno == ECONNREFUSED) ?
           "EINPROGRESS or ECONNREFUSED" : ename(r < 0 ? errno : 0));
    pollrev(c, POLLOUT, 1000);
    R("connect without reading SO_ERROR", connect(c, &a.sa, n));
    close(c);

    /* short address buffers: truncated, the full length returned */
    l = listener(fam, &lp);
    c = connect_to(fam, lp, SOCK_STREAM);
    addr_t big;
    memset(&big, 0x55, sizeof big);
    socklen_t bl = 6;
    acc = accept(l, &big.sa, &bl);
    printf("accept with a 6-byte buffer: len %d family ok %d untouched after %d\n", (int)bl,
           big.sa.sa_family == fam, ((unsigned char *)&big)[6] == 0x55);
    bl = 3;
    memset(&big, 0x55, sizeof big);
    getsockname(c, &big.sa, &bl);
    printf("getsockname with 3 bytes: len %d untouched after %d\n", (int)bl, ((unsigned char *)&big)[3] == 0x55);
    bl = 0;
    R("getpeername with 0 bytes", getpeername(c, &big.sa, &bl));
    printf("len %d\n", (int)bl);
    close(acc);
    close(c);
    close(l);

    /* shutdown/recv/send on unconnected sockets */
    s = socket(fam, SOCK_STREAM, 0);
    R("shutdown unconnected", shutdown(s, SHUT_RDWR));
    R("send unconnected", send(s, "x", 1, MSG_NOSIGNAL));
    char b[4];
    R("recv unconnected", recv(s, b, sizeof b, 0));
    R("getpeername unconnected", peer_port(s));
    close(s);
}

static void v4mapped(void)
{
    printf("== v4-mapped\n");
    for (int only = 0; only < 2; only++) {
        int l = socket(AF_INET6, SOCK_STREAM, 0);
        R("set IPV6_V6ONLY", seti(l, IPPROTO_IPV6, IPV6_V6ONLY, only));
        printf("v6only %d\n", geti(l, IPPROTO_IPV6, IPV6_V6ONLY));
        addr_t a;
        memset(&a, 0, sizeof a);
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_addr = in6addr_any;
        bind(l, &a.sa, sizeof a.in6);
        listen(l, 4);
        int lp = local_port(l);
        int c = connect_to(AF_INET, lp, SOCK_STREAM);
        R("v4 connect to the v6 listener", c < 0 ? (errno = -c, -1) : 0);
        if (c >= 0) {
            addr_t pa;
            socklen_t pl = sizeof pa;
            int x = accept(l, &pa.sa, &pl);
            printf("accepted peer %s len %d port ok %d\n", ntop(&pa), (int)pl, port_of(&pa) == local_port(c));
            pl = sizeof pa;
            getsockname(x, &pa.sa, &pl);
            printf("accepted name %s\n", ntop(&pa));
            R("v4 mapped send", send(c, "m", 1, 0));
            char ch = 0;
            R("v4 mapped recv", recv(x, &ch, 1, 0));
            close(x);
            close(c);
        }
        c = connect_to(AF_INET6, lp, SOCK_STREAM);
        R("v6 connect to the v6 listener", c < 0 ? (errno = -c, -1) : 0);
        if (c >= 0)
            close(c);
        R("set IPV6_V6ONLY after bind", seti(l, IPPROTO_IPV6, IPV6_V6ONLY, !only));
        close(l);
    }
    /* a v6 listener bound to ::ffff:127.0.0.1 takes v4 clients only */
    {
        int m = socket(AF_INET6, SOCK_STREAM, 0);
        addr_t ma;
        memset(&ma, 0, sizeof ma);
        ma.in6.sin6_family = AF_INET6;
        inet_pton(AF_INET6, "::ffff:127.0.0.1", &ma.in6.sin6_addr);
        R("v6 bind ::ffff:127.0.0.1", bind(m, &ma.sa, sizeof ma.in6));
        listen(m, 2);
        socklen_t ml = sizeof ma;
        getsockname(m, &ma.sa, &ml);
        printf("its name %s\n", ntop(&ma));
        int mc = connect_to(AF_INET, port_of(&ma), SOCK_STREAM);
        R("v4 client", mc < 0 ? (errno = -mc, -1) : 0);
        if (mc >= 0)
            close(mc);
        mc = connect_to(AF_INET6, port_of(&ma), SOCK_STREAM);
        R("v6 client to ::1", mc < 0 ? (errno = -mc, -1) : 0);
        if (mc >= 0)
            close(mc);
        close(m);
        m = socket(AF_INET6, SOCK_STREAM, 0);
        seti(m, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        R("v6only bind ::ffff:127.0.0.1", bind(m, &ma.sa, sizeof ma.in6));
        close(m);
        /* flowinfo and scope id in names */
        m = socket(AF_INET6, SOCK_DGRAM, 0);
        mk(&ma, AF_INET6, 0);
        ma.in6.sin6_flowinfo = htonl(0x12345);
        ma.in6.sin6_scope_id = 3;
        R("bind ::1 with flowinfo and a scope id", bind(m, &ma.sa, sizeof ma.in6));
        ml = sizeof ma;
        getsockname(m, &ma.sa, &ml);
        printf("name flowinfo %u scope %u\n", ntohl(ma.in6.sin6_flowinfo), ma.in6.sin6_scope_id);
        close(m);
    }

    /* a v6 socket connecting to a v4-mapped address */
    int lp;
    int l = listener(AF_INET, &lp);
    int c = socket(AF_INET6, SOCK_STREAM, 0);
    addr_t a;
    memset(&a, 0, sizeof a);
    a.in6.sin6_family = AF_INET6;
    a.in6.sin6_port = htons(lp);
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &a.in6.sin6_addr);
    R("v6 socket connects to ::ffff:127.0.0.1", connect(c, &a.sa, sizeof a.in6));
    addr_t n1;
    socklen_t nl = sizeof n1;
    getsockname(c, &n1.sa, &nl);
    printf("its name %s len %d\n", ntop(&n1), (int)nl);
    close(c);
    c = socket(AF_INET6, SOCK_STREAM, 0);
    seti(c, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    R("v6only socket connects to ::ffff:127.0.0.1", connect(c, &a.sa, sizeof a.in6));
    close(c);
    c = socket(AF_INET, SOCK_STREAM, 0);
    R("v4 socket given a sockaddr_in6", connect(c, &a.sa, sizeof a.in6));
    close(c);
    close(l);
}

static void opts(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== options %s\n", f);
    int s = socket(fam, SOCK_STREAM, 0);
    printf("type %d domain %d protocol %d acceptconn %d\n", geti(s, SOL_SOCKET, SO_TYPE) == SOCK_STREAM,
           geti(s, SOL_SOCKET, SO_DOMAIN) == fam, geti(s, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP,
           geti(s, SOL_SOCKET, SO_ACCEPTCONN));
    printf("nodelay %d", geti(s, IPPROTO_TCP, TCP_NODELAY));
    seti(s, IPPROTO_TCP, TCP_NODELAY, 5);
    printf(" -> %d\n", geti(s, IPPROTO_TCP, TCP_NODELAY));
    printf("keepalive %d", geti(s, SOL_SOCKET, SO_KEEPALIVE));
    seti(s, SOL_SOCKET, SO_KEEPALIVE, 1);
    printf(" -> %d\n", geti(s, SOL_SOCKET, SO_KEEPALIVE));
    printf("reuseaddr %d", geti(s, SOL_SOCKET, SO_REUSEADDR));
    seti(s, SOL_SOCKET, SO_REUSEADDR, 1);
    printf(" -> %d\n", geti(s, SOL_SOCKET, SO_REUSEADDR));
    printf("keepidle %d keepintvl %d keepcnt %d\n", geti(s, IPPROTO_TCP, TCP_KEEPIDLE),
           geti(s, IPPROTO_TCP, TCP_KEEPINTVL), geti(s, IPPROTO_TCP, TCP_KEEPCNT));
    R("keepidle 0", seti(s, IPPROTO_TCP, TCP_KEEPIDLE, 0));
    seti(s, IPPROTO_TCP, TCP_KEEPIDLE, 30);
    printf("keepidle -> %d\n", geti(s, IPPROTO_TCP, TCP_KEEPIDLE));
    struct linger lg = {1, 5};
    R("set linger", setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    memset(&lg, 0, sizeof lg);
    socklen_t ll = sizeof lg;
    getsockopt(s, SOL_SOCKET, SO_LINGER, &lg, &ll);
    printf("linger %d %d len %d\n", lg.l_onoff, lg.l_linger, (int)ll);
    struct timeval tv = {0, 200000};
    R("set rcvtimeo", setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    tv.tv_sec = 3;
    tv.tv_usec = 0;
    R("set sndtimeo", setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
    socklen_t tl = sizeof tv;
    getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, &tl);
    printf("rcvtimeo %ld %ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
    tl = sizeof tv;
    getsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, &tl);
    printf("sndtimeo %ld %ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
    printf("maxseg unconnected %d\n", geti(s, IPPROTO_TCP, TCP_MAXSEG));
    if (fam == AF_INET6)
        printf("v6only %d\n", geti(s, IPPROTO_IPV6, IPV6_V6ONLY));
    else
        printf("ipv6 level on v4 %s\n", ename(-geti(s, IPPROTO_IPV6, IPV6_V6ONLY)));
    struct tcp_info ti;
    socklen_t til = sizeof ti;
    getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &til);
    printf("tcp_info unconnected state %d\n", ti.tcpi_state);

    int lp;
    int l = listener(fam, &lp);
    til = sizeof ti;
    getsockopt(l, IPPROTO_TCP, TCP_INFO, &ti, &til);
    printf("tcp_info listener state %d\n", ti.tcpi_state);
    addr_t a;
    socklen_t n = mk(&a, fam, lp);
    R("connect with options set", connect(s, &a.sa, n));
    int x = accept(l, NULL, NULL);
    printf("accepted (listener had none): nodelay %d keepalive %d\n", geti(x, IPPROTO_TCP, TCP_NODELAY),
           geti(x, SOL_SOCKET, SO_KEEPALIVE));
    int mss = geti(s, IPPROTO_TCP, TCP_MAXSEG);   /* Linux: bounded by half the peer's window */
    check(mss > 536 && mss < 65536, "maxseg connected above the default");
    til = sizeof ti;
    getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &til);
    printf("tcp_info connected state %d\n", ti.tcpi_state);
    char buf[8];
    double t0 = now();
    R("recv honouring SO_RCVTIMEO", recv(s, buf, sizeof buf, 0));
    double dt = now() - t0;
    check(dt >= 0.15 && dt < 2.0, "the timeout took about 200 ms");
    struct linger off = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, &off, sizeof off);
    close(s);          /* linger {1, 0}: a reset */
    pollrev(x, POLLERR, 1000);
    char b2[4];
    R("recv after the peer's abortive close", recv(x, b2, sizeof b2, 0));
    close(x);
    close(l);
}

static void udp(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== udp %s\n", f);
    int a = socket(fam, SOCK_DGRAM, 0), b = socket(fam, SOCK_DGRAM, 0);
    printf("type %d protocol %d\n", geti(a, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM,
           geti(a, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDP);
    addr_t x;
    socklen_t n = mk(&x, fam, 0);
    R("bind a", bind(a, &x.sa, n));
    R("bind b", bind(b, &x.sa, n));
    int ap = local_port(a), bp = local_port(b);
    check(ap > 0 && bp > 0 && ap != bp, "two ephemeral ports");
    addr_t to;
    socklen_t tn = mk(&to, fam, bp);
    R("sendto 1", sendto(a, "1", 1, 0, &to.sa, tn));
    char big[1000];
    memset(big, 'B', sizeof big);
    R("sendto 1000", sendto(a, big, sizeof big, 0, &to.sa, tn));
    R("sendto 0", sendto(a, "", 0, 0, &to.sa, tn));
    R("sendto 5", sendto(a, "hello", 5, 0, &to.sa, tn));
    pollmask("b with datagrams", b, 1000);
    char buf[2048];
    addr_t from;
    socklen_t fl;
    for (int i = 0; i < 3; i++) {
        fl = sizeof from;
        long r = recvfrom(b, buf, sizeof buf, 0, &from.sa, &fl);
        printf("recvfrom %ld from %s len %d port ok %d\n", r, ntop(&from), (int)fl, port_of(&from) == ap);
    }
    long r = recv(b, buf, 2, MSG_PEEK | MSG_TRUNC);
    printf("peek trunc %ld\n", r);
    struct iovec iov = {buf, 2};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_name = &from;
    m.msg_namelen = sizeof from;
    r = recvmsg(b, &m, 0);
    printf("recvmsg short %ld trunc %d '%.2s' namelen %d\n", r, !!(m.msg_flags & MSG_TRUNC), buf, (int)m.msg_namelen);
    R("recv MSG_DONTWAIT empty", recv(b, buf, sizeof buf, MSG_DONTWAIT));
    R("send unconnected", send(a, "x", 1, 0));
    R("getpeername unconnected", peer_port(a));

    /* connected */
    R("connect a to b", connect(a, &to.sa, tn));
    check(peer_port(a) == bp, "getpeername(a) == b's port");
    R("send connected", send(a, "conn", 4, 0));
    r = recv(b, buf, sizeof buf, 0);
    printf("b got %ld\n", r);
    int c = socket(fam, SOCK_DGRAM, 0);
    addr_t toa;
    socklen_t tan = mk(&toa, fam, ap);
    R("stranger sends to connected a", sendto(c, "z", 1, 0, &toa.sa, tan));
    R("b sends to connected a", sendto(b, "y", 1, 0, &toa.sa, tan));
    pollrev(a, POLLIN, 1000);
    r = recv(a, buf, sizeof buf, MSG_DONTWAIT);
    printf("a got %ld '%.*s'\n", r, (int)(r > 0 ? r : 0), buf);
    R("a has nothing more", recv(a, buf, sizeof buf, MSG_DONTWAIT));
    addr_t un;
    memset(&un, 0, sizeof un);
    un.sa.sa_family = AF_UNSPEC;
    R("disconnect a", connect(a, &un.sa, sizeof un.sa));
    R("getpeername after disconnect", peer_port(a));
    R("send after disconnect", send(a, "x", 1, 0));
    close(c);

    /* ECONNREFUSED on a connected socket */
    int p = closed_port(fam, SOCK_DGRAM);
    int d = socket(fam, SOCK_DGRAM, 0);
    addr_t cl;
    socklen_t cn = mk(&cl, fam, p);
    R("connect to a closed port", connect(d, &cl.sa, cn));
    R("send to the closed port", send(d, "q", 1, 0));
    int rev = pollrev(d, POLLIN, 1000);
    printf("poll after refused: err %d in %d\n", !!(rev & POLLERR), !!(rev & POLLIN));
    R("recv reports it", recv(d, buf, sizeof buf, MSG_DONTWAIT));
    R("recv again", recv(d, buf, sizeof buf, MSG_DONTWAIT));
    R("send again", send(d, "q", 1, 0));
    pollrev(d, POLLIN, 1000);
    R("and the next send reports it", send(d, "q", 1, 0));
    close(d);
    int e = socket(fam, SOCK_DGRAM, 0);
    R("unconnected sendto a closed port", sendto(e, "q", 1, 0, &cl.sa, cn));
    usleep(10000);
    R("no error reported", recv(e, buf, sizeof buf, MSG_DONTWAIT));
    R("sendto port 0", sendto(e, "q", 1, 0, (mk(&cl, fam, 0), &cl.sa), cn));
    close(e);

    /* datagram boundaries with a forked sender */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 1; i <= 5; i++) {
            memset(big, 'a' + i, i * 100);
            sendto(a, big, i * 100, 0, &to.sa, tn);
        }
        _exit(0);
    }
    for (int i = 1; i <= 5; i++) {
        r = recv(b, buf, sizeof buf, 0);
        printf("datagram %d: %ld bytes first '%c'\n", i, r, r > 0 ? buf[0] : '-');
    }
    waitpid(pid, NULL, 0);
    R("shutdown unconnected udp", shutdown(b, SHUT_RD));
    close(a);
    close(b);
}

static void readiness(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== readiness %s\n", f);
    int lp;
    int l = listener(fam, &lp);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {EPOLLIN, {.fd = l}};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    struct epoll_event out[4];
    R("epoll listener idle", epoll_wait(ep, out, 4, 0));
    int c = connect_to(fam, lp, SOCK_STREAM);
    int k = epoll_wait(ep, out, 4, 1000);
    printf("epoll listener with a connection: %d in %d\n", k, k > 0 && (out[0].events & EPOLLIN));
    int x = accept(l, NULL, NULL);
    R("epoll listener after accept", epoll_wait(ep, out, 4, 0));
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.fd = x;
    epoll_ctl(ep, EPOLL_CTL_ADD, x, &ev);
    k = epoll_wait(ep, out, 4, 1000);
    printf("epoll accepted: %d events in %d out %d rdhup %d\n", k, !!(out[0].events & EPOLLIN),
           !!(out[0].events & EPOLLOUT), !!(out[0].events & EPOLLRDHUP));
    R("edge-triggered: nothing new", epoll_wait(ep, out, 4, 0));
    send(c, "e", 1, 0);
    k = epoll_wait(ep, out, 4, 1000);
    printf("epoll after data: %d in %d\n", k, !!(out[0].events & EPOLLIN));
    close(c);
    k = epoll_wait(ep, out, 4, 1000);
    printf("epoll after the peer closed: %d in %d rdhup %d hup %d\n", k, !!(out[0].events & EPOLLIN),
           !!(out[0].events & EPOLLRDHUP), !!(out[0].events & EPOLLHUP));
    pollmask("accepted after the peer closed", x, 0);
    shutdown(x, SHUT_WR);
    pollmask("accepted after both directions closed", x, 0);
    close(x);
    close(ep);
    int s = socket(fam, SOCK_STREAM, 0);
    pollmask("fresh socket", s, 0);
    listen(s, 1);
    pollmask("listening socket (autobound)", s, 0);
    check(local_port(s) > 0, "listen autobinds a port");
    close(s);
    close(l);
}

static void more(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== more %s\n", f);
    char buf[4096];
    addr_t a;
    socklen_t al;

    /* names of unbound sockets; bad addresses */
    int s = socket(fam, SOCK_STREAM, 0);
    al = sizeof a;
    R("getsockname unbound", getsockname(s, &a.sa, &al));
    printf("unbound name %s port %d len %d\n", ntop(&a), port_of(&a), (int)al);
    mk(&a, fam, 0);
    R("bind short address", bind(s, &a.sa, fam == AF_INET ? 15 : 23));
    a.sa.sa_family = fam == AF_INET ? AF_INET6 : AF_INET;
    R("bind wrong family", bind(s, &a.sa, sizeof a.in6));
    a.sa.sa_family = AF_UNIX;
    R("connect wrong family", connect(s, &a.sa, sizeof a.in6));
    R("accept unbound", accept(s, NULL, NULL));
    R("read unconnected", read(s, buf, 4));
    close(s);

    /* a wildcard listener; connect through 127.0.0.2 (v4) */
    s = socket(fam, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sa.sa_family = fam;
    R("bind wildcard", bind(s, &a.sa, fam == AF_INET ? sizeof a.in4 : sizeof a.in6));
    R("listen", listen(s, 4));
    R("listen again (backlog change)", listen(s, 8));
    R("connect a listener", connect(s, (mk(&a, fam, 1), &a.sa), fam == AF_INET ? sizeof a.in4 : sizeof a.in6));
    R("write to a listener", send(s, "x", 1, MSG_NOSIGNAL));
    R("read a listener", read(s, buf, 4));
    int lp = local_port(s);
    int c = connect_to(fam, lp, SOCK_STREAM);
    int x = accept(s, NULL, NULL);
    al = sizeof a;
    getsockname(x, &a.sa, &al);
    printf("accepted from a wildcard listener: name %s\n", ntop(&a));
    R("listen on a connected socket", listen(c, 4));
    R("bind a connected socket", bind(c, (mk(&a, fam, 0), &a.sa), fam == AF_INET ? sizeof a.in4 : sizeof a.in6));

    /* recvfrom on TCP gives no address; sendto's address is ignored; MSG_TRUNC discards */
    send(c, "0123456789", 10, 0);
    pollrev(x, POLLIN, 1000);
    int q = -1;
    R("FIONREAD", ioctl(x, FIONREAD, &q));
    printf("fionread %d\n", q);
    al = sizeof a;
    memset(&a, 0xab, sizeof a);
    long n = recvfrom(x, buf, 3, 0, &a.sa, &al);
    printf("recvfrom %ld addrlen %d\n", n, (int)al);
    n = recv(x, NULL, 3, MSG_TRUNC);
    printf("recv MSG_TRUNC %ld\n", n);
    n = recv(x, buf, sizeof buf, 0);
    printf("then %ld '%.*s'\n", n, (int)(n > 0 ? n : 0), buf);
    mk(&a, fam, 9);
    R("sendto with an address on a connected TCP socket", sendto(c, "ab", 2, 0, &a.sa,
      fam == AF_INET ? sizeof a.in4 : sizeof a.in6));
    n = recv(x, buf, sizeof buf, 0);
    printf("got %ld\n", n);

    /* flow control: fill with MSG_DONTWAIT until EAGAIN, then drain */
    fcntl(x, F_SETFL, O_NONBLOCK);
    while (recv(x, buf, sizeof buf, 0) > 0)
        ;
    long sent = 0, r;
    int eagain = 0;
    for (int i = 0; i < 100000; i++) {
        r = send(c, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0) {
            eagain = errno == EAGAIN;
            break;
        }
        sent += r;
    }
    printf("filled: eagain %d sent > 64 KiB %d\n", eagain, sent > 65536);
    int rev = pollrev(c, POLLOUT, 0);
    printf("pollout when full %d\n", !!(rev & POLLOUT));
    long rcvd = 0;
    for (;;) {
        if (!(pollrev(x, POLLIN, 1000) & POLLIN))
            break;
        r = recv(x, buf, sizeof buf, 0);
        if (r <= 0)
            break;
        rcvd += r;
        if (rcvd == sent)
            break;
    }
    check(rcvd == sent, "drained everything sent");
    rev = pollrev(c, POLLOUT, 1000);
    printf("pollout after draining %d\n", !!(rev & POLLOUT));

    /* both directions at once, non-blocking, driven by poll: 2 MiB each way */
    {
        fcntl(c, F_SETFL, O_NONBLOCK);
        long want = 2 << 20, out[2] = {0, 0}, in[2] = {0, 0};
        unsigned sum_out[2] = {0, 0}, sum_in[2] = {0, 0};
        int fds[2] = {c, x}, rounds = 0;
        char chunk[16384];
        while ((in[0] < want || in[1] < want) && rounds++ < 100000) {
            struct pollfd pf[2];
            for (int i = 0; i < 2; i++) {
                pf[i].fd = fds[i];
                pf[i].events = POLLIN | (out[i] < want ? POLLOUT : 0);
            }
            if (poll(pf, 2, 2000) <= 0)
                break;
            for (int i = 0; i < 2; i++) {
                if (pf[i].revents & POLLOUT) {
                    long k = want - out[i] < (long)sizeof chunk ? want - out[i] : (long)sizeof chunk;
                    for (long j = 0; j < k; j++)
                        chunk[j] = (char)((out[i] + j) * (i + 3));
                    long r2 = send(fds[i], chunk, k, 0);
                    if (r2 > 0) {
                        for (long j = 0; j < r2; j++)
                            sum_out[i] += (unsigned char)chunk[j];
                        out[i] += r2;
                    }
                }
                if (pf[i].revents & POLLIN) {
                    long r2 = recv(fds[i], chunk, sizeof chunk, 0);
                    if (r2 > 0) {
                        for (long j = 0; j < r2; j++)
                            sum_in[i] += (unsigned char)chunk[j];
                        in[i] += r2;
                    }
                }
            }
        }
        check(in[0] == want && in[1] == want, "2 MiB each way through poll");
        check(sum_in[0] == sum_out[1] && sum_in[1] == sum_out[0], "both checksums match");
    }
    close(x);
    close(c);
    close(s);

    /* a TCP socket connecting to its own address (simultaneous open) */
    s = socket(fam, SOCK_STREAM, 0);
    n = mk(&a, fam, 0);
    bind(s, &a.sa, n);
    n = mk(&a, fam, local_port(s));
    R("connect to itself", connect(s, &a.sa, n));
    check(peer_port(s) == local_port(s), "its peer is itself");
    R("send to itself", send(s, "me", 2, 0));
    R("recv from itself", recv(s, buf, sizeof buf, 0));
    R("shutdown SHUT_WR", shutdown(s, SHUT_WR));
    R("its own FIN: EOF", recv(s, buf, sizeof buf, 0));
    close(s);

    /* UDP: size limits, SO_REUSEADDR, FIONREAD */
    int u = socket(fam, SOCK_DGRAM, 0), v = socket(fam, SOCK_DGRAM, 0);
    bind(u, (mk(&a, fam, 0), &a.sa), fam == AF_INET ? sizeof a.in4 : sizeof a.in6);
    int up = local_port(u);
    R("udp bind a used port", bind(v, (mk(&a, fam, up), &a.sa), fam == AF_INET ? sizeof a.in4 : sizeof a.in6));
    close(v);
    v = socket(fam, SOCK_DGRAM, 0);
    seti(u, SOL_SOCKET, SO_REUSEADDR, 1);
    seti(v, SOL_SOCKET, SO_REUSEADDR, 1);
    R("udp bind a used port, SO_REUSEADDR on both", bind(v, (mk(&a, fam, up), &a.sa), fam == AF_INET ? sizeof a.in4 : sizeof a.in6));
    close(v);
    int w = socket(fam, SOCK_DGRAM, 0);
    char *big = malloc(70000);
    memset(big, 'u', 70000);
    mk(&a, fam, up);
    socklen_t an = fam == AF_INET ? sizeof a.in4 : sizeof a.in6;
    int lim = fam == AF_INET ? 65507 : 65527;
    R("udp max payload", sendto(w, big, lim, 0, &a.sa, an));
    R("udp one past it", sendto(w, big, lim + 1, 0, &a.sa, an));
    pollrev(u, POLLIN, 1000);
    q = -1;
    ioctl(u, FIONREAD, &q);
    printf("udp fionread is the datagram's size %d\n", q == lim);
    n = recv(u, big, 70000, 0);
    printf("udp got the max %d\n", n == lim);
    free(big);
    close(w);
    close(u);
}

static void on_alarm(int sig) { (void)sig; }

/* Waits: what ends them (data, EOF, a signal, a timeout, shutdown of a listener). */
static void blocking(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== blocking %s\n", f);
    char buf[4096];
    int lp;
    int l = listener(fam, &lp);

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(50000);
        int c = connect_to(fam, lp, SOCK_STREAM);
        usleep(50000);
        send(c, "late", 4, 0);
        usleep(50000);
        send(c, "abc", 3, 0);
        usleep(50000);
        close(c);
        _exit(0);
    }
    int x = accept(l, NULL, NULL);
    R("blocking accept woken by a connect", x < 0 ? -1 : 0);
    long n = recv(x, buf, sizeof buf, 0);
    printf("blocking recv woken by data %ld\n", n);
    n = recv(x, buf, 10, MSG_WAITALL);
    printf("MSG_WAITALL cut short by EOF %ld\n", n);
    R("then EOF", recv(x, buf, sizeof buf, 0));
    waitpid(pid, NULL, 0);
    close(x);

    /* a signal: EINTR without SA_RESTART; restarted with it */
    int c = connect_to(fam, lp, SOCK_STREAM);
    x = accept(l, NULL, NULL);
    set_handler(SIGALRM, on_alarm, 0);
    struct itimerval it = {{0, 0}, {0, 100000}};
    setitimer(ITIMER_REAL, &it, NULL);
    R("recv interrupted by a signal", recv(x, buf, sizeof buf, 0));
    set_handler(SIGALRM, on_alarm, SA_RESTART);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        usleep(250000);
        send(c, "r", 1, 0);
        _exit(0);
    }
    setitimer(ITIMER_REAL, &it, NULL);
    R("recv restarted after SA_RESTART", recv(x, buf, sizeof buf, 0));
    waitpid(pid, NULL, 0);
    struct timeval tv = {0, 150000};
    setsockopt(x, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setitimer(ITIMER_REAL, &it, NULL);
    R("recv with SO_RCVTIMEO, SA_RESTART signal", recv(x, buf, sizeof buf, 0));
    usleep(100000);
    set_handler(SIGALRM, SIG_DFL, 0);

    /* SO_SNDTIMEO on a full connection */
    long total = 0;
    for (;;) {
        long r = send(c, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0)
            break;
        total += r;
    }
    tv.tv_usec = 200000;
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    double t0 = now();
    R("blocking send on a full connection with SO_SNDTIMEO", send(c, buf, sizeof buf, 0));
    double dt = now() - t0;
    check(dt >= 0.15 && dt < 2.0, "the send timeout took about 200 ms");
    close(c);
    close(x);

    /* two processes wait in accept on one listener; two connects wake both */
    {
        pid_t kids[2];
        for (int i = 0; i < 2; i++) {
            fflush(stdout);
            kids[i] = fork();
            if (kids[i] == 0) {
                alarm(10);
                int y = accept(l, NULL, NULL);
                char ch = 0;
                if (y >= 0)
                    recv(y, &ch, 1, 0);
                _exit(y >= 0 && ch == 'k' ? 0 : 1);
            }
        }
        usleep(50000);
        int cc[2];
        for (int i = 0; i < 2; i++) {
            cc[i] = connect_to(fam, lp, SOCK_STREAM);
            send(cc[i], "k", 1, 0);
        }
        int ok = 0;
        for (int i = 0; i < 2; i++) {
            int st;
            waitpid(kids[i], &st, 0);
            ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
        }
        printf("accepting processes that got a connection: %d of 2\n", ok);
        close(cc[0]);
        close(cc[1]);
    }

    /* two processes wait in recv on one UDP socket; each datagram wakes one */
    {
        int u = socket(fam, SOCK_DGRAM, 0);
        addr_t ua;
        socklen_t un = mk(&ua, fam, 0);
        bind(u, &ua.sa, un);
        un = mk(&ua, fam, local_port(u));
        pid_t kids[2];
        for (int i = 0; i < 2; i++) {
            fflush(stdout);
            kids[i] = fork();
            if (kids[i] == 0) {
                alarm(10);
                char ch = 0;
                long r = recv(u, &ch, 1, 0);
                _exit(r == 1 ? 0 : 1);
            }
        }
        usleep(50000);
        int w = socket(fam, SOCK_DGRAM, 0);
        sendto(w, "1", 1, 0, &ua.sa, un);
        sendto(w, "2", 1, 0, &ua.sa, un);
        int ok = 0;
        for (int i = 0; i < 2; i++) {
            int st;
            waitpid(kids[i], &st, 0);
            ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
        }
        printf("receiving processes that got a datagram: %d of 2\n", ok);
        close(w);
        close(u);
    }

    /* shutdown(SHUT_RD) of a listener wakes a blocked accept */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        usleep(100000);
        shutdown(l, SHUT_RD);
        _exit(0);
    }
    R("accept after the listener was shut down", accept(l, NULL, NULL));
    waitpid(pid, NULL, 0);
    printf("port kept after shutdown %d\n", local_port(l) == lp);
    R("listen again after shutdown", listen(l, 4));
    printf("port kept after listen %d\n", local_port(l) == lp);
    c = connect_to(fam, lp, SOCK_STREAM);
    R("connect to it", c < 0 ? (errno = -c, -1) : 0);
    if (c >= 0)
        close(c);
    close(l);
}

static void show_cmsgs(const char *label, struct msghdr *m)
{
    printf("%s: ctrunc %d", label, !!(m->msg_flags & MSG_CTRUNC));
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        printf(" [level %d type %d len %d", c->cmsg_level, c->cmsg_type, (int)c->cmsg_len);
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            char s1[32], s2[32];
            inet_ntop(AF_INET, &pi.ipi_spec_dst, s1, sizeof s1);
            inet_ntop(AF_INET, &pi.ipi_addr, s2, sizeof s2);
            printf(" ifindex %d spec_dst %s addr %s", pi.ipi_ifindex, s1, s2);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            char s1[64];
            inet_ntop(AF_INET6, &pi.ipi6_addr, s1, sizeof s1);
            printf(" ifindex %d addr %s", pi.ipi6_ifindex, s1);
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) {
            printf(" tos %d", *(unsigned char *)CMSG_DATA(c));
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof v);
            printf(" ttl %d", v);
        }
        printf("]");
    }
    printf("\n");
}

/* Less common paths: dual-stack bind conflicts, 127.0.0.2, SHUT_RD, inheritance, accept
 * timeouts, scatter/gather, sendmmsg/recvmmsg, IP-level options and control messages. */
static void extra(void)
{
    printf("== extra\n");
    char buf[256];
    addr_t a;
    socklen_t al;

    /* dual-stack bind conflicts (TCP). Every port here comes from free_port(), not from a
     * bind to port 0 of the socket under test: a v6-only (or v4) socket's port 0 may be a
     * port that host sockets of the other family hold (TIME_WAIT ones from earlier tests
     * among them), and natively the second bind would then fail for a reason outside this
     * program. */
    for (int only = 0; only < 2; only++) {
        int p = free_port();
        int s6 = socket(AF_INET6, SOCK_STREAM, 0);
        seti(s6, IPPROTO_IPV6, IPV6_V6ONLY, only);
        memset(&a, 0, sizeof a);
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons(p);
        bind(s6, &a.sa, sizeof a.in6);
        int s4 = socket(AF_INET, SOCK_STREAM, 0);
        mk(&a, AF_INET, p);
        printf("v6only %d: ", only);
        R("v4 bind 127.0.0.1 on the port of a v6 wildcard", bind(s4, &a.sa, sizeof a.in4));
        close(s4);
        s4 = socket(AF_INET, SOCK_STREAM, 0);
        a.in4.sin_addr.s_addr = htonl(INADDR_ANY);
        printf("v6only %d: ", only);
        R("v4 bind 0.0.0.0 on the port of a v6 wildcard", bind(s4, &a.sa, sizeof a.in4));
        close(s4);
        close(s6);
    }
    {
        int p = free_port();
        int s4 = socket(AF_INET, SOCK_STREAM, 0);
        mk(&a, AF_INET, p);
        a.in4.sin_addr.s_addr = htonl(INADDR_ANY);
        bind(s4, &a.sa, sizeof a.in4);
        int s6 = socket(AF_INET6, SOCK_STREAM, 0);
        mk(&a, AF_INET6, p);
        R("v6 bind ::1 on the port of a v4 wildcard", bind(s6, &a.sa, sizeof a.in6));
        close(s6);
        s6 = socket(AF_INET6, SOCK_STREAM, 0);
        memset(&a, 0, sizeof a);
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons(p);
        R("v6 bind :: on the port of a v4 wildcard", bind(s6, &a.sa, sizeof a.in6));
        close(s6);
        close(s4);
    }

    /* 127.0.0.2 is on lo too */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    mk(&a, AF_INET, 0);
    a.in4.sin_addr.s_addr = htonl(0x7f000002);
    R("bind 127.0.0.2", bind(l, &a.sa, sizeof a.in4));
    listen(l, 4);
    a.in4.sin_port = htons(local_port(l));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    R("connect 127.0.0.2", connect(c, &a.sa, sizeof a.in4));
    al = sizeof a;
    getsockname(c, &a.sa, &al);
    printf("client name %s\n", ntop(&a));
    al = sizeof a;
    getpeername(c, &a.sa, &al);
    printf("client peer %s\n", ntop(&a));
    mk(&a, AF_INET, local_port(l));
    int c2 = socket(AF_INET, SOCK_STREAM, 0);
    R("connect 127.0.0.1 on that port", connect(c2, &a.sa, sizeof a.in4));
    close(c2);

    /* accepted sockets: O_NONBLOCK never inherited; SO_RCVTIMEO bounds accept */
    fcntl(l, F_SETFL, O_NONBLOCK);
    int x = accept(l, NULL, NULL);
    printf("accepted from a nonblocking listener: nonblock %d\n", !!(fcntl(x, F_GETFL) & O_NONBLOCK));
    R("nonblocking accept, nothing pending", accept(l, NULL, NULL));
    fcntl(l, F_SETFL, 0);
    struct timeval tv = {0, 150000};
    setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double t0 = now();
    R("accept with SO_RCVTIMEO", accept(l, NULL, NULL));
    check(now() - t0 >= 0.1, "accept waited for the timeout");

    /* SHUT_RD on a connected socket: queued data still reads, then EOF */
    send(c, "ab", 2, 0);
    pollrev(x, POLLIN, 1000);
    R("shutdown SHUT_RD", shutdown(x, SHUT_RD));
    pollmask("after SHUT_RD", x, 0);
    R("recv queued data", recv(x, buf, sizeof buf, 0));
    R("recv after SHUT_RD", recv(x, buf, sizeof buf, 0));
    R("send still works", send(x, "w", 1, 0));
    R("peer reads it", recv(c, buf, sizeof buf, 0));

    /* scatter/gather */
    struct iovec iv[3] = {{"one", 3}, {"two", 3}, {"three", 5}};
    struct msghdr m = {0};
    m.msg_iov = iv;
    m.msg_iovlen = 3;
    R("sendmsg 3 iovecs", sendmsg(c, &m, 0));
    char p1[4], p2[32];
    struct iovec ov[2] = {{p1, 4}, {p2, sizeof p2}};
    memset(&m, 0, sizeof m);
    m.msg_iov = ov;
    m.msg_iovlen = 2;
    pollrev(x, POLLIN, 1000);
    long n = recvmsg(x, &m, 0);
    printf("recvmsg %ld '%.4s' '%.*s' flags %d\n", n, p1, (int)(n > 4 ? n - 4 : 0), p2, m.msg_flags);
    close(x);
    close(c);
    close(l);

    /* IP-level options */
    int u4 = socket(AF_INET, SOCK_DGRAM, 0), u6 = socket(AF_INET6, SOCK_DGRAM, 0);
    printf("ttl %d tos %d hops %d\n", geti(u4, IPPROTO_IP, IP_TTL), geti(u4, IPPROTO_IP, IP_TOS),
           geti(u6, IPPROTO_IPV6, IPV6_UNICAST_HOPS));
    seti(u4, IPPROTO_IP, IP_TTL, 7);
    seti(u4, IPPROTO_IP, IP_TOS, 0x10);
    printf("ttl -> %d tos -> %d\n", geti(u4, IPPROTO_IP, IP_TTL), geti(u4, IPPROTO_IP, IP_TOS));
    R("ttl 0", seti(u4, IPPROTO_IP, IP_TTL, 0));
    R("ttl 256", seti(u4, IPPROTO_IP, IP_TTL, 256));
    printf("broadcast %d", geti(u4, SOL_SOCKET, SO_BROADCAST));
    seti(u4, SOL_SOCKET, SO_BROADCAST, 1);
    printf(" -> %d\n", geti(u4, SOL_SOCKET, SO_BROADCAST));

    /* control messages: IP_PKTINFO, IP_RECVTTL, IPV6_RECVPKTINFO */
    mk(&a, AF_INET, 0);
    bind(u4, &a.sa, sizeof a.in4);
    seti(u4, IPPROTO_IP, IP_PKTINFO, 1);
    seti(u4, IPPROTO_IP, IP_RECVTTL, 1);
    seti(u4, IPPROTO_IP, IP_RECVTOS, 1);
    int snd = socket(AF_INET, SOCK_DGRAM, 0);
    seti(snd, IPPROTO_IP, IP_TTL, 9);
    seti(snd, IPPROTO_IP, IP_TOS, 0x20);
    mk(&a, AF_INET, local_port(u4));
    sendto(snd, "pk", 2, 0, &a.sa, sizeof a.in4);
    pollrev(u4, POLLIN, 1000);
    char cbuf[256];
    struct iovec io = {buf, sizeof buf};
    memset(&m, 0, sizeof m);
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    n = recvmsg(u4, &m, 0);
    printf("recvmsg %ld ", n);
    show_cmsgs("v4 cmsgs", &m);
    close(snd);
    mk(&a, AF_INET6, 0);
    bind(u6, &a.sa, sizeof a.in6);
    seti(u6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
    snd = socket(AF_INET6, SOCK_DGRAM, 0);
    mk(&a, AF_INET6, local_port(u6));
    sendto(snd, "pk6", 3, 0, &a.sa, sizeof a.in6);
    pollrev(u6, POLLIN, 1000);
    memset(&m, 0, sizeof m);
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    n = recvmsg(u6, &m, 0);
    printf("recvmsg %ld ", n);
    show_cmsgs("v6 cmsgs", &m);
    close(snd);

    /* a dual-stack UDP socket hears a v4 sender as ::ffff:127.0.0.1 */
    int v4s = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&a, 0, sizeof a);
    a.in6.sin6_family = AF_INET6;
    int dual = socket(AF_INET6, SOCK_DGRAM, 0);
    bind(dual, &a.sa, sizeof a.in6);
    mk(&a, AF_INET, local_port(dual));
    R("v4 sendto a dual-stack socket", sendto(v4s, "d", 1, 0, &a.sa, sizeof a.in4));
    pollrev(dual, POLLIN, 1000);
    al = sizeof a;
    n = recvfrom(dual, buf, sizeof buf, 0, &a.sa, &al);
    printf("dual got %ld from %s len %d\n", n, ntop(&a), (int)al);
    close(v4s);

    /* sendmmsg / recvmmsg */
    mk(&a, AF_INET6, local_port(dual));
    struct mmsghdr mm[3];
    struct iovec mi[3] = {{"m1", 2}, {"mm2", 3}, {"mmm3", 4}};
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 3; i++) {
        mm[i].msg_hdr.msg_iov = &mi[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &a;
        mm[i].msg_hdr.msg_namelen = sizeof a.in6;
    }
    R("sendmmsg", sendmmsg(u6, mm, 3, 0));
    printf("lens %u %u %u\n", mm[0].msg_len, mm[1].msg_len, mm[2].msg_len);
    char rb[3][16];
    addr_t ra[3];
    struct iovec ri[3];
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 3; i++) {
        ri[i].iov_base = rb[i];
        ri[i].iov_len = sizeof rb[i];
        mm[i].msg_hdr.msg_iov = &ri[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &ra[i];
        mm[i].msg_hdr.msg_namelen = sizeof ra[i];
    }
    pollrev(dual, POLLIN, 1000);
    usleep(20000);
    R("recvmmsg", recvmmsg(dual, mm, 3, MSG_DONTWAIT, NULL));
    for (int i = 0; i < 3; i++)
        printf("  %u '%.*s' from %s port ok %d\n", mm[i].msg_len, (int)mm[i].msg_len, rb[i], ntop(&ra[i]),
               port_of(&ra[i]) == local_port(u6));

    /* UDP: SO_ERROR carries ECONNREFUSED; shutdown of a connected socket */
    int p = closed_port(AF_INET, SOCK_DGRAM);
    int d = socket(AF_INET, SOCK_DGRAM, 0);
    mk(&a, AF_INET, p);
    connect(d, &a.sa, sizeof a.in4);
    send(d, "e", 1, 0);
    pollrev(d, POLLIN, 1000);
    printf("udp so_error %s", ename(geti(d, SOL_SOCKET, SO_ERROR)));
    printf(" then %s\n", ename(geti(d, SOL_SOCKET, SO_ERROR)));
    R("udp shutdown SHUT_RD", shutdown(d, SHUT_RD));
    pollmask("udp after SHUT_RD", d, 0);
    R("udp recv after SHUT_RD", recv(d, buf, sizeof buf, MSG_DONTWAIT));
    R("udp blocking recv after SHUT_RD", recv(d, buf, sizeof buf, 0));
    R("udp shutdown SHUT_WR", shutdown(d, SHUT_WR));
    R("udp send after SHUT_WR", send(d, "e", 1, MSG_NOSIGNAL));
    pollmask("udp after SHUT_RDWR", d, 0);
    close(d);
    close(dual);
    close(u4);
    close(u6);
}

/* A full accept queue: a connect waits (Linux drops the SYN and retransmits) until an
 * accept makes room. */
static void backlog(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== backlog %s\n", f);
    int l = socket(fam, SOCK_STREAM, 0);
    addr_t a;
    socklen_t n = mk(&a, fam, 0);
    bind(l, &a.sa, n);
    R("listen backlog 0", listen(l, 0));
    n = mk(&a, fam, local_port(l));
    int c1 = socket(fam, SOCK_STREAM, 0);
    R("first connect", connect(c1, &a.sa, n));
    usleep(20000);
    int c2 = socket(fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(c2, &a.sa, n);
    R("second connect, non-blocking", r);
    pollmask("second while the queue is full", c2, 100);
    R("its peer name", peer_port(c2));
    R("connect again while waiting", connect(c2, &a.sa, n));
    R("send while waiting", send(c2, "w", 1, MSG_NOSIGNAL));
    char wb[4];
    R("recv while waiting", recv(c2, wb, sizeof wb, 0));
    int x1 = accept(l, NULL, NULL);
    check(x1 >= 0 && peer_port(x1) == local_port(c1), "accept gives the first");
    int rev = pollrev(c2, POLLOUT, 5000);
    printf("second connected after the accept: out %d err %d\n", !!(rev & POLLOUT), !!(rev & POLLERR));
    printf("so_error %s\n", ename(geti(c2, SOL_SOCKET, SO_ERROR)));
    pollrev(l, POLLIN, 5000);
    int x2 = accept(l, NULL, NULL);
    check(x2 >= 0 && peer_port(x2) == local_port(c2), "then the second");
    close(x1);
    close(x2);
    close(c1);
    close(c2);
    close(l);
}

/* Connections still in the accept queue when one end goes. */
static void queued(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== queued %s\n", f);
    char buf[64];
    int lp;
    int l = listener(fam, &lp);
    int c = connect_to(fam, lp, SOCK_STREAM);
    send(c, "early", 5, 0);
    usleep(20000);
    close(l);                                   /* never accepted: reset */
    pollmask("client after the listener closed", c, 1000);
    R("client recv", recv(c, buf, sizeof buf, 0));
    close(c);

    l = listener(fam, &lp);
    c = connect_to(fam, lp, SOCK_STREAM);
    send(c, "bye", 3, 0);
    close(c);                                   /* FIN before accept */
    usleep(20000);
    int x = accept(l, NULL, NULL);
    R("accept a connection its client closed", x < 0 ? -1 : 0);
    pollmask("accepted after the client's FIN", x, 0);
    R("recv its data", recv(x, buf, sizeof buf, 0));
    R("then EOF", recv(x, buf, sizeof buf, 0));
    close(x);

    c = connect_to(fam, lp, SOCK_STREAM);
    struct linger lg = {1, 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c);                                   /* RST before accept */
    usleep(20000);
    fcntl(l, F_SETFL, O_NONBLOCK);
    x = accept(l, NULL, NULL);
    R("accept a connection its client reset", x < 0 ? -1 : 0);
    if (x >= 0) {
        pollmask("accepted after the client's reset", x, 0);
        R("recv", recv(x, buf, sizeof buf, 0));
        close(x);
    }
    close(l);
}

/* Options an accepted socket inherits; SO_RCVLOWAT; a dual-stack UDP socket's names. */
static void inherit(int fam)
{
    const char *f = fam == AF_INET ? "v4" : "v6";
    printf("== inherit %s\n", f);
    int l = socket(fam, SOCK_STREAM, 0);
    seti(l, IPPROTO_TCP, TCP_NODELAY, 1);
    seti(l, SOL_SOCKET, SO_KEEPALIVE, 1);
    seti(l, IPPROTO_TCP, TCP_KEEPIDLE, 33);
    seti(l, SOL_SOCKET, SO_REUSEADDR, 1);
    struct linger lg = {1, 7};
    setsockopt(l, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    struct timeval tv = {0, 300000};
    setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    addr_t a;
    socklen_t n = mk(&a, fam, 0);
    bind(l, &a.sa, n);
    listen(l, 4);
    int c = connect_to(fam, local_port(l), SOCK_STREAM);
    int x = accept(l, NULL, NULL);
    memset(&lg, 0, sizeof lg);
    socklen_t ll = sizeof lg;
    getsockopt(x, SOL_SOCKET, SO_LINGER, &lg, &ll);
    socklen_t tl = sizeof tv;
    memset(&tv, 0, sizeof tv);
    getsockopt(x, SOL_SOCKET, SO_RCVTIMEO, &tv, &tl);
    printf("accepted: nodelay %d keepalive %d keepidle %d reuseaddr %d linger %d %d rcvtimeo %ld\n",
           geti(x, IPPROTO_TCP, TCP_NODELAY), geti(x, SOL_SOCKET, SO_KEEPALIVE),
           geti(x, IPPROTO_TCP, TCP_KEEPIDLE), geti(x, SOL_SOCKET, SO_REUSEADDR), lg.l_onoff,
           lg.l_linger, (long)tv.tv_usec);

    /* SO_RCVLOWAT: readable only with that many bytes */
    R("set SO_RCVLOWAT 5", seti(x, SOL_SOCKET, SO_RCVLOWAT, 5));
    printf("rcvlowat %d\n", geti(x, SOL_SOCKET, SO_RCVLOWAT));
    send(c, "abc", 3, 0);
    usleep(20000);
    pollmask("3 bytes under a low-water mark of 5", x, 0);
    char buf[16];
    R("recv MSG_DONTWAIT", recv(x, buf, sizeof buf, MSG_DONTWAIT));
    send(c, "abcdef", 6, 0);
    usleep(20000);
    pollmask("6 bytes", x, 0);
    R("recv", recv(x, buf, sizeof buf, 0));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 3; i++) {
            usleep(30000);
            send(c, "xy", 2, 0);
        }
        _exit(0);
    }
    R("blocking recv waits for 5 bytes", recv(x, buf, sizeof buf, 0));
    waitpid(pid, NULL, 0);
    R("the rest", recv(x, buf, sizeof buf, MSG_DONTWAIT));
    close(x);
    close(c);
    close(l);

    /* UDP on a v6 socket to a v4-mapped address */
    if (fam == AF_INET6) {
        int u4 = socket(AF_INET, SOCK_DGRAM, 0);
        n = mk(&a, AF_INET, 0);
        bind(u4, &a.sa, n);
        int u6 = socket(AF_INET6, SOCK_DGRAM, 0);
        memset(&a, 0, sizeof a);
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons(local_port(u4));
        inet_pton(AF_INET6, "::ffff:127.0.0.1", &a.in6.sin6_addr);
        R("v6 udp connects to ::ffff:127.0.0.1", connect(u6, &a.sa, sizeof a.in6));
        addr_t nm;
        socklen_t nl = sizeof nm;
        getsockname(u6, &nm.sa, &nl);
        printf("its name %s len %d\n", ntop(&nm), (int)nl);
        R("send", send(u6, "m", 1, 0));
        nl = sizeof nm;
        pollrev(u4, POLLIN, 1000);
        long r = recvfrom(u4, buf, sizeof buf, 0, &nm.sa, &nl);
        printf("v4 socket got %ld from %s port ok %d\n", r, ntop(&nm), port_of(&nm) == local_port(u6));
        close(u4);
        close(u6);
    }
}

int main(int argc, char **argv)
{
    const char *sec = argc > 1 ? argv[1] : "all";
    int all = !strcmp(sec, "all");
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (all || !strcmp(sec, "tcp")) {
        tcp_basic(AF_INET);
        tcp_basic(AF_INET6);
    }
    if (all || !strcmp(sec, "errors")) {
        tcp_errors(AF_INET);
        tcp_errors(AF_INET6);
        v4mapped();
    }
    if (all || !strcmp(sec, "opts")) {
        opts(AF_INET);
        opts(AF_INET6);
        readiness(AF_INET);
        readiness(AF_INET6);
    }
    if (all || !strcmp(sec, "udp")) {
        udp(AF_INET);
        udp(AF_INET6);
    }
    if (all || !strcmp(sec, "more")) {
        more(AF_INET);
        more(AF_INET6);
    }
    if (all || !strcmp(sec, "extra"))
        extra();
    if (all || !strcmp(sec, "inherit")) {
        inherit(AF_INET);
        inherit(AF_INET6);
    }
    if (all || !strcmp(sec, "queued")) {
        queued(AF_INET);
        queued(AF_INET6);
    }
    if (all || !strcmp(sec, "backlog")) {
        backlog(AF_INET);
        backlog(AF_INET6);
    }
    if (all || !strcmp(sec, "blocking")) {
        blocking(AF_INET);
        blocking(AF_INET6);
    }
    return finish();
}
