/*
 * Escape attempts by path: ".." chains past the sandbox root and past a
 * mount's root, dirfds and chdir loops, symlinks (made by the program and
 * planted by the host) and /proc magic links.  Run only in the sandbox by
 * tests/security/test_fs_escape.py; see escape_common.h for the output.
 *
 * usage: escape_paths MNT HOST_OUTSIDE
 *   MNT           a read-write host mount in the sandbox (e.g. /mnt/in) holding
 *                 the host-planted links h_abs, h_rel, h_dir, h_root, h_deep
 *   HOST_OUTSIDE  the absolute HOST path of the never-mounted directory
 *                 holding secret.txt (what an attacker may know)
 */
#include "escape_common.h"

static const char *g_mnt;
static const char *g_outside;     /* host path, e.g. /work/main/.test-scratch/x/outside */
static char g_secret_host[4096];  /* HOST_OUTSIDE/secret.txt */

/* "../" repeated n times then tail. */
static const char *ups(int n, const char *tail)
{
    static char bufs[4][4096];
    static int next;
    char *out = bufs[next++ % 4];
    out[0] = 0;
    for (int i = 0; i < n; i++)
        strcat(out, "../");
    strncat(out, tail, 4096 - strlen(out) - 1);
    return out;
}

static void print_cwd(const char *label)
{
    char buf[4096];
    if (getcwd(buf, sizeof buf))
        printf("%s: %s\n", label, buf);
    else
        esc_fail(label);
}

static void dotdot_chains(void)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/../outside/secret.txt", g_mnt);
    esc_try_read("dotdot_mnt_1", p);
    snprintf(p, sizeof p, "%s/../../../../outside/secret.txt", g_mnt);
    esc_try_read("dotdot_mnt_4", p);
    snprintf(p, sizeof p, "%s/%s", g_mnt, ups(40, g_secret_host + 1));
    esc_try_read("dotdot_mnt_hostpath", p);
    esc_try_read("dotdot_root_1", "/../outside/secret.txt");
    esc_try_read("dotdot_root_8", "/../../../../../../../../outside/secret.txt");
    snprintf(p, sizeof p, "/%s", ups(40, g_secret_host + 1));
    esc_try_read("dotdot_root_hostpath", p);
    esc_try_read("host_abs_path", g_secret_host);
    snprintf(p, sizeof p, "%s/./.././/..//./outside/secret.txt", g_mnt);
    esc_try_read("dotdot_mnt_mixed", p);

    int dfd = open(g_mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        esc_fail("open_mnt_dirfd");
        return;
    }
    esc_try_read_at("openat_dirfd_up1", dfd, "../outside/secret.txt");
    esc_try_read_at("openat_dirfd_up3", dfd, "../../../outside/secret.txt");
    esc_try_read_at("openat_dirfd_hostpath", dfd, ups(40, g_secret_host + 1));
    int up = openat(dfd, "../../..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (up < 0) {
        esc_fail("openat_dirfd_chain");
    } else {
        struct stat a, b;
        int same = fstat(up, &a) == 0 && stat("/", &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
        printf("openat_dirfd_chain_is_root: %s\n", same ? "yes" : "no");
        esc_try_read_at("openat_dirfd_chain", up, "outside/secret.txt");
        esc_try_read_at("openat_dirfd_chain_hostpath", up, g_secret_host + 1);
        close(up);
    }
    struct { unsigned long long flags, mode, resolve; } how = { O_RDONLY, 0, 0 };
    int fd = (int)syscall(SYS_openat2, dfd, "../../../outside/secret.txt", &how, sizeof how);
    if (fd < 0)
        esc_fail("openat2_dirfd_up");
    else
        esc_report_fd("openat2_dirfd_up", fd);

    int pfd = open(g_mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
        esc_fail("open_mnt_opath");
    } else {
        esc_try_read_at("openat_opath_up", pfd, "../../../outside/secret.txt");
        close(pfd);
    }

    /* chdir("..") far past the root, then relative opens. */
    if (chdir(g_mnt) != 0)
        esc_fail("chdir_mnt");
    print_cwd("cwd_in_mnt");
    int fails = 0;
    for (int i = 0; i < 40; i++)
        if (chdir("..") != 0)
            fails++;
    printf("chdir_up_40_failures: %d\n", fails);
    print_cwd("cwd_after_up");
    esc_try_read("chdir_loop_rel", "outside/secret.txt");
    esc_try_read("chdir_loop_rel_up", "../outside/secret.txt");
    esc_try_read("chdir_loop_hostpath", g_secret_host + 1);

    /* The same from fchdir into the mount's dirfd. */
    if (fchdir(dfd) != 0)
        esc_fail("fchdir_mnt");
    for (int i = 0; i < 40; i++)
        (void)!chdir("..");
    print_cwd("cwd_after_fchdir_up");
    esc_try_read("fchdir_loop_rel", "outside/secret.txt");
    (void)!chdir("/");
    close(dfd);
}

/* Links the program makes in the read-write mount, then opens. */
static void guest_symlinks(void)
{
    struct { const char *label, *name, *target, *suffix; } links[] = {
        { "gsym_abs_outside", "g_abs", "/outside/secret.txt", "" },
        { "gsym_abs_hostpath", "g_hostabs", g_secret_host, "" },
        { "gsym_rel_outside", "g_rel", "../outside/secret.txt", "" },
        { "gsym_rel_deep", "g_deep", NULL, "" },
        { "gsym_etc_passwd", "g_passwd", "/etc/passwd", "" },
        { "gsym_dir_up", "g_dirup", "../../outside", "/secret.txt" },
        { "gsym_root", "g_root", "/", "/../outside/secret.txt" },
        { "gsym_root_hostpath", "g_root2", "/", NULL },
        { "gsym_proc_root", "g_procroot", "/proc/self/root/../outside", "/secret.txt" },
        { "gsym_dotdot", "g_dotdot", "..", "/../outside/secret.txt" },
    };
    char p[8192], deep[4096], hostsuffix[4096];
    snprintf(deep, sizeof deep, "%s", ups(40, g_secret_host + 1));
    snprintf(hostsuffix, sizeof hostsuffix, "%s", g_secret_host);
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        const char *target = links[i].target ? links[i].target : deep;
        const char *suffix = links[i].suffix ? links[i].suffix : hostsuffix;
        char label[128];
        snprintf(p, sizeof p, "%s/%s", g_mnt, links[i].name);
        unlink(p);
        snprintf(label, sizeof label, "%s_create", links[i].label);
        esc_ret(label, symlink(target, p));
        snprintf(p, sizeof p, "%s/%s%s", g_mnt, links[i].name, suffix);
        esc_try_read(links[i].label, p);
    }
    /* Relative to a dirfd, and as the directory of a later *at call. */
    int dfd = open(g_mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    esc_try_read_at("gsym_rel_at", dfd, "g_rel");
    int via = openat(dfd, "g_dirup", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (via < 0)
        esc_fail("gsym_dir_up_dirfd");
    else {
        esc_try_read_at("gsym_dir_up_dirfd", via, "secret.txt");
        close(via);
    }
    close(dfd);
}

/* Links the test planted on the host before the run. */
static void host_symlinks(void)
{
    char p[8192], buf[4096];
    long n;
    snprintf(p, sizeof p, "%s/h_abs", g_mnt);
    n = readlink(p, buf, sizeof buf - 1);
    printf("hsym_abs_readlink: %s\n", n < 0 ? esc_errname(errno) : (buf[n] = 0, n > 0 ? "ok" : "empty"));
    esc_try_read("hsym_abs", p);
    snprintf(p, sizeof p, "%s/h_rel", g_mnt);
    esc_try_read("hsym_rel", p);
    snprintf(p, sizeof p, "%s/h_dir/secret.txt", g_mnt);
    esc_try_read("hsym_dir", p);
    snprintf(p, sizeof p, "%s/h_root%s", g_mnt, g_secret_host);
    esc_try_read("hsym_root_hostpath", p);
    snprintf(p, sizeof p, "%s/h_root/../outside/secret.txt", g_mnt);
    esc_try_read("hsym_root_up", p);
    snprintf(p, sizeof p, "%s/h_deep", g_mnt);
    esc_try_read("hsym_deep", p);
    snprintf(p, sizeof p, "%s/h_dir", g_mnt);
    int d = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0)
        esc_fail("hsym_dir_opendir");
    else {
        esc_try_read_at("hsym_dir_at", d, "secret.txt");
        close(d);
    }
    /* O_NOFOLLOW on the link itself, and O_PATH|O_NOFOLLOW then read through /proc. */
    snprintf(p, sizeof p, "%s/h_abs", g_mnt);
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        esc_fail("hsym_abs_nofollow");
    else
        esc_report_fd("hsym_abs_nofollow", fd);
    fd = open(p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        esc_fail("hsym_abs_opath");
    else {
        char q[64];
        snprintf(q, sizeof q, "/proc/self/fd/%d", fd);
        esc_try_read("hsym_abs_opath_proc", q);
        close(fd);
    }
}

/* /proc/self/{root,cwd,fd/N,exe} as ways out. */
static void proc_links(void)
{
    char p[8192];
    esc_try_read("proc_root_up", "/proc/self/root/../../outside/secret.txt");
    snprintf(p, sizeof p, "/proc/self/root%s", g_secret_host);
    esc_try_read("proc_root_hostpath", p);
    esc_try_read("proc_thread_root_up", "/proc/thread-self/root/../outside/secret.txt");
    esc_try_read("proc_1_root_up", "/proc/1/root/../outside/secret.txt");
    if (chdir(g_mnt) != 0)
        esc_fail("proc_chdir_mnt");
    esc_try_read("proc_cwd_up", "/proc/self/cwd/../../../outside/secret.txt");
    esc_try_read("proc_cwd_up1", "/proc/self/cwd/../outside/secret.txt");
    (void)!chdir("/");

    int dfd = open(g_mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int pfd = open(g_mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fds[2] = { dfd, pfd };
    const char *kinds[2] = { "dirfd", "opath" };
    for (int k = 0; k < 2; k++) {
        char label[96];
        if (fds[k] < 0) {
            snprintf(label, sizeof label, "proc_fd_%s", kinds[k]);
            esc_fail(label);
            continue;
        }
        for (int n = 1; n <= 4; n++) {
            snprintf(p, sizeof p, "/proc/self/fd/%d/%soutside/secret.txt", fds[k], ups(n, ""));
            snprintf(label, sizeof label, "proc_fd_%s_up%d", kinds[k], n);
            esc_try_read(label, p);
        }
        snprintf(p, sizeof p, "/proc/self/fd/%d/%s", fds[k], ups(40, g_secret_host + 1));
        snprintf(label, sizeof label, "proc_fd_%s_hostpath", kinds[k]);
        esc_try_read(label, p);
        /* openat with the magic link's directory as dirfd. */
        snprintf(p, sizeof p, "/proc/self/fd/%d/..", fds[k]);
        int up = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        snprintf(label, sizeof label, "proc_fd_%s_dotdot_at", kinds[k]);
        if (up < 0)
            esc_fail(label);
        else {
            esc_try_read_at(label, up, "../outside/secret.txt");
            close(up);
        }
    }
    if (dfd >= 0)
        close(dfd);
    if (pfd >= 0)
        close(pfd);

    /* The executable through /proc/self/exe: never writable into the host file. */
    esc_try_write("proc_exe_wronly", "/proc/self/exe", O_WRONLY, "PWNED");
    esc_try_write("proc_exe_rdwr", "/proc/self/exe", O_RDWR, "PWNED");
    esc_try_write("proc_exe_trunc", "/proc/self/exe", O_WRONLY | O_TRUNC, "PWNED");
    esc_try_read("proc_exe_dotdot", "/proc/self/exe/../outside/secret.txt");
}

int main(int argc, char **argv)
{
    escape_guard();
    if (argc < 3) {
        fprintf(stderr, "usage: escape_paths MNT HOST_OUTSIDE\n");
        return 2;
    }
    g_mnt = argv[1];
    g_outside = argv[2];
    snprintf(g_secret_host, sizeof g_secret_host, "%s/secret.txt", g_outside);
    dotdot_chains();
    guest_symlinks();
    host_symlinks();
    proc_links();
    printf("done\n");
    return 0;
}
