/*
 * execve/execveat without fork: failures that leave the image running
 * (ENOENT, EACCES, ENOEXEC, E2BIG, EFAULT, EINVAL, ELOOP), then a re-exec of
 * this program that checks what survives an exec (pid, cwd, argv, envp,
 * non-CLOEXEC descriptors, ignored signals, the signal mask, a pending
 * signal) and what does not (CLOEXEC descriptors, caught handlers), and a
 * last execveat(AT_EMPTY_PATH) of /bin/echo.  Scratch files go in /dev/shm.
 */
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>

#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

extern char **environ;

static void on_usr1(int sig) { (void)sig; }

static int handler_is(int sig, void (*want)(int))
{
    struct sigaction sa;
    sigaction(sig, NULL, &sa);
    return sa.sa_handler == want;
}

static void scratch(char *path, size_t n, const char *name, const char *body, mode_t mode)
{
    snprintf(path, n, "/dev/shm/kvmbox-exec-%d-%s", (int)getpid(), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (body)
        write(fd, body, strlen(body));
    close(fd);
    chmod(path, mode);
}

static int stage1(const char *self)
{
    char junk[128], link[128];
    scratch(junk, sizeof junk, "junk", "this is not a program\n", 0755);
    snprintf(link, sizeof link, "/dev/shm/kvmbox-exec-%d-link", (int)getpid());
    symlink("/bin/true", link);
    char *args[] = {"x", NULL};
    errno = 0; check_err(execve("/nonexistent/prog", args, environ), ENOENT, "execve missing");
    errno = 0; check_err(execve("/etc/passwd", args, environ), EACCES, "execve without x bit");
    errno = 0; check_err(execve("/tmp", args, environ), EACCES, "execve a directory");
    errno = 0; check_err(execve(junk, args, environ), ENOEXEC, "execve of text");
    volatile uintptr_t unmapped = 8;
    char **bad_argv = (char **)unmapped;
    errno = 0; check_err(execve("/bin/true", bad_argv, environ), EFAULT, "execve bad argv");
    static char big[200 * 1024];
    memset(big, 'a', sizeof big - 1);
    char *bigargs[] = {"x", big, NULL};
    errno = 0; check_err(execve("/bin/true", bigargs, environ), E2BIG, "execve 200 KiB argument");
    errno = 0; check_err(syscall(SYS_execveat, AT_FDCWD, "/bin/true", args, environ, 0x4), EINVAL,
                         "execveat bad flags");
    errno = 0; check_err(syscall(SYS_execveat, AT_FDCWD, link, args, environ, AT_SYMLINK_NOFOLLOW),
                         ELOOP, "execveat AT_SYMLINK_NOFOLLOW on a link");
    errno = 0; check_err(syscall(SYS_execveat, AT_FDCWD, "", args, environ, 0), ENOENT,
                         "execveat empty path");
    char copy[128];
    scratch(copy, sizeof copy, "copy", NULL, 0755);
    int src = open("/bin/true", O_RDONLY), dst = open(copy, O_WRONLY | O_TRUNC);
    char chunk[65536];
    ssize_t got;
    while ((got = read(src, chunk, sizeof chunk)) > 0)
        write(dst, chunk, (size_t)got);
    close(src);
    errno = 0; check_err(execve(copy, args, environ), ETXTBSY, "execve of a file open for writing");
    close(dst);
    unlink(copy);
    unlink(junk);
    unlink(link);
    printf("still running after the failures\n");

    int keep = open("/etc/hostname", O_RDONLY);
    int gone = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGTERM);
    char pid[32], a1[16], a2[16], nfail[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(a1, sizeof a1, "%d", keep);
    snprintf(a2, sizeof a2, "%d", gone);
    snprintf(nfail, sizeof nfail, "%d", g_failures);
    char *next[] = {"second name", "stage2", pid, a1, a2, nfail, "two words", NULL};
    char *env[] = {"STAGE=two", "EMPTY=", NULL};
    chdir("/usr");
    fflush(stdout);                   /* the new image starts with empty stdio buffers */
    execve(self, next, env);
    printf("execve of self failed: %s\n", errname(errno));
    return 1;
}

static int stage2(int argc, char **argv)
{
    printf("stage2 argc %d argv0 '%s' last '%s'; stage 1 failures: %s\n", argc, argv[0],
           argv[argc - 1], argv[5]);
    printf("same pid %d\n", atoi(argv[2]) == (int)getpid());
    printf("env STAGE=%s EMPTY='%s' PATH set %d\n", getenv("STAGE"), getenv("EMPTY"),
           getenv("PATH") != NULL);
    char cwd[PATH_MAX];
    printf("cwd %s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    int keep = atoi(argv[3]), gone = atoi(argv[4]);
    printf("plain fd open %d, CLOEXEC fd closed %d\n", fcntl(keep, F_GETFD) >= 0,
           fcntl(gone, F_GETFD) < 0 && errno == EBADF);
    printf("caught SIGUSR1 reset to default %d, ignored SIGUSR2 still ignored %d\n",
           handler_is(SIGUSR1, SIG_DFL), handler_is(SIGUSR2, SIG_IGN));
    sigset_t cur, pend;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    sigpending(&pend);
    printf("SIGTERM still blocked %d and pending %d\n", sigismember(&cur, SIGTERM),
           sigismember(&pend, SIGTERM));
    int sig = 0;
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigwait(&term, &sig);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    const char *base = strrchr(exe, '/');
    printf("/proc/self/exe is %s\n", base ? base + 1 : exe);
    close(keep);
    fflush(stdout);
    int echo = open("/bin/echo", O_RDONLY);
    char *args[] = {"echo", "from", "execveat", "AT_EMPTY_PATH", NULL};
    if (atoi(argv[5]) == 0)           /* the exit status then comes from echo */
        syscall(SYS_execveat, echo, "", args, environ, AT_EMPTY_PATH);
    printf("not running echo: %s\n", errname(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "stage2"))
        return stage2(argc, argv);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = 0;
    stage1(self);
    return finish();
}
