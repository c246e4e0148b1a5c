/*
 * ioctl TCGETS and TIOCGWINSZ on fds 0, 1 and 2. Prints only success or
 * the errno name: with the harness's pipes every one is ENOTTY.
 */
#include "common.h"
#include <sys/ioctl.h>

#ifndef TCGETS
#define TCGETS 0x5401
#endif
#ifndef TIOCGWINSZ
#define TIOCGWINSZ 0x5413
#endif

static void try_ioctl(int fd, unsigned long req, const char *name)
{
    unsigned char buf[128];
    errno = 0;
    long r = syscall(SYS_ioctl, fd, req, buf);
    printf("fd %d %s: %s\n", fd, name, r == 0 ? "ok" : errname(errno));
}

int main(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        try_ioctl(fd, TCGETS, "TCGETS");
        try_ioctl(fd, TIOCGWINSZ, "TIOCGWINSZ");
    }
    printf("isatty(0) %d isatty(1) %d isatty(2) %d\n", isatty(0), isatty(1), isatty(2));
    errno = 0;
    check_err(syscall(SYS_ioctl, 99, TCGETS, (char[64]){0}), EBADF, "ioctl(99, TCGETS)");
    errno = 0;
    check_err(syscall(SYS_ioctl, -1, TIOCGWINSZ, (char[64]){0}), EBADF, "ioctl(-1, TIOCGWINSZ)");
    return finish();
}
