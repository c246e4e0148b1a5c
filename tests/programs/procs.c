/*
 * Processes (issue 8, section 2), natively compared: fork, vfork, clone and
 * clone3 (raw and CLONE_VM|CLONE_VFORK as posix_spawn uses it), posix_spawn,
 * execve in a child, exit/exit_group, reparenting to init and to a subreaper,
 * PR_SET_PDEATHSIG, wait4/waitid and their options, zombies, SIGCHLD, SA_NOCLDWAIT
 * and SIG_IGN, RUSAGE_CHILDREN, process groups and sessions, kill to pid/-pgrp/
 * 0/-1, tgkill/tkill, stop and continue, pipes/FIFOs/eventfd/epoll/locks and
 * offsets across fork, shared/private/DONTFORK/WIPEONFORK memory, close_range,
 * prlimit64 on a child, /proc/PID of a child.
 *
 * usage: procs [SECTION...]      (default: every section, in order)
 *        procs helper WORDS...   (what the program's own children exec)
 *
 * Every section runs in a fresh subprocess of main (its own process group),
 * with an alarm so that a hang shows as "killed by SIGALRM" in the diff and
 * later sections still run.  Main then reaps every child it has, orphans
 * included (init's job when it is pid 1).
 *
 * The test harness runs it natively as pid 1 of a new pid namespace
 * (`unshare --pid --fork --mount-proc`), the position it has in the sandbox:
 * kill(-1) and the /proc count run only there; elsewhere they print that they
 * did not run.
 */
#include "procs_create.h"
#include "procs_files.h"
#include "procs_groups.h"
#include "procs_mem.h"
#include "procs_wait.h"

static const struct {
    const char *name;
    void (*fn)(void);
} SECTIONS[] = {
    {"fork", sec_fork},           {"vfork", sec_vfork},       {"clone", sec_clone},
    {"spawn", sec_spawn},         {"exec", sec_exec},         {"exit", sec_exit},
    {"reparent", sec_reparent},   {"pdeathsig", sec_pdeathsig}, {"wait", sec_wait},
    {"waitid", sec_waitid},       {"stop", sec_stop},         {"zombie", sec_zombie},
    {"sigchld", sec_sigchld},     {"nocldwait", sec_nocldwait}, {"rusage", sec_rusage},
    {"ids", sec_ids},             {"kill", sec_kill},         {"proc", sec_proc},
    {"pipes", sec_pipes},         {"offsets", sec_offsets},   {"locks", sec_locks},
    {"eventfd", sec_eventfd},     {"fds", sec_fds},           {"memory", sec_memory},
};

/* ---------------------------------------------------------------- what children exec */

static int helper(int argc, char **argv)
{
    const char *what = argc > 2 ? argv[2] : "";
    if (!strcmp(what, "exit") && argc > 3)
        return atoi(argv[3]);
    if (!strcmp(what, "ppid-is") && argc > 3) {
        say("helper: ppid is the parent that forked it: %d", getppid() == atoi(argv[3]));
        return 0;
    }
    if (!strcmp(what, "spawned")) {
        say("helper: spawned, own process group %d, fd 5 open %d", getpgrp() == getpid(), fcntl(5, F_GETFD) >= 0);
        return 0;
    }
    if (!strcmp(what, "dispositions")) {
        struct sigaction u1, u2, ch;
        sigaction(SIGUSR1, NULL, &u1);
        sigaction(SIGUSR2, NULL, &u2);
        sigaction(SIGCHLD, NULL, &ch);
        say("helper: after execve SIGUSR1 (was caught) %s, SIGUSR2 (was ignored) %s, SIGCHLD %s",
            u1.sa_handler == SIG_DFL ? "SIG_DFL" : "other", u2.sa_handler == SIG_IGN ? "SIG_IGN" : "other",
            ch.sa_handler == SIG_IGN ? "SIG_IGN" : ch.sa_handler == SIG_DFL ? "SIG_DFL" : "other");
        return 0;
    }
    if (!strcmp(what, "wait-fd") && argc > 3) {
        char c;
        int fd = atoi(argv[3]);
        while (read(fd, &c, 1) > 0 || errno == EINTR) {
        }
        return 0;
    }
    say("helper: unknown request %s", what);
    return 2;
}

/* ---------------------------------------------------------------- main */

static void run_section(int i)
{
    say("== %s ==", SECTIONS[i].name);
    pid_t pid = fork();
    if (pid < 0)
        return say("-- %s: fork failed: %s", SECTIONS[i].name, errname(errno));
    if (pid == 0) {
        setpgid(0, 0);
        alarm(SECTION_ALARM);
        SECTIONS[i].fn();
        _exit(0);
    }
    int section_status = -1;
    for (;;) {                      /* the section, and any orphan that came to us */
        int st;
        pid_t w = waitpid(-1, &st, 0);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            break;
        if (w == pid)
            section_status = st;
    }
    if (section_status != 0)
        say("-- %s ended: %s", SECTIONS[i].name,
            section_status == -1 ? "never reaped" : status_text(section_status));
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "helper"))
        return helper(argc, argv);
    g_is_init = getpid() == 1;
    /* As a pid namespace's init, main is in a group and session it cannot see (ids 0):
     * its own session makes both sides alike.  A sandbox may already have made it one. */
    setsid();
    say("main: pid 1 %d, pgid==pid %d, sid==pid %d, ppid 0 %d", g_is_init, getpgrp() == getpid(),
        getsid(0) == getpid(), getppid() == 0);
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/kvmbox-procs-XXXXXX");
    if (!mkdtemp(g_tmpdir))
        say("mkdtemp: %s", errname(errno));
    int ran = 0;
    for (unsigned i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++)
            wanted |= !strcmp(argv[a], SECTIONS[i].name);
        if (wanted) {
            run_section(i);
            ran++;
        }
    }
    rmdir(g_tmpdir);
    say("sections run: %d", ran);
    return 0;
}
