/*
 * Exit with status 42, three ways selected by argv[1]:
 *   (none)      exit(42): stdio flush, then exit_group
 *   exit_group  raw syscall(SYS_exit_group, 42)
 *   exit        raw syscall(SYS_exit, 42): the only thread, so the process ends
 */
#include "common.h"

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "libc";
    printf("exiting with 42 via %s\n", how);
    fflush(stdout);
    if (strcmp(how, "exit_group") == 0)
        syscall(SYS_exit_group, 42);
    else if (strcmp(how, "exit") == 0)
        syscall(SYS_exit, 42);
    exit(42);
}
