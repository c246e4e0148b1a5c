/*
 * Process round trip: fork, the child _exits at once, the parent waitpids;
 * argv[1] times.  Prints "forked N".
 */
#include "bench.h"
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = arg_count(argc, argv, 100);
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0) {
            printf("fork round %ld failed\n", i);
            return 1;
        }
    }
    printf("forked %ld\n", n);
    return 0;
}
