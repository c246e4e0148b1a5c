/*
 * The framework of procs.c: output that several processes share, sections in
 * fresh subprocesses, children, gates and wait-status printing.
 *
 * Output: every line goes out with one write(2) (no stdio buffer that a fork
 * would duplicate), and only one process prints at a time: a parent that
 * lets a child print is blocked in a wait until the child is done.  Nothing
 * printed is a pid, an address or a time; relations are printed instead
 * ("ppid==parent: 1").
 */
#ifndef KVMBOX_PROCS_H
#define KVMBOX_PROCS_H

#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_tkill
#define SYS_tkill 200
#endif
#ifndef SYS_tgkill
#define SYS_tgkill 234
#endif
#ifndef __WALL
#define __WALL 0x40000000
#endif
#ifndef __WCLONE
#define __WCLONE 0x80000000
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#define PR_GET_CHILD_SUBREAPER 37
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#endif
#ifndef MADV_DONTFORK
#define MADV_DONTFORK 10
#define MADV_DOFORK 11
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#define F_OFD_SETLKW 38
#endif

#define UNUSED __attribute__((unused))
#define SECTION_ALARM 20        /* a hung section dies of SIGALRM, visibly, instead of hanging */

extern char **environ;

static int g_is_init;            /* main is pid 1: the sandbox's init, or a pid namespace's */
static const char *g_self = "/proc/self/exe";
static char g_tmpdir[256];       /* a private directory under /tmp for fifos, files and locks */

/* One line to stdout with a single write(2). */
static UNUSED void say(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    for (int off = 0; off < n;) {
        ssize_t w = write(1, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += w;
    }
}

/* errname() of common.h plus the errnos only processes meet. */
static UNUSED const char *perr(int e)
{
    switch (e) {
    case ECHILD: return "ECHILD";
    case ENXIO: return "ENXIO";
    case EDEADLK: return "EDEADLK";
    default: return errname(e);
    }
}

/* "ok" for a call that succeeded, else the errno's name. */
static UNUSED const char *res(long ret)
{
    return ret < 0 ? perr(errno) : "ok";
}

static UNUSED const char *sig_name(int sig)
{
    switch (sig) {
    case 0: return "0";
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGCHLD: return "SIGCHLD";
    case SIGCONT: return "SIGCONT";
    case SIGSTOP: return "SIGSTOP";
    case SIGTSTP: return "SIGTSTP";
    case SIGTTIN: return "SIGTTIN";
    case SIGTTOU: return "SIGTTOU";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    default: {
        static char buf[16];
        snprintf(buf, sizeof buf, "sig%d", sig);
        return buf;
    }
    }
}

static UNUSED const char *cld_code(int code)
{
    switch (code) {
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    case CLD_DUMPED: return "CLD_DUMPED";
    case CLD_TRAPPED: return "CLD_TRAPPED";
    case CLD_STOPPED: return "CLD_STOPPED";
    case CLD_CONTINUED: return "CLD_CONTINUED";
    case SI_USER: return "SI_USER";
    case SI_TKILL: return "SI_TKILL";
    default: {
        static char buf[16];
        snprintf(buf, sizeof buf, "code%d", code);
        return buf;
    }
    }
}

/* A wait status in words: "exited N", "killed by SIGX", "stopped by SIGX", "continued". */
static UNUSED const char *status_text(int st)
{
    static char buf[64];
    if (WIFEXITED(st))
        snprintf(buf, sizeof buf, "exited %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, sizeof buf, "killed by %s%s", sig_name(WTERMSIG(st)), WCOREDUMP(st) ? " (core)" : "");
    else if (WIFSTOPPED(st))
        snprintf(buf, sizeof buf, "stopped by %s", sig_name(WSTOPSIG(st)));
    else if (WIFCONTINUED(st))
        snprintf(buf, sizeof buf, "continued");
    else
        snprintf(buf, sizeof buf, "status %#x", st);
    return buf;
}

/* waitpid(pid, options), retried on EINTR; returns the status, or -1 - errno on failure. */
static UNUSED int wait_for(pid_t pid, int options)
{
    int st = 0;
    pid_t w;
    do
        w = waitpid(pid, &st, options);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1 - errno;
    return w == 0 ? -1000 : st;
}

/* Wait for pid and print "label: <status>" (or the wait's errno). */
static UNUSED void say_wait(const char *label, pid_t pid)
{
    int st = wait_for(pid, __WALL);
    if (st == -1000)
        say("%s: still running", label);
    else if (st < 0)
        say("%s: wait %s", label, perr(-1 - st));
    else
        say("%s: %s", label, status_text(st));
}

/* fork(); the child runs fn(arg) and _exits with its value.  -1 if fork fails. */
static UNUSED pid_t child(int (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    return pid;
}

/* A one-way gate between processes: a pipe; pass() writes a byte, await() reads one
 * (0 when a byte came, -1 at EOF: every writer gone). */
struct gate {
    int r, w;
};

static UNUSED struct gate gate_new(void)
{
    int p[2] = {-1, -1};
    if (pipe2(p, O_CLOEXEC) != 0)
        say("gate: pipe2 %s", errname(errno));
    struct gate g = {p[0], p[1]};
    return g;
}

static UNUSED void gate_pass(struct gate *g)
{
    char c = 'g';
    while (write(g->w, &c, 1) < 0 && errno == EINTR) {
    }
}

static UNUSED int gate_await(struct gate *g)
{
    char c;
    ssize_t n;
    do
        n = read(g->r, &c, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

static UNUSED void gate_close(struct gate *g)
{
    if (g->r >= 0)
        close(g->r);
    if (g->w >= 0)
        close(g->w);
    g->r = g->w = -1;
}

/* Send a small integer through a pipe (the child's side) / receive it (-1 at EOF). */
static UNUSED void send_int(int fd, int v)
{
    while (write(fd, &v, sizeof v) < 0 && errno == EINTR) {
    }
}

static UNUSED int recv_int(int fd)
{
    int v;
    ssize_t n;
    do
        n = read(fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof v ? v : -1;
}

static UNUSED void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static UNUSED void noop_handler(int sig)
{
}

/* Install an SA_SIGINFO handler (empty sa_mask). */
static UNUSED void set_action(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigaction(sig, &sa, NULL);
}

static UNUSED void block(int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(SIG_BLOCK, &s, NULL);
}

static UNUSED int is_pending(int sig)
{
    sigset_t s;
    sigpending(&s);
    return sigismember(&s, sig);
}

/* argv for re-executing this program as a helper: PROG helper WORDS... */
static UNUSED void helper_argv(char **argv, const char *a, const char *b, const char *c)
{
    argv[0] = "procs";
    argv[1] = "helper";
    argv[2] = (char *)a;
    argv[3] = (char *)b;
    argv[4] = (char *)c;
    argv[5] = NULL;
    if (!b)
        argv[3] = NULL;
    else if (!c)
        argv[4] = NULL;
}

/* A path in the private temporary directory. */
static UNUSED const char *tmp_path(const char *name)
{
    static char bufs[4][320];
    static int next;
    char *out = bufs[next++ % 4];
    snprintf(out, 320, "%s/%s", g_tmpdir, name);
    return out;
}

/* The state letter of /proc/PID/stat ('?' when unreadable), and its ppid (or -1). */
static UNUSED char proc_state(pid_t pid, long *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ppid)
        *ppid = -1;
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return '?';
    char state = p[2];
    if (ppid)
        *ppid = strtol(p + 4, NULL, 10);
    return state;
}

/* Burn about `ms` of CPU time in user space (checked against the process CPU clock). */
static UNUSED void burn_cpu(long ms)
{
    volatile unsigned long x = 1;
    for (;;) {
        for (int i = 0; i < 1000000; i++)
            x = x * 6364136223846793005UL + 1442695040888963407UL;
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        if (ts.tv_sec * 1000L + ts.tv_nsec / 1000000L >= ms)
            break;
    }
}

#endif
