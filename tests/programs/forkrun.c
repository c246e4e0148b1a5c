/*
 * Run a program from a forked child DEPTH levels down (tests/security: the
 * file-system escape programs again, from a child and a child of a child).
 *
 * usage: forkrun DEPTH PROG ARGS...
 * DEPTH 0 execs PROG at once.  Otherwise each level forks, waits for its child
 * and ends as the child ended: the same exit status, or the same signal (as
 * pid 1, which a self-sent default signal cannot kill, 128 + the signal).
 * Prints nothing of its own but errors, on stderr.
 */
#define _GNU_SOURCE
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: forkrun DEPTH PROG ARGS...\n");
        return 2;
    }
    for (int depth = atoi(argv[1]); depth > 0; depth--) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "forkrun: fork: %s\n", errname(errno));
            return 125;
        }
        if (pid == 0)
            continue;
        int st;
        while (waitpid(pid, &st, 0) < 0) {
            if (errno != EINTR) {
                fprintf(stderr, "forkrun: waitpid: %s\n", errname(errno));
                return 125;
            }
        }
        if (WIFEXITED(st))
            return WEXITSTATUS(st);
        signal(WTERMSIG(st), SIG_DFL);
        raise(WTERMSIG(st));
        return 128 + WTERMSIG(st);
    }
    execve(argv[2], argv + 2, environ);
    fprintf(stderr, "forkrun: execve %s: %s\n", argv[2], errname(errno));
    return 127;
}
