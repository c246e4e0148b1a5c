/*
 * /proc as a way to the Sentry or the host: /proc/self/mem outside the
 * program's own mappings (the stub region), /proc/<Sentry's host pid>/...,
 * /proc/1/root, and a dump of what /proc shows (maps, environ, status, and a
 * bounded walk of the whole tree) so the test can check nothing of the Sentry
 * (python, its host pid, its paths) appears.  Run only in the sandbox by
 * tests/security/test_fs_escape.py.
 *
 * usage: escape_proc HOST_PIDS HOST_OUTSIDE
 *   HOST_PIDS  comma-separated host pids (the Sentry first, then e.g. ptrace stubs)
 * output: "label: RESULT" lines as escape_common.h describes, and dumps as
 *         "dump PATH N" followed by the bytes in lines prefixed "| ".
 */
#include "escape_common.h"
#include <dirent.h>

#define STUB_VIRT 0x7F8000000000ULL  /* kvmbox/guest_stub/layout.py: the stub region */

static volatile unsigned long long g_probe = 0x1122334455667788ULL;
static long g_budget = 4 << 20;      /* bytes of dumps printed at most */
static int g_files = 0;

static void dump_fd(const char *path, int fd)
{
    static char buf[1 << 16];
    long total = 0, n;
    while (total < (long)sizeof buf && (n = read(fd, buf + total, sizeof buf - total)) > 0)
        total += n;
    if (total == 0 && n < 0) {
        printf("dump %s: read %s\n", path, esc_errname(errno));
        return;
    }
    if (total > g_budget)
        total = g_budget;
    g_budget -= total;
    printf("dump %s %ld\n| ", path, total);
    for (long i = 0; i < total; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n')
            fputs("\n| ", stdout);
        else if (c == 0)
            fputs("\\0", stdout);
        else if (c >= 0x20 && c < 0x7f)
            putchar(c);
        else
            printf("\\x%02x", c);
    }
    putchar('\n');
}

static void dump(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        printf("dump %s: %s\n", path, esc_errname(errno));
        return;
    }
    dump_fd(path, fd);
    close(fd);
}

static void self_mem(void)
{
    int fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        esc_fail("self_mem_open");
        return;
    }
    printf("self_mem_open: ok\n");
    unsigned long long v = 0;
    long n = pread(fd, &v, sizeof v, (off_t)(unsigned long)&g_probe);
    if (n != 8)
        printf("self_mem_read_own: %s\n", n < 0 ? esc_errname(errno) : "short");
    else
        printf("self_mem_read_own: %s\n", v == g_probe ? "own" : "other");
    unsigned long long w = 0x8877665544332211ULL;
    n = pwrite(fd, &w, sizeof w, (off_t)(unsigned long)&g_probe);
    if (n != 8)
        printf("self_mem_write_own: %s\n", n < 0 ? esc_errname(errno) : "short");
    else
        printf("self_mem_write_own: %s\n", g_probe == w ? "own" : "other");
    /* The stub region: GDT, IDT, per-vCPU TSS, the stub's page tables. */
    static const unsigned long long offs[] = { 0x0, 0x1000, 0x2000, 0x10000, 0x100000, 0x120000 };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        char buf[64], label[64];
        snprintf(label, sizeof label, "self_mem_stub_read_%llx", offs[i]);
        n = pread(fd, buf, sizeof buf, (off_t)(STUB_VIRT + offs[i]));
        if (n < 0)
            esc_fail(label);
        else
            esc_print_read(label, buf, n);
        snprintf(label, sizeof label, "self_mem_stub_write_%llx", offs[i]);
        memset(buf, 0xcc, sizeof buf);
        n = pwrite(fd, buf, sizeof buf, (off_t)(STUB_VIRT + offs[i]));
        if (n < 0)
            esc_fail(label);
        else
            printf("%s: ok %ld\n", label, n);
    }
    /* Kernel half and non-canonical addresses. */
    char b[16];
    n = pread(fd, b, sizeof b, (off_t)0x800000000000LL);
    printf("self_mem_noncanonical: %s\n", n < 0 ? esc_errname(errno) : "read");
    n = pread(fd, b, sizeof b, (off_t)0xffff800000000000ULL);
    printf("self_mem_kernel_half: %s\n", n < 0 ? esc_errname(errno) : "read");
    close(fd);
}

/* Every /proc/<pid>/... of a host pid (the Sentry, its ptrace stubs): labels pidI_NAME. */
static void host_pid(int idx, const char *pid, const char *outside)
{
    char p[8192], label[64];
    snprintf(label, sizeof label, "pid%d_is_guest", idx);
    printf("%s: %s\n", label, atol(pid) == (long)getpid() ? "yes" : "no");
    static const char *files[] = { "status", "maps", "mem", "environ", "cmdline", "stat",
                                   "exe", "fd/0", "fd", "cwd", "root", NULL };
    for (int i = 0; files[i]; i++) {
        snprintf(p, sizeof p, "/proc/%s/%s", pid, files[i]);
        snprintf(label, sizeof label, "pid%d_%s", idx, files[i]);
        esc_try_read(label, p);
    }
    struct stat st;
    snprintf(p, sizeof p, "/proc/%s", pid);
    snprintf(label, sizeof label, "pid%d_dir_stat", idx);
    esc_ret(label, stat(p, &st));
    snprintf(p, sizeof p, "/proc/%s/root%s/secret.txt", pid, outside);
    snprintf(label, sizeof label, "pid%d_root_secret", idx);
    esc_try_read(label, p);
}

static void list_dir(const char *label, const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        esc_fail(label);
        return;
    }
    static char names[256][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    printf("%s:", label);
    for (int i = 0; i < n; i++)
        printf(" %s", names[i]);
    printf("\n");
}

static void proc_1(const char *outside)
{
    char p[8192], buf[4096];
    long n = readlink("/proc/1/root", buf, sizeof buf - 1);
    if (n < 0)
        esc_fail("proc1_root_readlink");
    else {
        buf[n] = 0;
        printf("proc1_root_readlink: %s\n", buf);
    }
    snprintf(p, sizeof p, "/proc/1/root%s/secret.txt", outside);
    esc_try_read("proc1_root_hostpath", p);
    esc_try_read("proc1_root_up", "/proc/1/root/../outside/secret.txt");
    esc_try_read("proc1_cwd_up", "/proc/1/cwd/../../../outside/secret.txt");
    list_dir("root_list", "/");
    list_dir("proc1_root_list", "/proc/1/root/");
    n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n < 0)
        esc_fail("self_exe_readlink");
    else {
        buf[n] = 0;
        printf("self_exe_readlink: %s\n", buf);
    }
}

/* Every file under dir to depth levels, no symlink followed, a bounded number. */
static void walk(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d) {
        printf("walk %s: %s\n", dir, esc_errname(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) && g_files < 3000) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", strcmp(dir, "/") ? dir : "", e->d_name);
        /* Skip what Linux itself would block on or is huge / self-referential. */
        if (!strcmp(e->d_name, "mem") || !strcmp(e->d_name, "kcore") || !strcmp(e->d_name, "kmsg") ||
            !strcmp(e->d_name, "pagemap") || !strcmp(e->d_name, "clear_refs") ||
            !strcmp(e->d_name, "sysrq-trigger") || !strcmp(e->d_name, "sys") ||
            !strcmp(e->d_name, "task") || !strcmp(e->d_name, "thread-self") ||
            !strcmp(e->d_name, "kpagecount") || !strcmp(e->d_name, "kpageflags") ||
            !strcmp(e->d_name, "kpagecgroup"))
            continue;
        struct stat st;
        if (lstat(p, &st) != 0) {
            printf("walk %s: lstat %s\n", p, esc_errname(errno));
            continue;
        }
        g_files++;
        if (S_ISLNK(st.st_mode)) {
            char buf[4096];
            long n = readlink(p, buf, sizeof buf - 1);
            if (n < 0)
                printf("link %s: %s\n", p, esc_errname(errno));
            else {
                buf[n] = 0;
                printf("link %s -> %s\n", p, buf);
            }
        } else if (S_ISDIR(st.st_mode)) {
            if (depth > 0)
                walk(p, depth - 1);
        } else if (S_ISREG(st.st_mode)) {
            dump(p);
        }
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    escape_guard();
    if (argc < 3) {
        fprintf(stderr, "usage: escape_proc HOST_PIDS HOST_OUTSIDE\n");
        return 2;
    }
    self_mem();
    char pids[4096];
    snprintf(pids, sizeof pids, "%s", argv[1]);
    int idx = 0;
    for (char *save = NULL, *pid = strtok_r(pids, ",", &save); pid; pid = strtok_r(NULL, ",", &save))
        host_pid(idx++, pid, argv[2]);
    proc_1(argv[2]);
    dump("/proc/self/maps");
    dump("/proc/self/environ");
    dump("/proc/self/cmdline");
    dump("/proc/self/status");
    dump("/proc/self/stat");
    dump("/proc/self/mountinfo");
    walk("/proc", 2);
    printf("walked: %d\n", g_files);
    printf("done\n");
    return 0;
}
