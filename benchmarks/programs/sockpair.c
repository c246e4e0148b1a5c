/*
 * An AF_UNIX socketpair between a parent and a forked child.  argv[1] COUNT, argv[2] MODE:
 *   tput: the parent writes COUNT blocks of 64 KiB, the child reads until EOF;
 *   rr:   COUNT request/response round trips of 64 bytes each way.
 */
#include "bench.h"
#include <string.h>
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

int main(int argc, char **argv)
{
    long count = arg_count(argc, argv, 100);
    int rr = argc > 2 && strcmp(argv[2], "rr") == 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
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
