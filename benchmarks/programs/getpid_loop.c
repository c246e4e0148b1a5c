/* Syscall round-trip cost: N raw getpid calls. Prints "getpid N ok". */
#include "bench.h"
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = arg_count(argc, argv, 100000);
    long first = syscall(SYS_getpid), same = 1;
    for (long i = 0; i < n; i++)
        same &= syscall(SYS_getpid) == first;
    printf("getpid %ld %s\n", n, same && first > 0 ? "ok" : "MISMATCH");
    return same ? 0 : 1;
}
