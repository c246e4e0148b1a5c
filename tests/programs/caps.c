/*
 * caps: capget/capset and prctl's capability options as libcap and node use them:
 * the version probe, each header version, bad versions (written back), bad pids,
 * capset's subset rules, the bounding and ambient sets, /proc/self/status, and
 * the sets after execve (the program re-executes itself with "after-exec").
 * Prints the sets it observes: the native run says what they are.
 */
#include "common.h"
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#define V1 0x19980330
#define V2 0x20071026
#define V3 0x20080522
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#endif

struct hdr { uint32_t version; int pid; };
struct data { uint32_t effective, permitted, inheritable; };

static long capget_(struct hdr *h, struct data *d) { return syscall(SYS_capget, h, d); }
static long capset_(struct hdr *h, const struct data *d) { return syscall(SYS_capset, h, d); }

static void show(const char *what)
{
    struct hdr h = {V3, 0};
    struct data d[2];
    memset(d, 0, sizeof d);
    check(capget_(&h, d) == 0, "capget v3 (%s)", what);
    printf("%s: eff %08x%08x prm %08x%08x inh %08x%08x\n", what, d[1].effective, d[0].effective,
           d[1].permitted, d[0].permitted, d[1].inheritable, d[0].inheritable);
}

static void status_caps(const char *what)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    check(f != NULL, "open /proc/self/status");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Cap", 3))
            printf("%s %s", what, line);
    fclose(f);
}

static int last_cap(void)
{
    int n = 0;
    while (prctl(PR_CAPBSET_READ, n + 1, 0, 0, 0) >= 0)
        n++;
    return n;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "after-exec")) {
        show("after exec");
        status_caps("after exec");
        return finish();
    }
    struct hdr h = {0, 0};
    struct data d[2];

    /* libcap's probe: an unknown version with NULL data succeeds and writes V3 back */
    long ret = capget_(&h, NULL);
    printf("probe: ret %ld version %#x\n", ret, h.version);
    h.version = 0x1234;
    check_err(capget_(&h, d), EINVAL, "capget bad version with data");
    printf("bad version written back %#x\n", h.version);
    h.version = 0x1234;
    check_err(capset_(&h, d), EINVAL, "capset bad version");
    printf("capset bad version written back %#x\n", h.version);
    h.version = V3;
    printf("v3 NULL data: ret %ld\n", capget_(&h, NULL));

    /* one word for V1, two for V2 and V3 */
    struct data v1[2];
    memset(v1, 0xAB, sizeof v1);
    h.version = V1;
    check(capget_(&h, v1) == 0, "capget v1");
    printf("v1: second word untouched %d\n", v1[1].effective == 0xABABABAB);
    h.version = V2;
    check(capget_(&h, d) == 0, "capget v2");
    show("start");
    status_caps("start");

    /* pids */
    h.version = V3;
    h.pid = getpid();
    check(capget_(&h, d) == 0, "capget own pid");
    h.pid = -1;
    check_err(capget_(&h, d), EINVAL, "capget pid -1");
    h.pid = 999999;
    check_err(capget_(&h, d), ESRCH, "capget missing pid");
    check_err(capset_(&h, d), EPERM, "capset other pid");
    h.pid = 0;
    check_err(capget_(&h, (struct data *)8), EFAULT, "capget bad data");
    check_err(capget_((struct hdr *)8, d), EFAULT, "capget bad header");

    /* capset: effective within permitted; permitted only shrinks */
    h.version = V3;
    check(capget_(&h, d) == 0, "capget");
    struct data orig[2];
    memcpy(orig, d, sizeof d);
    d[0].effective &= ~(1u << 21);                                  /* drop CAP_SYS_ADMIN */
    printf("drop effective bit: %s\n", capset_(&h, d) == 0 ? "ok" : errname(errno));
    show("effective dropped");
    d[0].effective |= 1u << 21;
    printf("raise it again: %s\n", capset_(&h, d) == 0 ? "ok" : errname(errno));
    d[0].inheritable |= 1u << 13;                                  /* CAP_NET_RAW inheritable */
    printf("add inheritable: %s\n", capset_(&h, d) == 0 ? "ok" : errname(errno));
    show("inheritable added");

    /* ambient: raise needs permitted and inheritable */
    printf("ambient is_set 13: %d\n", prctl(PR_CAP_AMBIENT, 1, 13, 0, 0));
    printf("ambient raise 13: %s\n", prctl(PR_CAP_AMBIENT, 2, 13, 0, 0) == 0 ? "ok" : errname(errno));
    printf("ambient is_set 13: %d\n", prctl(PR_CAP_AMBIENT, 1, 13, 0, 0));
    printf("ambient raise 12: %s\n", prctl(PR_CAP_AMBIENT, 2, 12, 0, 0) == 0 ? "ok" : errname(errno));
    check_err(prctl(PR_CAP_AMBIENT, 1, 1000, 0, 0), EINVAL, "ambient bad cap");
    check_err(prctl(PR_CAP_AMBIENT, 9, 1, 0, 0), EINVAL, "ambient bad op");
    check_err(prctl(PR_CAP_AMBIENT, 4, 1, 0, 0), EINVAL, "ambient clear_all with an argument");
    status_caps("ambient raised");
    int r = prctl(PR_CAP_AMBIENT, 3, 13, 0, 0);
    printf("ambient lower 13: %d is_set %d\n", r, prctl(PR_CAP_AMBIENT, 1, 13, 0, 0));
    prctl(PR_CAP_AMBIENT, 2, 13, 0, 0);
    r = prctl(PR_CAP_AMBIENT, 4, 0, 0, 0);
    printf("clear all: %d is_set %d\n", r, prctl(PR_CAP_AMBIENT, 1, 13, 0, 0));

    /* the bounding set */
    int last = last_cap();
    printf("last cap %d\n", last);
    for (int c = 0; c <= last; c++)
        printf("%d", (int)prctl(PR_CAPBSET_READ, c, 0, 0, 0));
    printf("\n");
    check_err(prctl(PR_CAPBSET_READ, last + 1, 0, 0, 0), EINVAL, "capbset_read past the last");
    check_err(prctl(PR_CAPBSET_READ, -1L, 0, 0, 0), EINVAL, "capbset_read -1");
    printf("drop bounding 13: %s\n", prctl(PR_CAPBSET_DROP, 13, 0, 0, 0) == 0 ? "ok" : errname(errno));
    printf("bounding 13 now %d\n", (int)prctl(PR_CAPBSET_READ, 13, 0, 0, 0));
    r = prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0);
    int set = prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
    printf("keepcaps %d set %d get %d\n", r, set, prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    check_err(prctl(PR_SET_KEEPCAPS, 2, 0, 0, 0), EINVAL, "keepcaps 2");

    /* permitted only shrinks: drop CAP_SYS_ADMIN from permitted, then try to get it back */
    memcpy(d, orig, sizeof d);
    d[0].permitted &= ~(1u << 21);
    d[0].effective &= ~(1u << 21);
    printf("drop permitted bit: %s\n", capset_(&h, d) == 0 ? "ok" : errname(errno));
    d[0].permitted |= 1u << 21;
    printf("raise permitted again: %s\n", capset_(&h, d) == 0 ? "ok" : errname(errno));
    d[0].permitted = orig[0].permitted & ~(1u << 21);
    d[0].effective = d[0].permitted | (1u << 21);
    printf("effective beyond permitted: %s\n", capset_(&h, d) == 0 ? "ok" : errname(errno));
    show("permitted dropped");

    /* CAP_SYS_RESOURCE decides whether a hard limit may go up */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    struct rlimit lower = {rl.rlim_cur / 2, rl.rlim_max / 2 + 1};
    check(setrlimit(RLIMIT_NOFILE, &lower) == 0, "lower the hard RLIMIT_NOFILE");
    printf("raise hard limit back: %s\n", setrlimit(RLIMIT_NOFILE, &rl) == 0 ? "ok" : errname(errno));

    /* execve recomputes the sets */
    fflush(stdout);
    char *args[] = {argv[0], "after-exec", NULL};
    execv("/proc/self/exe", args);
    printf("execv failed: %s\n", errname(errno));
    return 1;
}
