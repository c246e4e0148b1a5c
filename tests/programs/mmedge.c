/*
 * mmedge: memory-manager edge cases the fuzzer (memfuzz.c) found, one section
 * each, every answer printed (errnos, probe outcomes), never an address.
 * argv[1]: a directory for the files mapped (the harness gives /dev/shm).
 */
#include "common.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#define PG 4096L

static sigjmp_buf env;
static volatile int armed;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (!armed)
        _exit(3);
    armed = 0;
    siglongjmp(env, sig << 8 | si->si_code);
}

/* "ok", "SEGV<code>" or "BUS<code>" for a one-byte read (write=0) or write at p. */
static const char *touch(volatile char *p, int write)
{
    static char buf[16];
    int r = sigsetjmp(env, 0);
    if (r) {
        snprintf(buf, sizeof buf, "%s%d", r >> 8 == SIGBUS ? "BUS" : "SEGV", r & 0xff);
        return buf;
    }
    armed = 1;
    if (write)
        *p = 1;
    else
        (void)*p;
    armed = 0;
    return "ok";
}

static const char *ret(long r)
{
    return r == -1 ? errname(errno) : "ok";
}

static int make_file(const char *dir, const char *name, long size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/mmedge-%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    unlink(path);
    if (fd < 0 || ftruncate(fd, size) != 0)
        return -1;
    return fd;
}

/* PROT_WRITE alone reads as well on x86: faults, and the kernel's copies from it. */
static void write_only(void)
{
    char *p = mmap(NULL, 4 * PG, PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("write-only: read of a fresh page -> %s\n", touch(p, 0));
    printf("write-only: write -> %s\n", touch(p + PG, 1));
    printf("write-only: read back -> %s, %d\n", touch(p + PG, 0), p[PG]);
    int fds[2];
    if (pipe(fds) == 0) {
        printf("write-only: write(2) from it -> %s\n", ret(write(fds[1], p + 2 * PG, 16)));
        close(fds[0]);
        close(fds[1]);
    }
    munmap(p, 4 * PG);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    (void)dir;
    (void)make_file;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    write_only();
    return finish();
}
