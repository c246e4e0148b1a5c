/*
 * A connected stream between a parent and a forked child.  argv[1] COUNT, argv[2] MODE:
 *   tput: the parent writes COUNT blocks of 64 KiB, the child reads until EOF;
 *   rr:   COUNT request/response round trips of 64 bytes each way.
 * argv[3] TRANSPORT: "unix" (default) an AF_UNIX socketpair; "tcp" a TCP connection over
 * 127.0.0.1 (listener on an ephemeral port, TCP_NODELAY on both ends, as a
 * request/response protocol sets it).  Only loopback is ever touched.
 */
#include "bench.h"
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK 65536

static char buf[BLOCK];

static int full(int fd, char *p, size_t n, int writing)
{
    while (n) {
        ssize_t k = writing ? write(fd, p, n) : read(fd, p, n);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* A TCP connection over 127.0.0.1: sv[0] the connecting end, sv[1] the accepted one. */
static int tcp_pair(int sv[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &len))
        return -1;
    sv[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (sv[0] < 0 || connect(sv[0], (struct sockaddr *)&a, sizeof a))
        return -1;
    sv[1] = accept(l, NULL, NULL);
    close(l);
    if (sv[1] < 0)
        return -1;
    setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

int main(int argc, char **argv)
{
    long count = arg_count(argc, argv, 100);
    int rr = argc > 2 && strcmp(argv[2], "rr") == 0;
    int sv[2];
    int tcp = argc > 3 && strcmp(argv[3], "tcp") == 0;
    if (tcp ? tcp_pair(sv) : socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        if (rr) {
            for (long i = 0; i < count; i++)
                if (full(sv[1], buf, 64, 0) || full(sv[1], buf, 64, 1))
                    _exit(1);
        } else {
            while (read(sv[1], buf, BLOCK) > 0)
                ;
        }
        _exit(0);
    }
    close(sv[1]);
    for (long i = 0; i < count; i++) {
        if (rr ? full(sv[0], buf, 64, 1) || full(sv[0], buf, 64, 0) : full(sv[0], buf, BLOCK, 1))
            return 1;
    }
    close(sv[0]);
    int st;
    waitpid(pid, &st, 0);
    printf("%s %ld\n", rr ? "round trips" : "blocks", count);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
