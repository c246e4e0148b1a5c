/*
 * streamfuzz: argv[2] pseudo-random I/O calls (seed argv[1]) on the standard
 * streams and descriptors made from them (dups, reopens through /proc/self/fd),
 * with hostile offsets, sizes, whences, flags and ioctl requests: every call the
 * Sentry answers with a host call on a host stream.  tests/security runs it
 * through `kvmbox run` with the streams as host files, pipes and /dev/null: no
 * call may end kvmbox with "internal error" (exit 125).
 *
 * RLIMIT_FSIZE is set to 1 MiB first and fallocate lengths stay small, so nothing
 * grows a host file much.  Never runs natively (random writes to the streams).
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>

#ifndef SYS_copy_file_range
#define SYS_copy_file_range 326
#endif
#ifndef SYS_preadv2
#define SYS_preadv2 327
#define SYS_pwritev2 328
#endif

static uint64_t state;
static uint64_t next(void)
{
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return state;
}

static const int64_t offsets[] = {0, 1, 5, 4095, 4096, 65536, 1 << 20, (1 << 20) + 1,
                                  (int64_t)1 << 40, (int64_t)1 << 62, INT64_MAX, -1, -4096,
                                  INT64_MIN, 0x7ffff000};
static const uint64_t sizes[] = {0, 1, 3, 4096, 4097, 65536, 1 << 20, (1 << 20) + 7, 0x7ffff000,
                                 0xffffffff, UINT64_MAX, 1ULL << 63};

static int64_t off(void) { return offsets[next() % (sizeof offsets / sizeof offsets[0])]; }
static uint64_t size(void) { return sizes[next() % (sizeof sizes / sizeof sizes[0])]; }

static int fds[32];
static int nfds;

static int anyfd(void)
{
    switch (next() % 8) {
    case 0: return (int)(next() % 8);
    case 1: return -1;
    default: return fds[next() % nfds];
    }
}

static void remember(int fd)
{
    if (fd >= 0 && nfds < 32)
        fds[nfds++] = fd;
    else if (fd >= 3)
        close(fd);
}

int main(int argc, char **argv)
{
    if (!getenv("KVMBOX_SANDBOXED_FUZZ")) {
        fprintf(stderr, "streamfuzz: refusing to run outside the sandbox tests\n");
        return 2;
    }
    state = argc > 1 ? strtoull(argv[1], 0, 0) * 2654435761ULL + 1 : 88172645463325252ULL;
    long n = argc > 2 ? atol(argv[2]) : 2000;
    struct rlimit lim = {1 << 20, 1 << 20};
    setrlimit(RLIMIT_FSIZE, &lim);
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    static char buf[1 << 16];
    memset(buf, 'z', sizeof buf);
    fds[nfds++] = 0;
    fds[nfds++] = 1;
    fds[nfds++] = 2;
    for (long i = 0; i < n; i++) {
        int fd = anyfd();
        uint64_t len = size();
        size_t small = (size_t)(len % sizeof buf);
        struct iovec iov[3] = {{buf, small}, {buf, (size_t)(next() % 64)}, {(void *)(uintptr_t)next(), 8}};
        char path[64];
        switch (next() % 26) {
        case 0: {                      /* reads never wait: at most what poll says is there */
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN))
                (void)!read(fd, buf, small);
            break;
        }
        case 1: (void)!write(fd, buf, small); break;
        case 2: (void)!pread(fd, buf, small, off()); break;
        case 3: (void)!pwrite(fd, buf, small, off()); break;
        case 4: (void)!syscall(SYS_pwrite64, fd, buf, len, off()); break;
        case 5: (void)!writev(fd, iov, (int)(next() % 4)); break;
        case 6: (void)!preadv(fd, iov, 2, off()); break;
        case 7: (void)!pwritev(fd, iov, (int)(next() % 4), off()); break;
        case 8: (void)!syscall(SYS_pwritev2, fd, iov, 2, off(), 0, (int)(next() % 64)); break;
        case 9: (void)!lseek(fd, off(), (int)(next() % 7) - 1); break;
        case 10: (void)!ftruncate(fd, off()); break;
        case 11: (void)!fallocate(fd, (int)(next() % 4), off() & ((1 << 22) - 1),
                                  (off_t)(len % (1 << 20))); break;
        case 12: fsync(fd); fdatasync(fd); break;
        case 13: (void)!posix_fadvise(fd, off(), off(), (int)(next() % 7)); break;
        case 14: (void)!sendfile(anyfd(), fd, next() % 2 ? NULL : (off_t[]){off()}, small); break;
        case 15: (void)!syscall(SYS_copy_file_range, fd, NULL, anyfd(), NULL, small, 0); break;
        case 16: {
            void *p = mmap(NULL, 8192, (int)(next() % 8), next() % 2 ? MAP_SHARED : MAP_PRIVATE,
                           fd, (off_t)(next() % 3) * 4096);
            if (p != MAP_FAILED) {
                if (next() % 2)
                    msync(p, 8192, MS_SYNC);
                munmap(p, 8192);
            }
            break;
        }
        case 17: {
            struct stat st;
            fstat(fd, &st);
            break;
        }
        case 18: fcntl(fd, F_SETFL, (int)next()); break;
        case 19: remember(fcntl(fd, next() % 2 ? F_DUPFD : F_DUPFD_CLOEXEC, (int)(next() % 40))); break;
        case 20: {
            static const unsigned long reqs[] = {TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX,
                                                 0x5402 /* TCSETS */, 0x5412 /* TIOCSTI */};
            int arg[64] = {0};
            ioctl(fd, next() % 2 ? reqs[next() % 7] : (unsigned long)next(), next() % 4 ? arg : (void *)1);
            break;
        }
        case 21:
            snprintf(path, sizeof path, "%s/%d", next() % 2 ? "/proc/self/fd" : "/dev/fd", (int)(next() % 6));
            remember(open(path, (int)(next() & 0x3fffff & ~O_CREAT)));
            break;
        case 22: {
            static const char *names[] = {"/dev/stdin", "/dev/stdout", "/dev/stderr"};
            remember(open(names[next() % 3], (int)(next() % 4) | (next() % 2 ? O_TRUNC : 0) |
                                              (next() % 2 ? O_APPEND : 0)));
            break;
        }
        case 23: flock(fd, (int)(next() % 16)); break;
        case 24: {
            struct flock fl = {(short)(next() % 3), (short)(next() % 3), off(), off(), 0};
            fcntl(fd, (int)(next() % 2) ? F_SETLK : F_GETLK, &fl);
            break;
        }
        case 25: {
            char lbuf[256];
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            (void)!readlink(path, lbuf, sizeof lbuf);
            struct stat st;
            stat(path, &st);
            break;
        }
        }
    }
    return 0;
}
