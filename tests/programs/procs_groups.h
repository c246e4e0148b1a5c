/*
 * procs.c sections about identities and signals between processes: getppid,
 * process groups and sessions with Linux's errors, the standard streams'
 * foreground group, kill to a pid / -pgrp / 0 / -1, tgkill and tkill to
 * another process, and /proc/PID of a child.
 */
#ifndef KVMBOX_PROCS_GROUPS_H
#define KVMBOX_PROCS_GROUPS_H

#include "procs.h"
#include <dirent.h>
#include <sys/ioctl.h>

/* A child that runs `PROG helper wait-fd 3`: it blocks reading fd 3 (the gate's read end)
 * until EOF.  Returns once the child's execve succeeded (a close-on-exec pipe reads EOF). */
static pid_t exec_waiter(struct gate *g, char **envp)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        alarm(15);
        dup2(g->r, 3);
        fcntl(3, F_SETFD, 0);           /* dup2 onto itself keeps close-on-exec */
        syscall(SYS_close_range, 4, ~0U, CLOSE_RANGE_CLOEXEC);
        char *argv[6];
        helper_argv(argv, "wait-fd", "3", NULL);
        execve(g_self, argv, envp ? envp : environ);
        _exit(127);
    }
    close(p[1]);
    char c;
    while (read(p[0], &c, 1) < 0 && errno == EINTR) {
    }
    close(p[0]);
    return pid;
}

/* ---------------------------------------------------------------- ids, groups, sessions */

static void sec_ids(void)
{
    pid_t me = getpid();
    say("section is a group leader: getpgrp==pid %d, getpgid(0)==getpgrp %d, getpgid(pid)==getpgrp %d",
        getpgrp() == me, getpgid(0) == getpgrp(), getpgid(me) == getpgrp());
    say("getsid(0)==getsid(pid) %d, same session as its parent %d, not a session leader %d",
        getsid(0) == getsid(me), getsid(0) == getsid(getppid()), getsid(0) != me);
    say("setsid in a group leader: %s", res(setsid()));

    struct gate g = gate_new(), done = gate_new();
    pid_t c = fork();
    if (c == 0) {
        alarm(15);
        pid_t self = getpid();
        say("child: ppid==section %d, inherits the group %d and the session %d", getppid() == me,
            getpgrp() == me, getsid(0) == getsid(me));
        pid_t s = setsid();
        say("child: setsid %s, returns its pid %d, sid==pid %d, pgid==pid %d", res(s), s == self,
            getsid(0) == self, getpgrp() == self);
        say("child: setsid again: %s", res(setsid()));
        say("child: setpgid into the parent's group (another session): %s", res(setpgid(0, me)));
        say("child: getpgid and getsid of its parent: %d %d", getpgid(me) == me, getsid(me) == getsid(getppid()));
        close(g.w);
        gate_pass(&done);
        gate_await(&g);
        _exit(0);
    }
    gate_await(&done);          /* the child has printed its lines */
    gate_close(&done);
    say("the child in its own session: getsid(child)==child %d", getsid(c) == c);
    say("setpgid of a child in another session: %s", res(setpgid(c, c)));
    gate_close(&g);
    int st = wait_for(c, 0);
    say("child: %s", status_text(st));

    say("setpgid of a process that is not a child: %s", res(setpgid(getppid(), getppid())));
    say("setpgid(0, -1): %s", res(setpgid(0, -1)));
    say("setpgid(-1, 0): %s", res(setpgid(-1, 0)));
    const char *r = res(getpgid(c));
    say("getpgid/getsid of a reaped pid: %s %s", r, res(getsid(c)));
    say("setpgid(0, a pgid that does not exist): %s", res(setpgid(0, c)));

    g = gate_new();
    c = fork();
    if (c == 0) {
        close(g.w);
        gate_await(&g);
        _exit(getpgrp() == getpid() ? 1 : getpgrp() == me ? 2 : 3);
    }
    r = res(setpgid(c, c));
    say("setpgid(child, child): %s; back into ours: %s", r, res(setpgid(c, me)));
    say("setpgid(child, child) again: %s", res(setpgid(c, c)));
    gate_close(&g);
    st = wait_for(c, 0);
    say("the child ends in its own group (1) / ours (2): %s", status_text(st));

    g = gate_new();
    c = exec_waiter(&g, NULL);
    say("setpgid of a child after its execve: %s", res(setpgid(c, c)));
    gate_close(&g);
    say_wait("exec'd child", c);

    for (int fd = 0; fd < 3; fd++) {
        r = res(tcgetpgrp(fd));
        say("tcgetpgrp(%d): %s; tcsetpgrp(%d): %s", fd, r, fd, res(tcsetpgrp(fd, getpgrp())));
    }
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    say("open /dev/tty without a controlling terminal: %s", res(fd));
    if (fd >= 0)
        close(fd);
}

/* ---------------------------------------------------------------- kill, tgkill, tkill */

/* A child that blocks USR1, USR2 and TERM, says it is ready, takes the first with rt_sigtimedwait
 * and exits with: the signal | 32 if si_pid is the section | 64 if si_code is SI_TKILL. */
static pid_t sig_child(const int *ready, pid_t pgid)
{
    pid_t sender = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        alarm(15);
        if (pgid >= 0)
            setpgid(0, pgid);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR1);
        sigaddset(&s, SIGUSR2);
        sigaddset(&s, SIGTERM);
        sigprocmask(SIG_BLOCK, &s, NULL);
        send_int(ready[1], 1);
        siginfo_t si;
        int sig;
        do      /* the raw call: glibc's sigwaitinfo reports SI_TKILL as SI_USER */
            sig = (int)syscall(SYS_rt_sigtimedwait, &s, &si, NULL, 8);
        while (sig < 0 && errno == EINTR);
        _exit(sig | (si.si_pid == sender) << 5 | (si.si_code == SI_TKILL) << 6);
    }
    if (pgid >= 0 && pid > 0)
        setpgid(pid, pgid ? pgid : pid);
    recv_int(ready[0]);
    return pid;
}

static void say_sig_child(const char *label, pid_t pid)
{
    int st = wait_for(pid, 0);
    if (st < 0 || !WIFEXITED(st))
        return say("%s: %s", label, st < 0 ? "wait failed" : status_text(st));
    int v = WEXITSTATUS(st);
    say("%s: got %s, from the section %d, %s", label, sig_name(v & 31), v >> 5 & 1, v & 64 ? "SI_TKILL" : "SI_USER");
}

static void sec_kill(void)
{
    int p[2];
    if (pipe(p) != 0)
        return say("pipe: %s", errname(errno));
    pid_t a = sig_child(p, -1);
    say("kill(pid, 0) on a live child: %s", res(kill(a, 0)));
    say("kill(pid, 65): %s", res(kill(a, 65)));
    kill(a, SIGUSR1);
    say_sig_child("kill(pid, SIGUSR1)", a);
    say("kill(reaped pid, 0): %s", res(kill(a, 0)));

    pid_t g1 = sig_child(p, 0);
    pid_t g2 = sig_child(p, g1);
    pid_t o = sig_child(p, -1);
    say("kill(-pgrp, SIGUSR2): %s", res(kill(-g1, SIGUSR2)));
    say_sig_child("group member 1", g1);
    say_sig_child("group member 2", g2);
    kill(o, SIGTERM);
    say_sig_child("not in the group, then SIGTERM", o);
    say("kill(-pgrp) once the group is gone: %s", res(kill(-g1, SIGUSR2)));

    block(SIGUSR1);
    o = sig_child(p, -1);
    say("kill(0, SIGUSR1): %s", res(kill(0, SIGUSR1)));
    say_sig_child("child in the caller's group", o);
    say("the caller got its own signal too: %d", is_pending(SIGUSR1));
    siginfo_t si;
    sigset_t s1;
    sigemptyset(&s1);
    sigaddset(&s1, SIGUSR1);
    sigwaitinfo(&s1, &si);

    a = sig_child(p, -1);
    say("tgkill(pid, pid, 0): %s", res(syscall(SYS_tgkill, a, a, 0)));
    say("tgkill(wrong tgid, pid, SIGUSR1): %s", res(syscall(SYS_tgkill, getpid(), a, SIGUSR1)));
    say("tgkill(0, pid, SIGUSR1): %s", res(syscall(SYS_tgkill, 0, a, SIGUSR1)));
    say("tgkill(pid, pid, SIGUSR1): %s", res(syscall(SYS_tgkill, a, a, SIGUSR1)));
    say_sig_child("tgkill", a);
    a = sig_child(p, -1);
    say("tkill(0, SIGUSR2): %s", res(syscall(SYS_tkill, 0, SIGUSR2)));
    say("tkill(pid, SIGUSR2): %s", res(syscall(SYS_tkill, a, SIGUSR2)));
    say_sig_child("tkill", a);

    if (!g_is_init) {
        say("kill(-1): not run (the program is not pid 1, so -1 would reach other processes)");
    } else {
        block(SIGUSR2);
        pid_t k1 = sig_child(p, -1);
        pid_t k2 = sig_child(p, 0);
        say("kill(-1, SIGUSR2): %s", res(kill(-1, SIGUSR2)));
        say_sig_child("child 1", k1);
        say_sig_child("child 2 (own group)", k2);
        say("the caller is spared: %d", !is_pending(SIGUSR2));
        say("kill(-1, 0) with no other process: %s", res(kill(-1, 0)));
    }
    close(p[0]);
    close(p[1]);
}

/* ---------------------------------------------------------------- /proc/PID of a child */

static void read_small(const char *path, char *buf, size_t len, ssize_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *n = -1;
    buf[0] = 0;
    if (fd < 0)
        return;
    *n = read(fd, buf, len - 1);
    if (*n >= 0)
        buf[*n] = 0;
    close(fd);
}

/* "/proc/child/NAME: a|b|" for a file of NUL-terminated strings. */
static void say_nul_list(pid_t pid, const char *name)
{
    char path[64], buf[4096];
    ssize_t n;
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    read_small(path, buf, sizeof buf, &n);
    for (ssize_t i = 0; i < n; i++)
        if (!buf[i])
            buf[i] = '|';
    say("/proc/child/%s: %s", name, n < 0 ? errname(errno) : buf);
}

static int count_numeric(const char *path, char *names, size_t len)
{
    DIR *d = opendir(path);
    int count = 0;
    if (names)
        names[0] = 0;
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        count++;
        if (names && strlen(names) + strlen(e->d_name) + 2 < len) {
            strcat(names, " ");
            strcat(names, e->d_name);
        }
    }
    closedir(d);
    return count;
}

static void sec_proc(void)
{
    struct gate g = gate_new();
    char *envp[] = {"A=1", "B=two words", NULL};
    pid_t c = exec_waiter(&g, envp);
    char path[128], buf[4096], buf2[4096];
    ssize_t n;
    long ppid;
    char state = proc_state(c, &ppid);
    for (int i = 0; i < 2000 && state == 'R'; i++) {    /* on its way to the blocking read */
        sleep_ms(1);
        state = proc_state(c, &ppid);
    }
    say("/proc/child/stat: state %c, ppid==section %d", state, ppid == getpid());
    snprintf(path, sizeof path, "/proc/%d/status", (int)c);
    read_small(path, buf, sizeof buf, &n);
    char want[64];
    snprintf(want, sizeof want, "\nPPid:\t%d\n", (int)getpid());
    say("/proc/child/status PPid==section %d", strstr(buf, want) != NULL);
    say_nul_list(c, "cmdline");
    say_nul_list(c, "environ");
    snprintf(path, sizeof path, "/proc/%d/exe", (int)c);
    n = readlink(path, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    ssize_t m = readlink("/proc/self/exe", buf2, sizeof buf2 - 1);
    buf2[m > 0 ? m : 0] = 0;
    say("/proc/child/exe is this program: %d", n > 0 && strcmp(buf, buf2) == 0);
    snprintf(path, sizeof path, "/proc/%d/cwd", (int)c);
    n = readlink(path, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    say("/proc/child/cwd is ours: %d", n > 0 && getcwd(buf2, sizeof buf2) && strcmp(buf, buf2) == 0);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)c);
    count_numeric(path, buf, sizeof buf);
    say("/proc/child/fd:%s", buf);
    snprintf(path, sizeof path, "/proc/%d/task", (int)c);
    int tasks = count_numeric(path, buf, sizeof buf);
    char mine[32];
    snprintf(mine, sizeof mine, " %d", (int)c);
    say("/proc/child/task: %d entry, the child's pid %d", tasks, strcmp(buf, mine) == 0);
    snprintf(path, sizeof path, "/proc/%d/maps", (int)c);
    read_small(path, buf, sizeof buf, &n);
    say("/proc/child/maps readable and not empty: %d", n > 0);
    n = readlink("/proc/self", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    say("/proc/self names the section: %d", n > 0 && atoi(buf) == getpid());
    if (g_is_init)
        say("/proc lists %d processes (init, this section, the child)", count_numeric("/proc", NULL, 0));
    else
        say("/proc count: not run (not pid 1: the host's processes are visible)");
    gate_close(&g);
    say_wait("child", c);
    snprintf(path, sizeof path, "/proc/%d/stat", (int)c);
    say("/proc/child after it was reaped: %s", res(open(path, O_RDONLY | O_CLOEXEC)));
}

#endif
