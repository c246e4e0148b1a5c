/*
 * Fork of a big parent: mmap 256 MiB private, write every 4 KiB page, then
 *   fork_big N        fork N times; each child exits at once and is reaped
 *                     (the time of a fork that must share or copy 65536 pages);
 *   fork_big N hold   fork N children that each read one byte of every page and
 *                     then wait on a pipe while the parent sleeps 1.5 s (host
 *                     memory with N children holding the pages), then reap them.
 * Prints "fork_big N ok".
 */
#include "bench.h"
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIZE (256UL << 20)
#define PAGE 4096UL

int main(int argc, char **argv)
{
    long n = arg_count(argc, argv, 1);
    int hold = argc > 2 && strcmp(argv[2], "hold") == 0;
    volatile unsigned char *p = map_touched(SIZE);
    if (!p)
        return 1;
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            if (!hold)
                _exit(0);
            unsigned long sum = 0;
            for (unsigned long off = 0; off < SIZE; off += PAGE)
                sum += p[off];
            close(fds[1]);
            char c;
            (void)!read(fds[0], &c, 1);
            _exit(sum == 0 ? 2 : 0);
        }
        if (pid < 0) {
            printf("fork %ld failed\n", i);
            return 1;
        }
        if (!hold && waitpid(pid, NULL, 0) != pid)
            return 1;
    }
    if (hold) {
        struct timespec ts = {1, 500000000};
        nanosleep(&ts, NULL);
        close(fds[1]);
        int st, bad = 0;
        while (wait(&st) > 0)
            bad += st != 0;
        if (bad)
            return 1;
    }
    printf("fork_big %ld ok\n", n);
    return 0;
}
