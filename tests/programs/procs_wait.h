/*
 * procs.c sections about waiting: wait4 and waitid with P_PID, P_PGID, P_ALL,
 * WNOHANG, WNOWAIT, WUNTRACED/WSTOPPED, WCONTINUED and their errors; stop and
 * continue; zombies until reaped; SIGCHLD's siginfo; SA_NOCLDWAIT and
 * SIG_IGN; getrusage(RUSAGE_CHILDREN).
 */
#ifndef KVMBOX_PROCS_WAIT_H
#define KVMBOX_PROCS_WAIT_H

#include "procs.h"

/* A child that waits at the gate (until it opens or closes), then exits `code`. */
static pid_t gated_child(struct gate *g, int code, pid_t pgid)
{
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        if (pgid >= 0)
            setpgid(0, pgid);
        close(g->w);
        gate_await(g);
        _exit(code);
    }
    if (pgid >= 0 && pid > 0)
        setpgid(pid, pgid ? pgid : pid);     /* both sides, as a shell does: no race */
    return pid;
}

/* ---------------------------------------------------------------- wait4 / waitpid */

static void sec_wait(void)
{
    struct gate g = gate_new();
    pid_t a = gated_child(&g, 21, -1);
    int st;
    say("WNOHANG on a running child: %d", waitpid(a, &st, WNOHANG));
    siginfo_t si;
    memset(&si, 0x55, sizeof si);
    int r = waitid(P_PID, a, &si, WEXITED | WNOHANG);
    say("waitid WNOHANG on a running child: %s, si_pid==0 %d si_signo %d", res(r), si.si_pid == 0, si.si_signo);
    pid_t b = gated_child(&g, 22, -1);
    pid_t c = gated_child(&g, 23, -1);
    gate_close(&g);
    int seen = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    for (int i = 0; i < 3; i++) {
        pid_t w = wait4(-1, &st, 0, &ru);
        if (w == a || w == b || w == c)
            seen |= 1 << (WEXITSTATUS(st) - 21);
    }
    say("wait4(-1) reaped all three with their statuses: %#x", seen);
    say("wait4(-1) with no children: %s", res(wait4(-1, &st, 0, NULL)));
    say("waitpid WNOHANG with no children: %s", res(waitpid(-1, &st, WNOHANG)));
    say("waitpid of a process that is not a child: %s", res(waitpid(getppid(), &st, 0)));
    say("waitpid with WEXITED (not a wait4 flag): %s", res(waitpid(-1, &st, WEXITED)));
    say("waitpid with unknown option bits: %s", res(waitpid(-1, &st, 0x100)));

    g = gate_new();
    a = gated_child(&g, 24, -1);
    gate_close(&g);
    pid_t w = waitpid(a, (int *)1, 0);
    int e = errno;
    say("waitpid with a bad status pointer: %s; the child was reaped anyway: %s", w < 0 ? perr(e) : "ok",
        res(waitpid(a, &st, WNOHANG)));
}

/* ---------------------------------------------------------------- waitid, process groups */

static void sec_waitid(void)
{
    struct gate g = gate_new();
    pid_t a = gated_child(&g, 31, -1);
    gate_close(&g);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, a, &si, WEXITED | WNOWAIT);
    say("waitid P_PID WNOWAIT: %s %s status %d pid ok %d", res(r), cld_code(si.si_code), si.si_status,
        si.si_pid == a);
    memset(&si, 0, sizeof si);
    r = waitid(P_PID, a, &si, WEXITED | WNOWAIT);
    say("again with WNOWAIT: %s %s status %d", res(r), cld_code(si.si_code), si.si_status);
    memset(&si, 0, sizeof si);
    r = waitid(P_ALL, 0, &si, WEXITED);
    say("waitid P_ALL reaps it: %s %s status %d pid ok %d, si_signo %s", res(r), cld_code(si.si_code),
        si.si_status, si.si_pid == a, sig_name(si.si_signo));
    say("then: %s", res(waitid(P_PID, a, &si, WEXITED | WNOHANG)));

    /* Two children in a new process group, one in ours. */
    g = gate_new();
    pid_t g1 = gated_child(&g, 41, 0);
    pid_t g2 = gated_child(&g, 42, g1);
    pid_t o = gated_child(&g, 43, -1);
    say("getpgid: first is a leader %d, second joined it %d, third in ours %d", getpgid(g1) == g1,
        getpgid(g2) == g1, getpgid(o) == getpgrp());
    gate_close(&g);
    int got = 0;
    for (int i = 0; i < 2; i++) {
        memset(&si, 0, sizeof si);
        if (waitid(P_PGID, g1, &si, WEXITED) == 0)
            got |= 1 << (si.si_status - 40);
    }
    say("waitid P_PGID reaped the group's two: %#x; then %s", got, res(waitid(P_PGID, g1, &si, WEXITED | WNOHANG)));
    int st;
    pid_t w = waitpid(0, &st, 0);
    say("waitpid(0) reaps ours: %d %s", w == o, status_text(st));

    g = gate_new();
    g1 = gated_child(&g, 44, 0);
    o = gated_child(&g, 45, -1);
    gate_close(&g);
    w = waitpid(-g1, &st, 0);
    say("waitpid(-pgid): %d %s", w == g1, status_text(st));
    say("waitpid(-pgid) again: %s", res(waitpid(-g1, &st, 0)));
    w = waitpid(-1, &st, 0);
    say("the other: %d %s", w == o, status_text(st));

    say("waitid without WEXITED/WSTOPPED/WCONTINUED: %s", res(waitid(P_ALL, 0, &si, 0)));
    say("waitid bad idtype: %s", res(waitid((idtype_t)7, 0, &si, WEXITED)));
    say("waitid P_PID 0: %s", res(waitid(P_PID, 0, &si, WEXITED)));
    say("waitid with no children: %s", res(waitid(P_ALL, 0, &si, WEXITED)));
}

/* ---------------------------------------------------------------- stop and continue */

static int g_report_fd = -1;

static void usr1_reports(int sig)
{
    char c = 'u';
    if (write(g_report_fd, &c, 1) < 0) {
    }
}

static void sec_stop(void)
{
    int rep[2];
    if (pipe2(rep, O_CLOEXEC) != 0)
        return say("pipe2: %s", errname(errno));
    g_report_fd = rep[1];
    pid_t c = fork();
    if (c == 0) {
        alarm(15);
        set_handler(SIGUSR1, usr1_reports, SA_RESTART);
        char r = 'r';
        if (write(rep[1], &r, 1) < 0)
            _exit(1);
        for (;;)
            pause();
    }
    char buf;
    int rd = read(rep[0], &buf, 1);
    say("child ready: %d", rd == 1 && buf == 'r');
    kill(c, SIGSTOP);
    int st = wait_for(c, WUNTRACED);
    say("SIGSTOP, waitpid WUNTRACED: %s", status_text(st));
    say("again WUNTRACED|WNOHANG (already reported): %d", wait_for(c, WUNTRACED | WNOHANG) == -1000);
    kill(c, SIGUSR1);
    fcntl(rep[0], F_SETFL, O_NONBLOCK);
    errno = 0;
    ssize_t n = read(rep[0], &buf, 1);
    say("SIGUSR1 sent while stopped is not handled yet: %s", n < 0 ? errname(errno) : "handled");
    fcntl(rep[0], F_SETFL, 0);
    say("waitpid without WUNTRACED|WCONTINUED, WNOHANG: %d", wait_for(c, WNOHANG) == -1000);
    kill(c, SIGCONT);
    st = wait_for(c, WCONTINUED);
    say("SIGCONT, waitpid WCONTINUED: %s", status_text(st));
    n = read(rep[0], &buf, 1);
    say("then the pending SIGUSR1 is handled: %d", n == 1 && buf == 'u');

    kill(c, SIGTSTP);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, c, &si, WSTOPPED);
    say("SIGTSTP, waitid WSTOPPED: %s %s %s", res(r), cld_code(si.si_code), sig_name(si.si_status));
    memset(&si, 0, sizeof si);
    r = waitid(P_PID, c, &si, WSTOPPED | WNOHANG);
    say("waitid WSTOPPED|WNOHANG again: %s si_pid==0 %d", res(r), si.si_pid == 0);
    kill(c, SIGCONT);
    memset(&si, 0, sizeof si);
    r = waitid(P_PID, c, &si, WCONTINUED | WNOWAIT);
    say("SIGCONT, waitid WCONTINUED|WNOWAIT: %s %s %s", res(r), cld_code(si.si_code), sig_name(si.si_status));
    memset(&si, 0, sizeof si);
    r = waitid(P_PID, c, &si, WCONTINUED);
    say("waitid WCONTINUED: %s %s %s", res(r), cld_code(si.si_code), sig_name(si.si_status));

    kill(c, SIGSTOP);
    st = wait_for(c, WUNTRACED);
    say("stopped again: %s", status_text(st));
    kill(c, SIGKILL);
    st = wait_for(c, WUNTRACED | WCONTINUED);
    say("SIGKILL to a stopped process: %s", status_text(st));

    /* A process that stops itself. */
    c = fork();
    if (c == 0) {
        alarm(15);
        raise(SIGSTOP);
        _exit(17);
    }
    st = wait_for(c, WUNTRACED);
    say("raise(SIGSTOP): %s", status_text(st));
    kill(c, SIGCONT);
    st = wait_for(c, 0);
    say("continued, then: %s", status_text(st));
    close(rep[0]);
    close(rep[1]);
}

/* ---------------------------------------------------------------- zombies */

static void sec_zombie(void)
{
    struct gate g = gate_new();
    pid_t kids[10];
    for (int i = 0; i < 10; i++)
        kids[i] = gated_child(&g, i, -1);
    gate_close(&g);
    siginfo_t si;
    for (int i = 0; i < 10; i++)
        waitid(P_PID, kids[i], &si, WEXITED | WNOWAIT);
    int zombies = 0, alive = 0, pgid_ok = 0;
    for (int i = 0; i < 10; i++) {
        zombies += proc_state(kids[i], NULL) == 'Z';
        alive += kill(kids[i], 0) == 0;
        pgid_ok += getpgid(kids[i]) == getpgrp();
    }
    say("10 exited, unreaped: /proc state Z %d, kill(pid, 0) succeeds %d, getpgid works %d", zombies, alive,
        pgid_ok);
    int reaped = 0;
    while (wait(NULL) > 0)
        reaped++;
    int gone = 0, proc_gone = 0;
    for (int i = 0; i < 10; i++) {
        gone += kill(kids[i], 0) < 0 && errno == ESRCH;
        proc_gone += proc_state(kids[i], NULL) == '?';
    }
    say("reaped %d; then kill ESRCH %d, /proc entry gone %d", reaped, gone, proc_gone);
}

/* ---------------------------------------------------------------- SIGCHLD */

static volatile int g_nchld;
static siginfo_t g_chld[4];

static void on_chld(int sig, siginfo_t *si, void *uc)
{
    g_chld[g_nchld % 4] = *si;
    g_nchld++;
}

/* Wait (signal-driven) for the next SIGCHLD and print its siginfo. */
static void next_chld(const char *label, pid_t pid)
{
    sigset_t none;
    sigemptyset(&none);
    int before = g_nchld;
    while (g_nchld == before)
        sigsuspend(&none);
    siginfo_t *si = &g_chld[before % 4];
    int st = si->si_status;
    char status[24];
    if (si->si_code == CLD_EXITED)
        snprintf(status, sizeof status, "%d", st);
    else
        snprintf(status, sizeof status, "%s", sig_name(st));
    say("%s: %s %s si_status %s si_pid==child %d si_uid==uid %d", label, sig_name(si->si_signo),
        cld_code(si->si_code), status, si->si_pid == pid, si->si_uid == getuid());
}

/* A child that stops itself, then waits to be killed. */
static pid_t self_stopper(void)
{
    pid_t c = fork();
    if (c == 0) {
        alarm(15);
        raise(SIGSTOP);
        for (;;)
            pause();
    }
    return c;
}

static void sec_sigchld(void)
{
    block(SIGCHLD);
    set_action(SIGCHLD, on_chld, 0);
    pid_t c = fork();
    if (c == 0)
        _exit(5);
    next_chld("exit(5)", c);
    say_wait("reaped", c);

    struct gate g = gate_new();
    c = gated_child(&g, 0, -1);
    kill(c, SIGTERM);
    next_chld("killed by SIGTERM", c);
    say_wait("reaped", c);
    gate_close(&g);

    c = self_stopper();
    next_chld("stopped", c);
    wait_for(c, WUNTRACED);
    kill(c, SIGCONT);
    next_chld("continued", c);
    kill(c, SIGKILL);
    next_chld("killed by SIGKILL", c);
    say_wait("reaped", c);

    set_action(SIGCHLD, on_chld, SA_NOCLDSTOP);
    c = self_stopper();
    int st = wait_for(c, WUNTRACED);
    say("SA_NOCLDSTOP: child %s, SIGCHLD pending %d", status_text(st), is_pending(SIGCHLD));
    kill(c, SIGKILL);
    next_chld("killed by SIGKILL", c);
    say_wait("reaped", c);
}

/* ---------------------------------------------------------------- SA_NOCLDWAIT, SIG_IGN */

static void sec_nocldwait(void)
{
    int st;
    signal(SIGCHLD, SIG_IGN);
    pid_t c = fork();
    if (c == 0)
        _exit(3);
    pid_t w = wait(&st);
    say("SIGCHLD ignored: wait blocks until the child is gone, then %s", w < 0 ? perr(errno) : "reaped it");
    c = fork();
    if (c == 0) {
        char *argv[6];
        helper_argv(argv, "dispositions", NULL, NULL);
        execve(g_self, argv, environ);
        _exit(127);
    }
    w = wait(&st);
    say("helper with SIGCHLD ignored: %s", w < 0 ? perr(errno) : "reaped");

    block(SIGCHLD);
    set_action(SIGCHLD, on_chld, SA_NOCLDWAIT);
    c = fork();
    if (c == 0)
        _exit(4);
    next_chld("SA_NOCLDWAIT with a handler", c);
    w = wait(&st);
    say("SA_NOCLDWAIT: wait %s", w < 0 ? perr(errno) : "reaped");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sa.sa_flags = SA_NOCLDWAIT;
    sigaction(SIGCHLD, &sa, NULL);
    c = fork();
    if (c == 0)
        _exit(5);
    w = wait(&st);
    say("SA_NOCLDWAIT with SIG_DFL: wait %s", w < 0 ? perr(errno) : "reaped");

    sa.sa_flags = 0;
    sigaction(SIGCHLD, &sa, NULL);
    c = fork();
    if (c == 0)
        _exit(6);
    w = wait(&st);
    say("plain SIG_DFL again: reaped %d, %s", w == c, status_text(st));
}

/* ---------------------------------------------------------------- getrusage(RUSAGE_CHILDREN) */

static long cpu_ms(const struct rusage *ru)
{
    return ru->ru_utime.tv_sec * 1000L + ru->ru_utime.tv_usec / 1000 + ru->ru_stime.tv_sec * 1000L +
           ru->ru_stime.tv_usec / 1000;
}

static void sec_rusage(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    say("fresh process: children maxrss 0 %d, cpu 0 %d", ru.ru_maxrss == 0, cpu_ms(&ru) == 0);
    pid_t c = fork();
    if (c == 0) {
        size_t len = 32 << 20;      /* maxrss is approximate (per-cpu counters): ask for half */
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED)
            memset(p, 1, len);
        burn_cpu(100);
        _exit(0);
    }
    siginfo_t si;
    waitid(P_PID, c, &si, WEXITED | WNOWAIT);
    getrusage(RUSAGE_CHILDREN, &ru);
    say("exited, not yet reaped: children maxrss 0 %d, cpu 0 %d", ru.ru_maxrss == 0, cpu_ms(&ru) == 0);
    struct rusage cru;
    int st;
    wait4(c, &st, 0, &cru);
    say("wait4's rusage: maxrss >= 16 MiB %d, cpu >= 50 ms %d", cru.ru_maxrss >= 16384, cpu_ms(&cru) >= 50);
    getrusage(RUSAGE_CHILDREN, &ru);
    say("reaped: children maxrss >= 16 MiB %d, cpu >= 50 ms %d", ru.ru_maxrss >= 16384, cpu_ms(&ru) >= 50);
    long before = cpu_ms(&ru);

    c = fork();
    if (c == 0) {
        pid_t gc = fork();
        if (gc == 0) {
            burn_cpu(100);
            _exit(0);
        }
        wait_for(gc, 0);
        _exit(0);
    }
    wait_for(c, 0);
    getrusage(RUSAGE_CHILDREN, &ru);
    say("a reaped grandchild's cpu counts too: %d", cpu_ms(&ru) - before >= 50);
    say("getrusage(7): %s", res(getrusage(7, &ru)));
}

#endif
