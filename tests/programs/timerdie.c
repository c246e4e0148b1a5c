/*
 * Timer signals that end the program, one way per run (argv[1]):
 *   alarm         alarm(1), then pause(): SIGALRM's default action
 *   vtalrm, prof  ITIMER_VIRTUAL / ITIMER_PROF of 100 ms, then a user-mode spin
 *   posix         a POSIX timer with the default sigevent (SIGALRM), then a spin
 *   rlimit        RLIMIT_CPU 1 s soft, 2 s hard, SIGXCPU caught: one SIGXCPU past the
 *                 soft limit (which Linux raises by a second), then SIGKILL at the hard one
 *   rlimit-soft   RLIMIT_CPU 1 s soft only, SIGXCPU not caught: its default action
 */
#include "common.h"
#include <signal.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/time.h>

static void on_xcpu(int s)
{
    (void)s;
    struct rlimit r;
    getrlimit(RLIMIT_CPU, &r);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "SIGXCPU, soft limit now %ld\n", (long)r.rlim_cur);
    write(1, buf, n);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    printf("%s\n", mode);
    fflush(stdout);
    if (!strcmp(mode, "alarm")) {
        alarm(1);
        pause();
    } else if (!strcmp(mode, "vtalrm") || !strcmp(mode, "prof")) {
        struct itimerval v = {{0, 0}, {0, 100000}};
        setitimer(mode[0] == 'v' ? ITIMER_VIRTUAL : ITIMER_PROF, &v, NULL);
    } else if (!strcmp(mode, "posix")) {
        int id;
        struct itimerspec it = {{0, 0}, {0, 50000000}};
        syscall(SYS_timer_create, CLOCK_MONOTONIC, NULL, &id);
        syscall(SYS_timer_settime, id, 0, &it, NULL);
    } else if (!strcmp(mode, "rlimit") || !strcmp(mode, "rlimit-soft")) {
        struct rlimit r = {1, mode[6] ? RLIM_INFINITY : 2};
        if (!mode[6])
            signal(SIGXCPU, on_xcpu);
        check(setrlimit(RLIMIT_CPU, &r) == 0, "setrlimit");
        fflush(stdout);
    } else {
        printf("unknown mode\n");
        return 2;
    }
    for (volatile unsigned long i = 0;; i++) {}
}
