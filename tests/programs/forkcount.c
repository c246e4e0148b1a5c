/*
 * Fork until fork fails (or CAP children exist): how many processes a sandbox's
 * pids limit allows (tests/real/test_processes.py).  The children stay alive,
 * blocked on a pipe, until the count is known; then vfork, posix_spawn and
 * clone3 are tried at the limit, everything is reaped, and one more fork must
 * work again.
 *
 * usage: forkcount CAP
 * prints: "forked N, then ERRNO" (or "forked N (cap)"), the errno of each other
 * way to create a process at that point, "reaped N", "fork after reaping: ok".
 */
#define _GNU_SOURCE
#include "common.h"
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/wait.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif

extern char **environ;

/* The parent's side of one way to make a process: "LABEL: ok" and reap the child, or
 * "LABEL: ERRNO"; the child (pid 0) exits at once. */
static void created(const char *label, long pid)
{
    if (pid == 0)
        _exit(0);
    printf("%s: %s\n", label, pid < 0 ? errname(errno) : "ok");
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
    long cap = argc > 1 ? strtol(argv[1], NULL, 10) : 100;
    int p[2];
    if (pipe(p) != 0)
        return perror("pipe"), 1;
    long n = 0;
    int err = 0;
    for (; n < cap; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            char c;
            close(p[1]);
            alarm(60);
            while (read(p[0], &c, 1) < 0 && errno == EINTR) {
            }
            _exit(0);
        }
        if (pid < 0) {
            err = errno;
            break;
        }
    }
    if (n < cap) {
        printf("forked %ld, then %s\n", n, errname(err));
        created("vfork at the limit", vfork());
        char *args[] = {"true", NULL};
        pid_t s;
        int e = posix_spawn(&s, "/bin/true", NULL, NULL, args, environ);
        printf("posix_spawn at the limit: %s\n", errname(e));
        if (e == 0)
            waitpid(s, NULL, 0);
        uint64_t ca[11] = {0};
        ca[4] = SIGCHLD;    /* exit_signal */
        created("clone3 at the limit", syscall(SYS_clone3, ca, sizeof ca));
    } else {
        printf("forked %ld (cap)\n", n);
    }
    fflush(stdout);
    close(p[1]);
    long reaped = 0;
    while (wait(NULL) > 0)
        reaped++;
    printf("reaped %ld\n", reaped);
    created("fork after reaping", fork());
    return 0;
}
