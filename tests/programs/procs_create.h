/*
 * procs.c sections that create and end processes: fork, vfork, clone (raw and
 * as posix_spawn uses it), clone3, posix_spawn, execve in a child, exit and
 * exit_group, reparenting to init or a subreaper, PR_SET_PDEATHSIG.
 */
#ifndef KVMBOX_PROCS_CREATE_H
#define KVMBOX_PROCS_CREATE_H

#include "procs.h"
#include <spawn.h>

struct clone_args_k {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

static volatile int g_value;
static volatile int g_vf_before, g_vf_late, g_vf_errno;
static char g_stack[64 * 1024] __attribute__((aligned(16)));

static int exit_seven(void *arg)
{
    g_value = 2;
    return 7;
}

/* ---------------------------------------------------------------- fork */

static void sec_fork(void)
{
    pid_t parent = getpid();
    g_value = 1;
    pid_t pid = fork();
    if (pid == 0) {
        say("child: ppid==parent %d, pid!=parent %d", getppid() == parent, getpid() != parent);
        g_value = 2;
        _exit(7);
    }
    int st = 0;
    pid_t w = waitpid(pid, &st, 0);
    say("fork returned a pid: %d; waitpid returned it: %d", pid > 0, w == pid);
    say("child: %s", status_text(st));
    say("parent's global unchanged by the child: %d", g_value == 1);

    /* 20 children alive at once, reaped in any order. */
    pid_t kids[20];
    int sum = 0, reaped = 0;
    for (int i = 0; i < 20; i++) {
        kids[i] = fork();
        if (kids[i] == 0)
            _exit(i + 1);
    }
    for (;;) {
        pid_t r = waitpid(-1, &st, 0);
        if (r < 0)
            break;
        for (int i = 0; i < 20; i++)
            if (kids[i] == r) {
                reaped++;
                sum += WEXITSTATUS(st) == i + 1;
            }
    }
    say("20 children: reaped %d, each with its own status %d, then %s", reaped, sum, perr(errno));
    pid = child(exit_seven, NULL);
    say_wait("child() helper", pid);
}

/* ---------------------------------------------------------------- vfork */

static void sec_vfork(void)
{
    g_vf_before = g_vf_late = 0;
    pid_t pid = vfork();
    if (pid == 0) {
        g_vf_before = 1;
        say("vfork child runs while the parent waits");
        sleep_ms(50);
        g_vf_late = 1;
        _exit(3);
    }
    say("parent resumes after the child's _exit; saw both of its writes: %d %d", g_vf_before, g_vf_late);
    say_wait("vfork child", pid);

    g_vf_before = g_vf_late = 0;
    pid = vfork();
    if (pid == 0) {
        char *argv[6];
        helper_argv(argv, "exit", "4", NULL);
        g_vf_before = 1;
        sleep_ms(50);
        g_vf_late = 1;
        execve(g_self, argv, environ);
        _exit(127);
    }
    say("parent resumes only after the child's execve: %d %d", g_vf_before, g_vf_late);
    say_wait("vfork+execve child", pid);

    g_vf_errno = 0;
    pid = vfork();
    if (pid == 0) {
        char *argv[] = {"nope", NULL};
        execve("/nonexistent/program", argv, environ);
        g_vf_errno = errno;
        _exit(127);
    }
    say("vfork child's failed execve: %s", perr(g_vf_errno));
    say_wait("vfork child after a failed execve", pid);
}

/* ---------------------------------------------------------------- clone, clone3 */

static int vm_child(void *arg)
{
    g_value = 42;
    if (arg) {
        char *argv[6];
        helper_argv(argv, "exit", (const char *)arg, NULL);
        execve(g_self, argv, environ);
        return 127;
    }
    return 9;
}

/* clone3 with a new stack: the child calls fn(arg) on it and exits with its value. */
static long clone3_on_stack(struct clone_args_k *a, int (*fn)(void *), void *arg)
{
    long ret;
    register void *r12 __asm__("r12") = (void *)fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $60, %%eax\n\t"
        "syscall\n\t"
        "hlt\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "0"((long)SYS_clone3), "D"(a), "S"(sizeof *a), "r"(r12), "r"(r13)
        : "rcx", "r11", "memory");
    return ret;
}

static void sec_clone(void)
{
    g_value = 1;
    long r = syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
    if (r == 0) {
        g_value = 3;
        _exit(5);
    }
    say("raw clone(SIGCHLD): %s; parent's memory separate: %d", res(r), g_value == 1);
    say_wait("raw clone child", (pid_t)r);

    /* Exit signals other than SIGCHLD: a "clone child" that wait sees only with __WCLONE/__WALL. */
    block(SIGUSR1);
    r = syscall(SYS_clone, SIGUSR1, 0, NULL, NULL, 0);
    if (r == 0)
        _exit(6);
    int st;
    pid_t w = waitpid((pid_t)r, &st, 0);
    say("clone(exit signal SIGUSR1) then waitpid without __WCLONE: %s", w < 0 ? perr(errno) : "reaped");
    w = waitpid((pid_t)r, &st, __WCLONE);
    say("waitpid __WCLONE: reaped %d, %s; SIGUSR1 pending in the parent %d", w == r, status_text(st),
        is_pending(SIGUSR1));
    r = syscall(SYS_clone, 0, 0, NULL, NULL, 0);
    if (r == 0)
        _exit(8);
    w = waitpid((pid_t)r, &st, __WALL);
    say("clone(no exit signal), waitpid __WALL: reaped %d, %s", w == r, status_text(st));

    /* As posix_spawn does: CLONE_VM|CLONE_VFORK on a separate stack. */
    g_value = 1;
    pid_t pid = clone(vm_child, g_stack + sizeof g_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
    say("clone(CLONE_VM|CLONE_VFORK): %s; child's write visible: %d", res(pid), g_value == 42);
    say_wait("CLONE_VM child", pid);
    g_value = 1;
    pid = clone(vm_child, g_stack + sizeof g_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, "10");
    say("clone(CLONE_VM|CLONE_VFORK) then execve: %s; child's write visible: %d", res(pid), g_value == 42);
    say_wait("CLONE_VM+execve child", pid);

    errno = 0;
    r = syscall(SYS_clone, CLONE_THREAD | SIGCHLD, 0, NULL, NULL, 0);
    say("clone(CLONE_THREAD) without CLONE_SIGHAND: %s", res(r));
    r = syscall(SYS_clone, CLONE_SIGHAND | SIGCHLD, 0, NULL, NULL, 0);
    say("clone(CLONE_SIGHAND) without CLONE_VM: %s", res(r));

    /* clone3 */
    struct clone_args_k a;
    memset(&a, 0, sizeof a);
    a.exit_signal = SIGCHLD;
    g_value = 1;
    r = syscall(SYS_clone3, &a, sizeof a);
    if (r == 0) {
        g_value = 5;
        _exit(11);
    }
    say("clone3(exit_signal SIGCHLD): %s; parent's memory separate: %d", res(r), g_value == 1);
    say_wait("clone3 child", (pid_t)r);
    memset(&a, 0, sizeof a);
    a.flags = CLONE_VM | CLONE_VFORK;
    a.exit_signal = SIGCHLD;
    a.stack = (uint64_t)(uintptr_t)g_stack;
    a.stack_size = sizeof g_stack;
    g_value = 1;
    r = clone3_on_stack(&a, vm_child, "12");
    say("clone3(CLONE_VM|CLONE_VFORK) then execve: %s; child's write visible: %d", res(r), g_value == 42);
    say_wait("clone3 CLONE_VM child", (pid_t)r);
    r = syscall(SYS_clone3, &a, 32);
    say("clone3 with a too small size: %s", res(r));
    memset(&a, 0, sizeof a);
    a.exit_signal = 100;
    r = syscall(SYS_clone3, &a, sizeof a);
    say("clone3 with exit_signal 100: %s", res(r));
}

/* ---------------------------------------------------------------- posix_spawn */

static void sec_spawn(void)
{
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 5, "/dev/null", O_RDONLY, 0);
    char *argv[6];
    helper_argv(argv, "spawned", NULL, NULL);
    pid_t pid = 0;
    int err = posix_spawn(&pid, g_self, &fa, &attr, argv, environ);
    if (err == 0)
        say_wait("spawned helper", pid);
    say("posix_spawn: %s", perr(err));
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    err = posix_spawn(&pid, "/nonexistent/program", NULL, NULL, argv, environ);
    if (err == 0) {     /* a libc that reports the failure as exit status 127 */
        int st = wait_for(pid, 0);
        say("posix_spawn of a missing program: ok, then %s", status_text(st));
    } else {
        say("posix_spawn of a missing program: %s", perr(err));
    }
}

/* ---------------------------------------------------------------- execve in a child */

static void sec_exec(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return say("pipe2: %s", errname(errno));
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[6], arg[32];
        snprintf(arg, sizeof arg, "%d", (int)getppid());
        helper_argv(argv, "ppid-is", arg, NULL);
        close(p[0]);
        execve(g_self, argv, environ);
        _exit(127);
    }
    close(p[1]);
    char c;
    ssize_t n = read(p[0], &c, 1);
    close(p[0]);
    say_wait("exec'd helper", pid);
    say("a close-on-exec pipe reads EOF once the child's execve succeeded: %d", n == 0);

    pid = fork();
    if (pid == 0) {
        char *argv[6];
        helper_argv(argv, "exit", "42", NULL);
        execve(g_self, argv, environ);
        _exit(127);
    }
    say_wait("exec'd helper exit 42", pid);

    pid = fork();
    if (pid == 0) {
        char *argv[] = {"nope", NULL};
        execve("/nonexistent/program", argv, environ);
        say("child: execve of a missing program: %s", errname(errno));
        _exit(127);
    }
    say_wait("child after a failed execve", pid);

    /* An ignored signal stays ignored across execve, a caught one becomes SIG_DFL. */
    pid = fork();
    if (pid == 0) {
        char *argv[6];
        signal(SIGUSR2, SIG_IGN);
        set_handler(SIGUSR1, noop_handler, 0);
        helper_argv(argv, "dispositions", NULL, NULL);
        execve(g_self, argv, environ);
        _exit(127);
    }
    say_wait("helper reporting its dispositions", pid);
}

/* ---------------------------------------------------------------- exit and exit_group */

static void on_exit_write(void)
{
    say("child: atexit handler ran");
}

static void sec_exit(void)
{
    static const struct {
        const char *how;
        int code;
    } cases[] = {{"exit syscall", 11}, {"exit_group syscall", 12}, {"exit()", 13}, {"_exit()", 14},
                 {"exit_group(257)", 257}, {"exit(-1)", -1}};
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            atexit(on_exit_write);
            switch (i) {
            case 0: syscall(SYS_exit, cases[i].code); break;
            case 1: case 4: syscall(SYS_exit_group, cases[i].code); break;
            case 2: case 5: exit(cases[i].code);
            default: _exit(cases[i].code);
            }
            _exit(99);
        }
        say_wait(cases[i].how, pid);
    }
    /* stdio buffered in a child is flushed by exit(), dropped by _exit(). */
    pid_t pid = fork();
    if (pid == 0) {
        printf("child: stdio flushed by exit()\n");
        exit(0);
    }
    say_wait("exit() flushes", pid);
    pid = fork();
    if (pid == 0) {
        printf("child: stdio text, then _exit() (glibc drops it, musl wrote it already)\n");
        _exit(0);
    }
    say_wait("_exit() does not", pid);
}

/* ---------------------------------------------------------------- reparenting */

/* Wait (up to 5 s) for getppid() to stop being `old`. */
static int ppid_changes_from(pid_t old)
{
    for (int i = 0; i < 5000; i++) {
        if (getppid() != old)
            return 1;
        sleep_ms(1);
    }
    return 0;
}

static void orphan_report(int fd, pid_t section)
{
    pid_t a = getpid();
    pid_t b = fork();
    if (b == 0) {
        alarm(10);
        int changed = ppid_changes_from(a);
        pid_t np = getppid();
        send_int(fd, changed | (np == 1) << 1 | (np == section) << 2);
        _exit(0);
    }
    _exit(b > 0 ? 0 : 1);
}

static void sec_reparent(void)
{
    pid_t me = getpid();
    int p[2];
    if (pipe(p) != 0)
        return say("pipe: %s", errname(errno));
    pid_t a = fork();
    if (a == 0)
        orphan_report(p[1], me);
    say_wait("middle process", a);
    int v = recv_int(p[0]);
    say("orphan of a dead parent: reparented %d, to pid 1 %d, to this section %d", v & 1, v >> 1 & 1, v >> 2 & 1);

    int r = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    int flag = -1;
    prctl(PR_GET_CHILD_SUBREAPER, &flag, 0, 0, 0);
    say("PR_SET_CHILD_SUBREAPER: %s, PR_GET_CHILD_SUBREAPER %d", res(r), flag);
    pid_t k = fork();
    if (k == 0) {
        int f = -1;
        prctl(PR_GET_CHILD_SUBREAPER, &f, 0, 0, 0);
        _exit(f);
    }
    say_wait("a forked child's PR_GET_CHILD_SUBREAPER", k);
    a = fork();
    if (a == 0)
        orphan_report(p[1], me);
    say_wait("middle process", a);
    v = recv_int(p[0]);
    say("orphan under a subreaper: reparented %d, to pid 1 %d, to this section %d", v & 1, v >> 1 & 1, v >> 2 & 1);
    int st = 0;
    pid_t w = waitpid(-1, &st, 0);
    say("the subreaper reaps the orphan: %d, %s", w > 0 && w != a, status_text(st));
    close(p[0]);
    close(p[1]);
}

/* ---------------------------------------------------------------- PR_SET_PDEATHSIG */

static void sec_pdeathsig(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    int p[2];
    if (pipe(p) != 0)
        return say("pipe: %s", errname(errno));
    pid_t a = fork();
    if (a == 0) {
        pid_t b = fork();
        if (b == 0) {
            alarm(10);
            int r = prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
            int sig = -1;
            prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
            pid_t c = fork();
            if (c == 0) {
                int s2 = -1;
                prctl(PR_GET_PDEATHSIG, &s2, 0, 0, 0);
                _exit(s2);
            }
            int st = wait_for(c, 0);
            send_int(p[1], (r == 0) | sig << 1 | (WIFEXITED(st) ? WEXITSTATUS(st) : 99) << 8);
            for (;;)
                pause();
        }
        int v = recv_int(p[0]);     /* the grandchild is armed: now die */
        send_int(p[1], v);
        _exit(0);
    }
    say_wait("parent of the armed process", a);
    int v = recv_int(p[0]);
    say("PR_SET_PDEATHSIG: %s, PR_GET_PDEATHSIG %s, in its forked child %d", v & 1 ? "ok" : "failed",
        sig_name(v >> 1 & 0x7f), v >> 8);
    int st = 0;
    pid_t w = waitpid(-1, &st, 0);
    say("after its parent died, the armed process: %s (reaped by the subreaper %d)", status_text(st), w > 0);
    close(p[0]);
    close(p[1]);
}

#endif
