/*
 * File locks seen from one process: POSIX record locks (owned by the process), OFD locks
 * (owned by the open file description) and flock(2) locks (also per description, and a
 * world apart from the other two).  Ranges split and merge; F_GETLK and F_OFD_GETLK say
 * which lock blocks whom (pid: the process for POSIX locks, -1 for OFD ones); closing any
 * descriptor of a file drops the process's POSIX locks, the last close of a description
 * its OFD and flock locks; blocking waits end with EINTR on a signal or restart under
 * SA_RESTART.  The cross-process cases are in locks_fork.c.
 * argv[1]: where to make scratch files.
 */
#include "scratch.h"
#include <sys/file.h>
#include <sys/time.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#define F_OFD_SETLKW 38
#endif

static int lk(int fd, int cmd, short type, short whence, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = whence, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

static const char *who(pid_t pid)
{
    return pid == getpid() ? "me" : pid == -1 ? "-1" : "other";
}

/* What another owner sees, through `probe`'s own description: F_OFD_GETLK for a write
 * lock from each lock's end on (one owner's locks come sorted by start). */
static void show(const char *label, int probe)
{
    printf("%s:", label);
    off_t from = 0;
    int n = 0;
    for (; n < 16; n++) {
        struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = from};
        if (fcntl(probe, F_OFD_GETLK, &q) != 0) {
            printf(" error %s", errname(errno));
            break;
        }
        if (q.l_type == F_UNLCK)
            break;
        printf(" %c[%lld,", q.l_type == F_RDLCK ? 'R' : 'W', (long long)q.l_start);
        if (q.l_len == 0) {
            printf("EOF] pid %s", who(q.l_pid));
            break;
        }
        printf("%lld] pid %s", (long long)(q.l_start + q.l_len - 1), who(q.l_pid));
        from = q.l_start + q.l_len;
    }
    printf("%s\n", n == 0 ? " none" : "");
}

/* F_GETLK-style query through fd: what blocks a `type` lock on [start, start+len)? */
static void query(const char *label, int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock q = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &q) != 0) {
        printf("%s: error %s\n", label, errname(errno));
        return;
    }
    if (q.l_type == F_UNLCK) {
        printf("%s: unlocked\n", label);
        return;
    }
    printf("%s: %s start %lld len %lld whence %d pid %s\n", label, q.l_type == F_RDLCK ? "R" : "W",
           (long long)q.l_start, (long long)q.l_len, q.l_whence, who(q.l_pid));
}

static void ranges(int a, int probe)
{
    static const struct step {
        short type, whence;
        off_t start, len;
        const char *what, *then;
    } steps[] = {
        {F_WRLCK, SEEK_SET, 0, 100, "W [0,100)", "one lock"},
        {F_UNLCK, SEEK_SET, 40, 20, "unlock [40,60)", "split by a hole"},
        {F_RDLCK, SEEK_SET, 20, 10, "R [20,30)", "split by a type"},
        {F_WRLCK, SEEK_SET, 40, 20, "W [40,60)", "hole filled, neighbours merged"},
        {F_WRLCK, SEEK_SET, 100, 10, "W [100,110): adjacent", "adjacent merged"},
        {F_RDLCK, SEEK_SET, 0, 200, "R [0,200)", "all replaced"},
        {F_WRLCK, SEEK_SET, 200, 0, "W [200,EOF)", "to EOF"},
        {F_RDLCK, SEEK_SET, 150, 100, "R [150,250)", "into the EOF lock"},
        {F_WRLCK, SEEK_SET, 10, -5, "W start 10 len -5", "negative length"},
        {F_UNLCK, SEEK_CUR, -50, 0, "unlock SEEK_CUR -50 (at 300) to EOF", "SEEK_CUR"},
        {F_WRLCK, SEEK_END, -10, 10, "W SEEK_END -10 len 10", "SEEK_END"},
    };
    check(lseek(a, 300, SEEK_SET) == 300, "lseek 300");
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const struct step *st = &steps[i];
        check(lk(a, F_SETLK, st->type, st->whence, st->start, st->len) == 0, "%s", st->what);
        show(st->then, probe);
    }
    query("R query on a read lock", probe, F_OFD_GETLK, F_RDLCK, 20, 5);
    query("R query on a write lock", probe, F_OFD_GETLK, F_RDLCK, 5, 1);
    check(lk(a, F_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0, "unlock everything");
    show("after unlocking", probe);
    check(lk(a, F_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0, "unlock with nothing locked");
}

static void getlk_and_ofd(int a, int b, int probe)
{
    check(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 10) == 0, "POSIX W [0,10) via a");
    query("F_GETLK via a (own lock)", a, F_GETLK, F_WRLCK, 0, 0);
    query("F_GETLK via b (same process)", b, F_GETLK, F_WRLCK, 0, 0);
    query("F_OFD_GETLK via b", b, F_OFD_GETLK, F_WRLCK, 0, 0);
    check(lk(probe, F_OFD_SETLK, F_WRLCK, SEEK_SET, 20, 10) == 0, "OFD W [20,30) via probe");
    query("F_GETLK via a sees the OFD lock", a, F_GETLK, F_WRLCK, 0, 0);
    query("F_OFD_GETLK via probe sees the POSIX lock", probe, F_OFD_GETLK, F_RDLCK, 0, 0);
    query("F_OFD_GETLK via probe past it", probe, F_OFD_GETLK, F_RDLCK, 10, 0);
    struct flock e = {.l_type = F_RDLCK, .l_whence = SEEK_END, .l_start = -80, .l_len = 0};
    check(fcntl(a, F_GETLK, &e) == 0, "F_GETLK from SEEK_END -80");
    printf("answer: type %d whence %d start %lld len %lld pid %s\n", e.l_type, e.l_whence,
           (long long)e.l_start, (long long)e.l_len, who(e.l_pid));
    struct flock q = {.l_type = F_RDLCK, .l_whence = SEEK_CUR, .l_start = 500, .l_len = 3, .l_pid = 77};
    lseek(a, 0, SEEK_SET);
    check(fcntl(a, F_GETLK, &q) == 0, "F_GETLK with nothing in the way");
    printf("untouched fields: type %d whence %d start %lld len %lld pid %d\n", q.l_type, q.l_whence,
           (long long)q.l_start, (long long)q.l_len, q.l_pid);

    /* OFD against POSIX, both ways, and OFD between descriptions */
    errno = 0; check_err(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 25, 2), EAGAIN, "POSIX W over the OFD lock");
    errno = 0; check_err(lk(a, F_SETLK, F_RDLCK, SEEK_SET, 29, 5), EAGAIN, "POSIX R over the OFD W");
    errno = 0; check_err(lk(b, F_OFD_SETLK, F_RDLCK, SEEK_SET, 5, 1), EAGAIN, "OFD R over the POSIX W");
    check(lk(b, F_OFD_SETLK, F_RDLCK, SEEK_SET, 10, 10) == 0, "OFD R [10,20) via b");
    errno = 0; check_err(lk(probe, F_OFD_SETLK, F_WRLCK, SEEK_SET, 15, 10), EAGAIN, "OFD W over b's R");
    check(lk(probe, F_OFD_SETLK, F_RDLCK, SEEK_SET, 15, 10) == 0, "OFD R over b's R");
    int p2 = dup(probe);
    check(lk(p2, F_OFD_SETLK, F_WRLCK, SEEK_SET, 25, 5) == 0, "OFD W through a dup: same owner");
    close(p2);
    query("after closing the dup", a, F_GETLK, F_WRLCK, 20, 0);
    check(lk(b, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0, "OFD unlock via b");
    check(lk(probe, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0, "OFD unlock via probe");
    check(lk(a, F_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0, "POSIX unlock via a");
}

static void closing(int probe)
{
    int a = open("f", O_RDWR);
    int b = open("f", O_RDONLY);
    int g = open("g", O_RDWR | O_CREAT, 0644);
    check(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 10) == 0, "POSIX W via a");
    close(g);
    query("after closing another file", probe, F_OFD_GETLK, F_RDLCK, 0, 0);
    close(b);
    query("after closing another description of the file", probe, F_OFD_GETLK, F_RDLCK, 0, 0);
    check(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 10) == 0, "POSIX W via a again");
    int d = dup(a);
    close(d);
    query("after closing a dup", probe, F_OFD_GETLK, F_RDLCK, 0, 0);
    check(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 10) == 0, "POSIX W via a again");
    b = open("f", O_RDONLY);
    g = open("g", O_RDWR);
    check(dup2(g, b) == b, "dup2 over a descriptor of the file");
    query("after dup2 replaced it", probe, F_OFD_GETLK, F_RDLCK, 0, 0);
    close(b);
    close(g);
    close(a);

    int o = open("f", O_RDWR);
    check(lk(o, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10) == 0, "OFD W via o");
    int o2 = dup(o);
    close(o);
    query("OFD lock after closing one of two numbers", probe, F_OFD_GETLK, F_RDLCK, 0, 0);
    close(o2);
    query("OFD lock after the last close", probe, F_OFD_GETLK, F_RDLCK, 0, 0);
}

static void flocks(void)
{
    int f1 = open("f", O_RDWR), f2 = open("f", O_RDONLY), f3 = open("f", O_WRONLY);
    check(flock(f1, LOCK_EX) == 0, "flock EX via f1");
    errno = 0; check_err(flock(f2, LOCK_SH | LOCK_NB), EWOULDBLOCK, "flock SH via f2");
    errno = 0; check_err(flock(f2, LOCK_EX | LOCK_NB), EWOULDBLOCK, "flock EX via f2");
    check(flock(f1, LOCK_EX | LOCK_NB) == 0, "flock EX again via f1");
    int d = dup(f1);
    check(flock(d, LOCK_SH) == 0, "flock SH through a dup converts");
    check(flock(f2, LOCK_SH | LOCK_NB) == 0, "flock SH via f2 beside it");
    errno = 0; check_err(flock(f1, LOCK_EX | LOCK_NB), EWOULDBLOCK, "upgrade to EX beside f2's SH");
    check(flock(f2, LOCK_EX | LOCK_NB) == 0, "the failed upgrade dropped f1's lock");
    check(lk(f1, F_SETLK, F_WRLCK, SEEK_SET, 0, 50) == 0, "POSIX W beside a flock: separate");
    check(lk(f3, F_OFD_SETLK, F_WRLCK, SEEK_SET, 100, 0) == 0, "OFD W beside a flock: separate");
    check(flock(f2, LOCK_UN) == 0 && flock(f2, LOCK_UN) == 0, "flock LOCK_UN twice");
    check(flock(f3, LOCK_EX | LOCK_NB) == 0, "flock EX via a write-only f3");
    close(f3);
    check(flock(f2, LOCK_EX | LOCK_NB) == 0, "the last close of f3 released its flock");
    errno = 0; check_err(flock(d, LOCK_SH | LOCK_NB), EWOULDBLOCK, "f2's EX keeps f1's description out");
    close(d);
    close(f2);
    check(flock(f1, LOCK_SH | LOCK_NB) == 0, "after f2 closed");
    close(f1);
    errno = 0; check_err(flock(99, LOCK_SH), EBADF, "flock bad fd");
    int m3 = open("f", 3);
    errno = 0; check_err(flock(m3, LOCK_EX), EBADF, "flock on access mode 3");
    check(flock(m3, LOCK_UN) == 0, "flock LOCK_UN on access mode 3");
    close(m3);
    int op = open("f", O_PATH);
    errno = 0; check_err(flock(op, LOCK_UN), EBADF, "flock on O_PATH");
    errno = 0; check_err(lk(op, F_SETLK, F_UNLCK, SEEK_SET, 0, 0), EBADF, "F_SETLK on O_PATH");
    close(op);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    check(flock(dir, LOCK_EX) == 0, "flock on a directory");
    check(lk(dir, F_SETLK, F_RDLCK, SEEK_SET, 0, 0) == 0, "POSIX R on a directory");
    close(dir);
    int p[2];
    check(pipe(p) == 0, "pipe");
    check(flock(p[0], LOCK_EX) == 0, "flock EX on the read end");
    errno = 0; check_err(flock(p[1], LOCK_EX | LOCK_NB), EWOULDBLOCK, "the write end is the same inode");
    check(lk(p[1], F_OFD_SETLK, F_WRLCK, SEEK_CUR, 0, 0) == 0, "OFD W on the write end (SEEK_CUR)");
    query("F_GETLK on the read end", p[0], F_GETLK, F_WRLCK, 0, 0);
    close(p[0]);
    close(p[1]);
}

static void errors(int a, int ro, int wo)
{
    errno = 0; check_err(lk(a, F_SETLK, 7, SEEK_SET, 0, 0), EINVAL, "bad l_type");
    errno = 0; check_err(lk(a, F_SETLK, F_WRLCK, 3, 0, 0), EINVAL, "bad l_whence");
    errno = 0; check_err(lk(a, F_SETLK, F_WRLCK, SEEK_SET, -1, 0), EINVAL, "negative start");
    errno = 0; check_err(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 3, -4), EINVAL, "length before byte 0");
    check(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 3, -3) == 0, "length back to byte 0");
    errno = 0; check_err(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 10, 0x7fffffffffffffffLL), EOVERFLOW, "length past the largest offset");
    check(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 10, 0x7fffffffffffffffLL - 9) == 0, "length to the largest offset");
    errno = 0; check_err(lk(a, F_SETLK, F_WRLCK, SEEK_END, 0x7fffffffffffffffLL, 0), EOVERFLOW, "SEEK_END start overflows");
    errno = 0; check_err(lk(a, F_SETLK, 7, SEEK_END, 0x7fffffffffffffffLL, 0), EOVERFLOW, "range checked before type");
    errno = 0; check_err(lk(a, F_GETLK, 7, SEEK_END, 0x7fffffffffffffffLL, 0), EINVAL, "F_GETLK checks type first");
    errno = 0; check_err(lk(a, F_GETLK, F_UNLCK, SEEK_SET, 0, 0), EINVAL, "F_GETLK of F_UNLCK");
    errno = 0; check_err(lk(ro, F_SETLK, F_WRLCK, SEEK_SET, 0, 0), EBADF, "W lock on a read-only fd");
    errno = 0; check_err(lk(wo, F_SETLK, F_RDLCK, SEEK_SET, 0, 0), EBADF, "R lock on a write-only fd");
    check(lk(ro, F_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0, "unlock on a read-only fd");
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_pid = 5};
    errno = 0; check_err(fcntl(a, F_OFD_SETLK, &q), EINVAL, "OFD lock with l_pid set");
    errno = 0; check_err(fcntl(a, F_OFD_GETLK, &q), EINVAL, "OFD query with l_pid set");
    errno = 0; check_err(fcntl(ro, F_OFD_SETLK, &q), EBADF, "OFD W on read-only: EBADF before l_pid");
    errno = 0; check_err(fcntl(a, F_SETLK, BADPTR), EFAULT, "F_SETLK bad pointer");
    errno = 0; check_err(fcntl(a, F_GETLK, BADPTR), EFAULT, "F_GETLK bad pointer");
    check(lk(a, F_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0, "unlock everything");
}

static volatile sig_atomic_t g_ticks;
static int g_release_kind, g_release_fd;

static void on_alarm(int sig)
{
    (void)sig;
    if (++g_ticks != 2 || !g_release_kind)
        return;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    if (g_release_kind == 1)
        lk(g_release_fd, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0);
    else
        flock(g_release_fd, LOCK_UN);
}

static void arm(long ms, long every_ms)
{
    struct itimerval it = {{every_ms / 1000, every_ms % 1000 * 1000}, {ms / 1000, ms % 1000 * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void interrupted(const char *label, int ret)
{
    int e = errno;
    arm(0, 0);
    printf("%s -> %s after %d signal(s)", label, ret == 0 ? "0" : errname(e), (int)g_ticks);
    check(ret == -1 && e == EINTR && g_ticks == 1, "");
    g_ticks = 0;
}

static void blocking(int a, int probe)
{
    int f1 = open("f", O_RDWR), f2 = open("f", O_RDWR);
    set_handler(SIGALRM, on_alarm, 0);
    check(lk(probe, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10) == 0, "OFD W via probe");
    arm(50, 0);
    errno = 0;
    interrupted("F_SETLKW behind the OFD lock", lk(a, F_SETLKW, F_WRLCK, SEEK_SET, 5, 1));
    arm(50, 0);
    errno = 0;
    interrupted("F_OFD_SETLKW behind it", lk(f1, F_OFD_SETLKW, F_RDLCK, SEEK_SET, 0, 1));
    check(flock(f1, LOCK_EX) == 0, "flock EX via f1");
    arm(50, 0);
    errno = 0;
    interrupted("flock EX behind it", flock(f2, LOCK_EX));
    check(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 20, 10) == 0, "POSIX W [20,30) via a");
    arm(50, 0);
    errno = 0;
    interrupted("F_OFD_SETLKW behind the POSIX lock", lk(f2, F_OFD_SETLKW, F_WRLCK, SEEK_SET, 25, 1));

    /* SA_RESTART: the wait starts again after the handler; the second tick's handler
     * removes the lock in the way and the restarted call takes it. */
    set_handler(SIGALRM, on_alarm, SA_RESTART);
    g_release_kind = 1, g_release_fd = probe;
    arm(30, 30);
    int r = lk(a, F_SETLKW, F_WRLCK, SEEK_SET, 5, 1);
    arm(0, 0);
    printf("F_SETLKW under SA_RESTART -> %d after %d signals\n", r, (int)g_ticks);
    g_ticks = 0;
    g_release_kind = 2, g_release_fd = f1;
    arm(30, 30);
    r = flock(f2, LOCK_EX);
    arm(0, 0);
    printf("flock under SA_RESTART -> %d after %d signals\n", r, (int)g_ticks);
    g_ticks = 0;
    g_release_kind = 0;
    check(lk(a, F_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0, "unlock");
    signal(SIGALRM, SIG_DFL);
    close(f1);
    close(f2);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv, "locks");
    int a = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    char buf[100];
    memset(buf, 'x', sizeof buf);
    check(write(a, buf, sizeof buf) == 100, "write 100 bytes");
    int b = open("f", O_RDWR);
    int probe = open("f", O_RDWR);
    int ro = open("f", O_RDONLY), wo = open("f", O_WRONLY);

    ranges(a, probe);
    getlk_and_ofd(a, b, probe);
    errors(a, ro, wo);
    closing(probe);
    close(probe);
    probe = open("f", O_RDWR);
    blocking(a, probe);
    flocks();
    scratch_leave();
    return finish();
}
