/*
 * Scheduling calls, membarrier and thread names, in one thread and in several:
 * sched_{get,set}affinity (sizes, errors, a subset read back, per thread and by
 * tid), getcpu and sched_getcpu inside the mask, Cpus_allowed in /proc, the
 * policy calls, membarrier's commands and registrations (across fork and
 * execve), PR_SET_NAME/PR_GET_NAME and /proc/.../comm per thread, and
 * /proc/<pid>/task, /proc/<tid>, Threads: and num_threads.
 *
 * CPU numbers and counts differ between machines and between a native run
 * and the sandbox's numbering, so only facts relative to the allowed set are
 * printed ("the last allowed CPU", "as many as the mask").
 */
#include "common.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#ifndef SYS_membarrier
#define SYS_membarrier 324
#endif
#ifndef SYS_getcpu
#define SYS_getcpu 309
#endif
#ifndef SCHED_BATCH
#define SCHED_BATCH 3
#endif
#ifndef SCHED_IDLE
#define SCHED_IDLE 5
#endif

#define NTHREADS 4
enum { MB_QUERY = 0, MB_GLOBAL = 1, MB_GLOBAL_EXP = 2, MB_REG_GLOBAL_EXP = 4, MB_PRIV = 8,
       MB_REG_PRIV = 16, MB_SYNC = 32, MB_REG_SYNC = 64, MB_RSEQ = 128, MB_REG_RSEQ = 256,
       MB_GET_REG = 512 };

static char self_path[512];
static cpu_set_t allowed;          /* the process's mask at start */
static int allowed_cpus[CPU_SETSIZE], nallowed;

static long mb(int cmd, unsigned flags, int cpu)
{
    return syscall(SYS_membarrier, cmd, flags, cpu);
}

static long gettid_(void)
{
    return syscall(SYS_gettid);
}

/* --- /proc helpers ------------------------------------------------------------------------ */
static int read_file(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = 0;
    fclose(f);
    return (int)got;
}

/* The value after "key:\t" in a status file ("" when missing). */
static const char *status_field(const char *path, const char *key, char *out, size_t n)
{
    char buf[8192], *p;
    out[0] = 0;
    if (read_file(path, buf, sizeof buf) < 0)
        return out;
    size_t k = strlen(key);
    for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, key, k) && p[k] == ':') {
            p += k + 1;
            while (*p == '\t' || *p == ' ')
                p++;
            size_t len = strcspn(p, "\n");
            if (len >= n)
                len = n - 1;
            memcpy(out, p, len);
            out[len] = 0;
            break;
        }
    return out;
}

/* "0-3,6" -> a set. */
static void parse_list(const char *s, cpu_set_t *set)
{
    CPU_ZERO(set);
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b = a;
        if (end == s)
            return;
        if (*end == '-')
            b = strtol(end + 1, &end, 10);
        for (long c = a; c <= b && c < CPU_SETSIZE; c++)
            CPU_SET(c, set);
        s = *end == ',' ? end + 1 : end;
    }
}

/* "ff,0000000f" (hex, 32-bit groups) -> a set. */
static void parse_hex(const char *s, cpu_set_t *set)
{
    CPU_ZERO(set);
    int bit = 0;
    for (const char *p = s + strlen(s); p > s && bit < CPU_SETSIZE;) {
        char c = *--p;
        if (c == ',')
            continue;
        int v = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
        for (int i = 0; i < 4; i++, bit++)
            if (v >> i & 1)
                CPU_SET(bit, set);
    }
}

/* Both Cpus_allowed lines of a status file describe exactly `want`. */
static int status_mask_is(const char *path, const cpu_set_t *want)
{
    char v[512];
    cpu_set_t a, b;
    parse_hex(status_field(path, "Cpus_allowed", v, sizeof v), &a);
    parse_list(status_field(path, "Cpus_allowed_list", v, sizeof v), &b);
    return CPU_EQUAL(&a, want) && CPU_EQUAL(&b, want);
}

static int count_dir(const char *path, const char *name, int *found)
{
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *e;
    if (found)
        *found = 0;
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        if (found && name && !strcmp(e->d_name, name))
            *found = 1;
    }
    closedir(d);
    return n;
}

/* --- one thread ------------------------------------------------------------------------------ */
static int cpu_now(int how)
{
    if (how == 0)
        return sched_getcpu();
    unsigned cpu = 9999, node = 9999;
    if (syscall(SYS_getcpu, &cpu, &node, NULL) != 0 || node != 0)
        return -2;
    return (int)cpu;
}

/* Narrow the caller to `cpu`; 1 if the mask, getcpu, sched_getcpu and its status file agree. */
static int pin_and_check(int cpu)
{
    cpu_set_t set, got;
    char path[64];
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        return 0;
    CPU_ZERO(&got);
    sched_getaffinity(0, sizeof got, &got);
    snprintf(path, sizeof path, "/proc/self/task/%ld/status", gettid_());
    return CPU_EQUAL(&set, &got) && cpu_now(0) == cpu && cpu_now(1) == cpu
           && status_mask_is(path, &set);
}

static void affinity(void)
{
    cpu_set_t set;
    long r = syscall(SYS_sched_getaffinity, 0, sizeof set, &set);
    check(r > 0 && r % 8 == 0 && r <= (long)sizeof set, "sched_getaffinity returns the mask's bytes");
    check(nallowed >= 1, "at least one CPU allowed");
    check(CPU_ISSET(cpu_now(0), &allowed) && CPU_ISSET(cpu_now(1), &allowed),
          "sched_getcpu and getcpu name an allowed CPU");
    check(status_mask_is("/proc/self/status", &allowed), "/proc/self/status Cpus_allowed is the mask");

    errno = 0;
    check_err(syscall(SYS_sched_getaffinity, 0, 0, &set), EINVAL, "getaffinity size 0");
    check_err(syscall(SYS_sched_getaffinity, 0, 4, &set), EINVAL, "getaffinity size 4");
    check_err(syscall(SYS_sched_getaffinity, 0, 12, &set), EINVAL, "getaffinity size 12");
    check_err(syscall(SYS_sched_getaffinity, -1, sizeof set, &set), ESRCH, "getaffinity pid -1");
    check_err(syscall(SYS_sched_getaffinity, 0x7ffffff0, sizeof set, &set), ESRCH, "getaffinity no such pid");
    check_err(syscall(SYS_sched_getaffinity, 0, sizeof set, BADPTR), EFAULT, "getaffinity bad pointer");
    check_err(syscall(SYS_sched_setaffinity, 0, 0, &set), EINVAL, "setaffinity size 0 (empty)");
    check_err(syscall(SYS_sched_setaffinity, -1, sizeof set, &allowed), ESRCH, "setaffinity pid -1");
    check_err(syscall(SYS_sched_setaffinity, 0x7ffffff0, sizeof set, &allowed), ESRCH, "setaffinity no such pid");
    check_err(syscall(SYS_sched_setaffinity, 0, sizeof set, BADPTR), EFAULT, "setaffinity bad pointer");
    CPU_ZERO(&set);
    CPU_SET(CPU_SETSIZE - 1, &set);
    check_err(syscall(SYS_sched_setaffinity, 0, sizeof set, &set), EINVAL, "setaffinity disjoint set");

    int last = allowed_cpus[nallowed - 1];
    check(pin_and_check(last), "pinned to the last allowed CPU: mask, getcpu, sched_getcpu, status");
    CPU_ZERO(&set);
    CPU_SET(last, &set);
    check(status_mask_is("/proc/self/status", &set), "/proc/self/status follows the leader's mask");
    check(pin_and_check(allowed_cpus[0]), "pinned to the first allowed CPU");
    set = allowed;
    CPU_SET(CPU_SETSIZE - 1, &set);                 /* a bit no machine has: dropped */
    check(sched_setaffinity(0, sizeof set, &set) == 0, "set the whole mask plus an absent CPU");
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    check(CPU_EQUAL(&set, &allowed), "reads back the allowed mask");
    check(sched_yield() == 0, "sched_yield");
}

/* Raw calls: musl's sched_{get,set}scheduler wrappers only return ENOSYS. */
static void policies(void)
{
    struct sched_param p = { 0 };
    check(syscall(SYS_sched_getscheduler, 0) == SCHED_OTHER, "sched_getscheduler: SCHED_OTHER");
    check(syscall(SYS_sched_getparam, 0, &p) == 0 && p.sched_priority == 0, "sched_getparam: 0");
    int pols[] = { SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE };
    for (unsigned i = 0; i < sizeof pols / sizeof pols[0]; i++)
        printf("policy %d: priority %d..%d\n", pols[i], sched_get_priority_min(pols[i]),
               sched_get_priority_max(pols[i]));
    check_err(sched_get_priority_max(42), EINVAL, "priority_max(42)");
    check_err(sched_get_priority_min(-1), EINVAL, "priority_min(-1)");
    p.sched_priority = 0;
    check(syscall(SYS_sched_setscheduler, 0, SCHED_BATCH, &p) == 0
          && syscall(SYS_sched_getscheduler, 0) == SCHED_BATCH, "SCHED_BATCH set and read back");
    check(syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &p) == 0
          && syscall(SYS_sched_getscheduler, 0) == SCHED_OTHER, "SCHED_OTHER again");
    check_err(syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, &p), EINVAL, "SCHED_FIFO priority 0");
    p.sched_priority = 5;
    check_err(syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &p), EINVAL, "SCHED_OTHER priority 5");
    check_err(syscall(SYS_sched_setscheduler, 0, 42, &p), EINVAL, "policy 42");
    check_err(syscall(SYS_sched_setscheduler, -1, SCHED_OTHER, &p), EINVAL, "setscheduler pid -1");
    check_err(syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, NULL), EINVAL, "setscheduler NULL param");
    check_err(syscall(SYS_sched_getscheduler, -1), EINVAL, "getscheduler pid -1");
    check_err(syscall(SYS_sched_getscheduler, 0x7ffffff0), ESRCH, "getscheduler no such pid");
    struct timespec ts;
    check(sched_rr_get_interval(0, &ts) == 0, "sched_rr_get_interval");
}

/* --- membarrier ----------------------------------------------------------------------------- */
static void mb_show(const char *what, int cmd)
{
    errno = 0;
    long r = mb(cmd, 0, 0);
    printf("  %s -> %s\n", what, r < 0 ? errname(errno) : r == 0 ? "0" : "value");
}

static void mb_after_register(int reg, const char *name)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        printf("registered %s:\n", name);
        mb_show("register", reg);
        printf("  registrations %ld\n", mb(MB_GET_REG, 0, 0));
        mb_show("PRIVATE_EXPEDITED", MB_PRIV);
        mb_show("PRIVATE_EXPEDITED_SYNC_CORE", MB_SYNC);
        mb_show("PRIVATE_EXPEDITED_RSEQ", MB_RSEQ);
        mb_show("GLOBAL_EXPEDITED", MB_GLOBAL_EXP);
        fflush(stdout);
        _exit(0);
    }
    waitpid(c, NULL, 0);
}

static void membarrier(void)
{
    long q = mb(MB_QUERY, 0, 0);
    check(q > 0 && (q & (MB_PRIV | MB_REG_PRIV)) == (MB_PRIV | MB_REG_PRIV),
          "QUERY offers PRIVATE_EXPEDITED and its registration");
    check((q & MB_GET_REG) && (q & MB_GLOBAL), "QUERY offers GLOBAL and GET_REGISTRATIONS");
    check_err(mb(MB_QUERY, 1, 0), EINVAL, "QUERY with a flag");
    check_err(mb(3, 0, 0), EINVAL, "two commands at once");
    check_err(mb(1 << 10, 0, 0), EINVAL, "an unknown command");
    check_err(mb(-1, 0, 0), EINVAL, "command -1");
    check_err(mb(MB_PRIV, 1, 0), EINVAL, "PRIVATE_EXPEDITED with FLAG_CPU");
    check(mb(MB_GLOBAL, 0, 0) == 0, "GLOBAL");
    check(mb(MB_GLOBAL_EXP, 0, 0) == 0, "GLOBAL_EXPEDITED needs no registration");
    printf("registrations at start %ld\n", mb(MB_GET_REG, 0, 0));
    mb_after_register(MB_REG_GLOBAL_EXP, "GLOBAL_EXPEDITED");
    mb_after_register(MB_REG_PRIV, "PRIVATE_EXPEDITED");
    mb_after_register(MB_REG_SYNC, "PRIVATE_EXPEDITED_SYNC_CORE");
    mb_after_register(MB_REG_RSEQ, "PRIVATE_EXPEDITED_RSEQ");
    check(mb(MB_REG_PRIV, 0, 0) == 0 && mb(MB_REG_PRIV, 0, 0) == 0, "registering twice");
    check(mb(MB_PRIV, 0, 0) == 0, "PRIVATE_EXPEDITED once registered");
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(mb(MB_GET_REG, 0, 0) == MB_REG_PRIV && mb(MB_PRIV, 0, 0) == 0 ? 0 : 1);
    int st;
    waitpid(c, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a forked child keeps the registration");
}

/* --- names ------------------------------------------------------------------------------------ */
static int comm_is(const char *path, const char *want)
{
    char buf[64];
    if (read_file(path, buf, sizeof buf) < 0)
        return 0;
    buf[strcspn(buf, "\n")] = 0;
    return strcmp(buf, want) == 0;
}

static int write_comm(const char *path, const char *name)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    int r = fputs(name, f) < 0 ? -errno : 0;
    if (fclose(f) != 0 && r == 0)
        r = -errno;
    return r;
}

static void names(void)
{
    char name[32] = "", path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", gettid_());
    check(prctl(PR_SET_NAME, "sched-main") == 0, "PR_SET_NAME");
    check(prctl(PR_GET_NAME, name) == 0 && !strcmp(name, "sched-main"), "PR_GET_NAME");
    check(comm_is("/proc/self/comm", "sched-main") && comm_is(path, "sched-main"),
          "/proc/self/comm and task/<tid>/comm");
    prctl(PR_SET_NAME, "a-name-longer-than-fifteen");
    prctl(PR_GET_NAME, name);
    check(!strcmp(name, "a-name-longer-t"), "a long name is cut to 15 bytes: %s", name);
    check(write_comm(path, "via-proc") == 0, "write task/<tid>/comm");
    prctl(PR_GET_NAME, name);
    check(!strcmp(name, "via-proc"), "PR_GET_NAME sees it");
    check(write_comm("/proc/self/comm", "via-self\n") == 0, "write /proc/self/comm");
    prctl(PR_GET_NAME, name);
    check(!strcmp(name, "via-self\n"), "a trailing newline written is part of the name");
    prctl(PR_SET_NAME, "sched-main");
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        prctl(PR_GET_NAME, name);
        _exit(strcmp(name, "sched-main") == 0 ? 0 : 1);
    }
    char cpath[64];
    snprintf(cpath, sizeof cpath, "/proc/%d/comm", (int)c);
    check_ret_err(write_comm(cpath, "nope"), EINVAL, "write another process's comm");
    int st;
    waitpid(c, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a forked child has its parent's name");
}

/* --- threads ----------------------------------------------------------------------------------- */
static atomic_int phase, ready;
static long tids[NTHREADS];
static int results[NTHREADS];

static void *worker(void *arg)
{
    int i = (int)(long)arg;
    char name[16];
    snprintf(name, sizeof name, "worker-%d", i);
    prctl(PR_SET_NAME, name);
    tids[i] = gettid_();
    int ok = pin_and_check(allowed_cpus[i % nallowed]);
    atomic_fetch_add(&ready, 1);
    while (atomic_load(&phase) == 0)
        usleep(1000);
    atomic_fetch_add(&ready, 1);
    while (atomic_load(&phase) == 1)
        ;                                          /* spin in guest code: membarrier interrupts */
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    ok = ok && CPU_EQUAL(&set, &allowed);          /* main gave it the whole mask back by tid */
    char got[16] = "";
    prctl(PR_GET_NAME, got);
    snprintf(name, sizeof name, "renamed-%d", i);
    ok = ok && !strcmp(got, name);                 /* main renamed it through /proc */
    results[i] = ok;
    return NULL;
}

static void threads(void)
{
    pthread_t th[NTHREADS];
    char path[128], v[64];
    prctl(PR_SET_NAME, "sched-main");
    for (long i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)i);
    while (atomic_load(&ready) != NTHREADS)
        usleep(1000);
    int found = 0;
    check(count_dir("/proc/self/task", NULL, NULL) == NTHREADS + 1, "/proc/self/task lists %d threads",
          NTHREADS + 1);
    check(atoi(status_field("/proc/self/status", "Threads", v, sizeof v)) == NTHREADS + 1,
          "Threads: in /proc/self/status");
    char stat[1024];
    read_file("/proc/self/stat", stat, sizeof stat);
    char *p = strrchr(stat, ')');
    int field = 2, num_threads = -1;
    for (; p && *p; p++)
        if (*p == ' ' && ++field == 20)
            num_threads = atoi(p + 1);
    check(num_threads == NTHREADS + 1, "num_threads in /proc/self/stat");
    check(comm_is("/proc/self/comm", "sched-main"), "/proc/self/comm is the leader's name");
    int names_ok = 1, masks_ok = 1, procs_ok = 1, listed = 0;
    for (int i = 0; i < NTHREADS; i++) {
        char want[16];
        snprintf(want, sizeof want, "worker-%d", i);
        snprintf(path, sizeof path, "/proc/self/task/%ld/comm", tids[i]);
        names_ok &= comm_is(path, want);
        snprintf(path, sizeof path, "/proc/%ld/task/%ld/stat", (long)getpid(), tids[i]);
        read_file(path, stat, sizeof stat);
        char head[64];
        snprintf(head, sizeof head, "%ld (%s) ", tids[i], want);
        names_ok &= !strncmp(stat, head, strlen(head));
        cpu_set_t set, one;
        CPU_ZERO(&set);
        CPU_ZERO(&one);
        CPU_SET(allowed_cpus[i % nallowed], &one);
        masks_ok &= sched_getaffinity(tids[i], sizeof set, &set) == 0 && CPU_EQUAL(&set, &one);
        snprintf(path, sizeof path, "/proc/%ld/status", tids[i]);   /* /proc/<tid>: not listed */
        procs_ok &= atol(status_field(path, "Pid", v, sizeof v)) == tids[i]
                    && atol(status_field(path, "Tgid", v, sizeof v)) == getpid();
        snprintf(v, sizeof v, "%ld", tids[i]);
        count_dir("/proc", v, &found);
        listed |= found;
        snprintf(path, sizeof path, "/proc/%ld/task", tids[i]);
        procs_ok &= count_dir(path, NULL, NULL) == NTHREADS + 1;
        masks_ok &= sched_setaffinity(tids[i], sizeof allowed, &allowed) == 0;
        snprintf(path, sizeof path, "/proc/self/task/%ld/comm", tids[i]);
        snprintf(want, sizeof want, "renamed-%d", i);
        names_ok &= write_comm(path, want) == 0;
    }
    check(names_ok, "each thread's comm and stat show its own name");
    check(masks_ok, "each thread's mask, read and set by its tid");
    check(procs_ok, "/proc/<tid> works for every thread");
    check(!listed, "no thread but the leader is listed in /proc");
    cpu_set_t mine;
    CPU_ZERO(&mine);
    sched_getaffinity(0, sizeof mine, &mine);
    check(CPU_EQUAL(&mine, &allowed), "the main thread's own mask is unchanged");
    atomic_store(&phase, 1);
    while (atomic_load(&ready) != 2 * NTHREADS)
        usleep(1000);
    check(mb(MB_REG_PRIV, 0, 0) == 0 && mb(MB_PRIV, 0, 0) == 0 && mb(MB_PRIV, 0, 0) == 0,
          "PRIVATE_EXPEDITED while the threads spin");
    atomic_store(&phase, 2);
    int all = 1;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        all &= results[i];
    }
    check(all, "each thread: pinned, getcpu inside, mask given back, renamed");
    check(count_dir("/proc/self/task", NULL, NULL) == 1, "/proc/self/task lists 1 thread after joins");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 3 && !strcmp(argv[1], "execd")) {
        printf("after execve: registrations %ld\n", mb(MB_GET_REG, 0, 0));
        char name[16] = "", procname[32] = "";
        prctl(PR_GET_NAME, name);             /* execve renames: the basename of its path */
        FILE *f = fopen("/proc/self/comm", "r");
        if (f) { if (!fgets(procname, sizeof procname, f)) procname[0] = 0; fclose(f); }
        procname[strcspn(procname, "\n")] = 0;
        printf("after execve: name '%s', /proc/self/comm '%s'\n", name, procname);
        return atoi(argv[2]);
    }
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    self_path[n > 0 ? n : 0] = 0;
    CPU_ZERO(&allowed);
    sched_getaffinity(0, sizeof allowed, &allowed);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &allowed))
            allowed_cpus[nallowed++] = c;
    affinity();
    policies();
    names();
    membarrier();
    threads();
    char fails[16];
    snprintf(fails, sizeof fails, "%d", g_failures ? 1 : 0);
    printf("failures: %d\n", g_failures);
    prctl(PR_SET_NAME, "set-before-exec");   /* must not survive the execve */
    execl(self_path, "sched", "execd", fails, (char *)NULL);   /* registrations end at execve */
    printf("execve failed\n");
    return 1;
}
