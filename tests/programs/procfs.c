/*
 * /proc and /dev as a program sees them: /proc/self/{exe,cmdline,fd,fdinfo,
 * status,stat,maps,comm}, /dev/{null,zero,full,urandom}. Prints only facts
 * that hold both natively and in the sandbox (no pids, addresses or inodes).
 */
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>

static char buf[1 << 16];

/* The whole file into buf (NUL-terminated); its length, or -1. */
static long slurp(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long n = 0, r;
    while ((r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += r;
    close(fd);
    buf[n] = 0;
    return r < 0 ? -1 : n;
}

static const char *base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static void check_exe_and_cmdline(int argc, char **argv, char *exe)
{
    ssize_t n = readlink("/proc/self/exe", exe, PATH_MAX - 1);
    exe[n > 0 ? n : 0] = 0;
    check(n > 0 && strcmp(base(exe), base(argv[0])) == 0, "readlink(/proc/self/exe) ends with the basename");
    check(exe[0] == '/', "/proc/self/exe is absolute");

    long len = slurp("/proc/self/cmdline");
    long want = 0;
    int same = len >= 0;
    for (int i = 0; i < argc && same; i++) {
        size_t l = strlen(argv[i]) + 1;
        same = want + (long)l <= len && memcmp(buf + want, argv[i], l) == 0;
        want += l;
    }
    check(same && len == want, "/proc/self/cmdline equals argv (%d args)", argc);

    char comm[32];
    snprintf(comm, sizeof comm, "%.15s\n", base(argv[0]));
    check(slurp("/proc/self/comm") > 0 && strcmp(buf, comm) == 0, "/proc/self/comm is the name");
}

static void check_fds(void)
{
    int extra = open("/dev/null", O_RDONLY);
    check(extra == 3, "open(/dev/null) is fd 3");
    DIR *d = opendir("/proc/self/fd");
    check(d != NULL, "opendir(/proc/self/fd)");
    if (!d)
        return;
    int fds[64], nfds = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && nfds < 64)
        if (e->d_name[0] != '.')
            fds[nfds++] = atoi(e->d_name);
    closedir(d);
    qsort(fds, nfds, sizeof fds[0], cmp_int);
    printf("/proc/self/fd:");
    for (int i = 0; i < nfds; i++)
        printf(" %d", fds[i]);
    printf("\n");

    char link[PATH_MAX];
    ssize_t n = readlink("/proc/self/fd/3", link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("readlink(/proc/self/fd/3) = %s\n", link);
    check(slurp("/proc/self/fdinfo/3") > 0 && strncmp(buf, "pos:\t0\nflags:\t", 14) == 0,
          "/proc/self/fdinfo/3 starts with pos and flags");
    close(extra);
    check(readlink("/proc/self/fd/3", link, sizeof link) == -1 && errno == ENOENT,
          "closed fd gone from /proc/self/fd");
}

static void check_devices(void)
{
    struct stat st;
    int fd = open("/dev/null", O_RDWR);
    check(fd >= 0 && fstat(fd, &st) == 0, "fstat(/dev/null)");
    printf("/dev/null: %s rdev %u:%u mode %o\n", S_ISCHR(st.st_mode) ? "chr" : "not-chr",
           major(st.st_rdev), minor(st.st_rdev), (unsigned)(st.st_mode & 07777));
    check(write(fd, "abc", 3) == 3 && read(fd, buf, 10) == 0, "/dev/null swallows and reads EOF");
    close(fd);

    const char *devs[] = {"/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"};
    for (int i = 0; i < 4; i++) {
        memset(&st, 0, sizeof st);
        stat(devs[i], &st);
        printf("%s: rdev %u:%u\n", devs[i], major(st.st_rdev), minor(st.st_rdev));
    }

    fd = open("/dev/zero", O_RDONLY);
    memset(buf, 0x55, 4096);
    int zeros = fd >= 0 && read(fd, buf, 4096) == 4096;
    for (int i = 0; zeros && i < 4096; i++)
        zeros = buf[i] == 0;
    check(zeros, "read(/dev/zero) gives 4096 zeros");
    close(fd);

    fd = open("/dev/full", O_WRONLY);
    errno = 0;
    check_err(write(fd, "x", 1), ENOSPC, "write(/dev/full)");
    close(fd);

    fd = open("/dev/urandom", O_RDONLY);
    unsigned char r1[16] = {0}, r2[16] = {0};
    check(fd >= 0 && read(fd, r1, 16) == 16 && read(fd, r2, 16) == 16 && memcmp(r1, r2, 16) != 0,
          "/dev/urandom gives fresh bytes");
    close(fd);

    char link[64];
    ssize_t n = readlink("/dev/stdin", link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("readlink(/dev/stdin) = %s\n", link);
}

static void check_status_stat_maps(const char *exe)
{
    char want[64];
    snprintf(want, sizeof want, "\nPid:\t%d\n", (int)getpid());
    check(slurp("/proc/self/status") > 0 && strstr(buf, want) != NULL, "/proc/self/status Pid is getpid()");
    check(strncmp(buf, "Name:\t", 6) == 0, "/proc/self/status starts with Name");
    snprintf(want, sizeof want, "\nTgid:\t%d\n", (int)getpid());
    check(strstr(buf, want) != NULL, "/proc/self/status Tgid is getpid()");

    check(slurp("/proc/self/stat") > 0 && atoi(buf) == getpid(), "/proc/self/stat field 1 is getpid()");
    char *close_paren = strrchr(buf, ')');
    int fields = 2;
    for (char *p = close_paren ? close_paren + 1 : buf; *p; p++)
        fields += *p == ' ' && p[1] != '\n' && p[1] != 0;
    printf("/proc/self/stat fields: %d\n", fields);

    check(slurp("/proc/self/maps") > 0, "read /proc/self/maps");
    int stack = 0, exe_line = 0;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        size_t l = strlen(line), le = strlen(exe);
        stack |= l >= 7 && strcmp(line + l - 7, "[stack]") == 0;
        exe_line |= l >= le && strcmp(line + l - le, exe) == 0;
        line = nl ? nl + 1 : NULL;
    }
    check(stack, "/proc/self/maps has [stack]");
    check(exe_line, "/proc/self/maps maps the executable");

    struct stat st;
    check(stat("/proc/self", &st) == 0 && S_ISDIR(st.st_mode), "/proc/self is a directory");
    check(stat("/proc/self/cwd", &st) == 0 && S_ISDIR(st.st_mode), "/proc/self/cwd is a directory");
    check(slurp("/proc/uptime") > 0 && atof(buf) > 0, "/proc/uptime is positive");
    check(slurp("/proc/meminfo") > 0 && strncmp(buf, "MemTotal:", 9) == 0, "/proc/meminfo starts with MemTotal");
}

/* The type-specific lines of fdinfo: eventfd's count and mode, epoll's watched fds
 * (the eventfd-id and the inode/device parts differ between hosts: not printed). */
static void fdinfo_extras(void)
{
    int e = eventfd(7, EFD_SEMAPHORE | EFD_CLOEXEC);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", e);
    check(slurp(path) > 0, "read eventfd fdinfo");
    char *c = strstr(buf, "eventfd-count:"), *m = strstr(buf, "eventfd-semaphore:");
    printf("eventfd fdinfo: %.*s", c ? (int)(strchr(c, '\n') - c + 1) : 0, c ? c : "");
    printf("  %.*s", m ? (int)(strchr(m, '\n') - m + 1) : 0, m ? m : "");
    check(strstr(buf, "\neventfd-id: ") != NULL, "eventfd fdinfo has an id");
    int p[2];
    check(pipe(p) == 0, "pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {EPOLLIN | EPOLLET, {.u64 = 0x1234}};
    check(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "epoll_ctl add");
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    check(slurp(path) > 0, "read epoll fdinfo");
    char *t = strstr(buf, "tfd:");
    char *ino = t ? strstr(t, " ino:") : NULL;
    printf("epoll fdinfo: %.*s\n", t && ino ? (int)(ino - t) : 0, t ? t : "");
    close(ep); close(p[0]); close(p[1]); close(e);
}

int main(int argc, char **argv)
{
    static char exe[PATH_MAX];
    check_exe_and_cmdline(argc, argv, exe);
    check_fds();
    check_devices();
    check_status_stat_maps(exe);
    fdinfo_extras();
    return finish();
}
