/*
 * File locks between processes: a child's POSIX lock seen by its parent (F_GETLK's l_pid),
 * F_SETLKW and flock waiting until the child unlocks, closes or exits, EDEADLK for a
 * cycle of POSIX waits, OFD and flock locks inherited across fork (one description) and
 * released at its last close in any process, POSIX locks not inherited.
 *
 * Only the parent prints; a child reports what it saw through its exit status (one bit a
 * check).  "Until the parent is asleep" is read from /proc/<pid>/stat (state S), so a
 * wait is shown to really wait.  argv[1]: where to make scratch files.
 */
#include "scratch.h"
#include <sys/file.h>
#include <sys/wait.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#define F_OFD_SETLKW 38
#endif

static int lk(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

/* Who holds what blocks a write lock on [start, start+len) through fd (cmd: F_GETLK or
 * F_OFD_GETLK): 0 when nothing, else the l_pid reported. */
static pid_t holder(int fd, int cmd, off_t start, off_t len)
{
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &q) != 0)
        return -2;
    return q.l_type == F_UNLCK ? 0 : q.l_pid;
}

/* Sleep until process `pid` is asleep (state S in /proc/<pid>/stat): then it is inside the
 * wait it was about to start.  0 if it never was within 10 s. */
static int wait_asleep(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 10000; i++) {
        int fd = open(path, O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            buf[n] = 0;
            char *p = strrchr(buf, ')');
            if (p && p[1] == ' ' && p[2] == 'S')
                return 1;
        }
        usleep(1000);
    }
    return 0;
}

/* One byte through a pipe, to say "go on"; a process that cannot is lost: it leaves. */
static void put(int fd, char c) { if (write(fd, &c, 1) != 1) _exit(98); }
static void get(int fd) { char c; if (read(fd, &c, 1) != 1) _exit(99); }

/* fork with stdout flushed (a child never prints: it leaves with _exit) */
static pid_t spawn(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0)
        alarm(20);                         /* a child that hangs dies instead */
    return pid;
}

/* The child's exit status (its bits), or -1 if it did not exit normally. */
static int reap(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* The child holds a POSIX lock; the parent sees it, then waits in F_SETLKW until the
 * child unlocks, then (a second time) until the child exits holding it. */
static void posix_between(void)
{
    int up[2], down[2], note[2];
    check(pipe(up) == 0 && pipe(down) == 0 && pipe2(note, O_NONBLOCK) == 0, "pipes");
    int fd = open("f", O_RDWR);
    pid_t parent = getpid();
    pid_t pid = spawn();
    if (pid == 0) {
        int a = open("f", O_RDWR);
        int bits = 0;
        bits |= (lk(a, F_SETLK, F_WRLCK, 0, 10) != 0) << 0;
        put(up[1], 'l');
        get(down[0]);                       /* the parent has looked */
        bits |= !wait_asleep(parent) << 1;  /* the parent waits in F_SETLKW */
        put(note[1], 'u');
        bits |= (lk(a, F_SETLK, F_UNLCK, 0, 0) != 0) << 2;
        get(down[0]);                       /* the parent got it and gave it back */
        bits |= (lk(a, F_SETLK, F_WRLCK, 0, 10) != 0) << 3;
        put(up[1], 'l');
        bits |= !wait_asleep(parent) << 4;
        _exit(bits);                        /* still holding it */
    }
    get(up[0]);
    printf("parent's F_GETLK: the holder is the child: %d\n", holder(fd, F_GETLK, 0, 0) == pid);
    struct flock q = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 100};
    check(fcntl(fd, F_GETLK, &q) == 0, "F_GETLK for a read lock");
    printf("lock: type %d start %lld len %lld\n", q.l_type, (long long)q.l_start, (long long)q.l_len);
    errno = 0; check_err(lk(fd, F_SETLK, F_RDLCK, 9, 1), EAGAIN, "F_SETLK under the child's lock");
    check(lk(fd, F_SETLK, F_WRLCK, 10, 10) == 0 && lk(fd, F_SETLK, F_UNLCK, 10, 10) == 0,
          "F_SETLK beside it");
    put(down[1], 'g');
    int r = lk(fd, F_SETLKW, F_WRLCK, 0, 10);
    char c = 0;
    int noted = read(note[0], &c, 1) == 1;
    printf("F_SETLKW -> %d, after the child unlocked: %d\n", r, noted && c == 'u');
    check(lk(fd, F_SETLK, F_UNLCK, 0, 0) == 0, "unlock");
    put(down[1], 'g');
    get(up[0]);
    r = lk(fd, F_SETLKW, F_RDLCK, 0, 0);
    printf("F_SETLKW -> %d, ended by the child's exit\n", r);
    printf("child saw: %d\n", reap(pid));
    check(lk(fd, F_SETLK, F_UNLCK, 0, 0) == 0, "unlock");
    close(fd);
    close(up[0]); close(up[1]); close(down[0]); close(down[1]); close(note[0]); close(note[1]);
}

/* Parent holds byte 0, child byte 1; the child waits for byte 0, then the parent asks
 * for byte 1: EDEADLK.  Also through an OFD lock of the child's, waiting behind the
 * parent's POSIX lock. */
static void deadlock(int ofd)
{
    int up[2];
    check(pipe(up) == 0, "pipe");
    int fd = open("f", O_RDWR);
    check(lk(fd, F_SETLK, F_WRLCK, 0, 1) == 0, "parent locks byte 0");
    pid_t pid = spawn();
    if (pid == 0) {
        int a = open("f", O_RDWR);
        int set = ofd ? F_OFD_SETLK : F_SETLK, setw = ofd ? F_OFD_SETLKW : F_SETLKW;
        if (lk(a, set, F_WRLCK, 1, 1) != 0)
            _exit(100);
        put(up[1], 'l');
        int r = lk(a, setw, F_WRLCK, 0, 1);
        _exit(r == 0 ? 0 : errno);
    }
    get(up[0]);
    check(wait_asleep(pid), "the child waits for byte 0");
    errno = 0;
    check_err(lk(fd, F_SETLKW, F_WRLCK, 1, 1), EDEADLK,
              ofd ? "F_SETLKW for the child's OFD-locked byte 1" : "F_SETLKW for byte 1");
    errno = 0; check_err(lk(fd, F_SETLK, F_WRLCK, 1, 1), EAGAIN, "F_SETLK for byte 1");
    check(lk(fd, F_SETLK, F_UNLCK, 0, 1) == 0, "parent unlocks byte 0");
    printf("the child's wait ended: %d\n", reap(pid));
    check(holder(fd, F_GETLK, 0, 0) == 0, "the child's locks went with it");
    close(fd);
    close(up[0]); close(up[1]);
}

/* flock and OFD locks belong to the description: a fork child shares them, and they
 * last until the description's last close, in whichever process. */
static void inherited(void)
{
    int up[2], down[2];
    check(pipe(up) == 0 && pipe(down) == 0, "pipes");
    int fd = open("f", O_RDWR);
    check(flock(fd, LOCK_EX) == 0, "parent flock EX");
    check(lk(fd, F_OFD_SETLK, F_WRLCK, 0, 10) == 0, "parent OFD W [0,10)");
    pid_t parent = getpid();
    pid_t pid = spawn();
    if (pid == 0) {
        int other = open("f", O_RDWR);
        int bits = 0;
        bits |= (flock(fd, LOCK_EX | LOCK_NB) != 0) << 0;          /* the same lock */
        bits |= (flock(other, LOCK_EX | LOCK_NB) != -1) << 1;      /* conflicts */
        bits |= (lk(fd, F_OFD_SETLK, F_WRLCK, 0, 20) != 0) << 2;   /* same owner: grows */
        bits |= (holder(other, F_GETLK, 0, 0) != -1) << 3;         /* an OFD lock: pid -1 */
        put(up[1], 'c');
        get(down[0]);                                             /* the parent closed fd */
        bits |= (flock(other, LOCK_EX | LOCK_NB) != -1) << 4;      /* still held (by us) */
        bits |= (holder(other, F_OFD_GETLK, 15, 1) != -1) << 5;
        close(fd);                                                /* the last close */
        bits |= (flock(other, LOCK_EX | LOCK_NB) != 0) << 6;
        bits |= (holder(other, F_OFD_GETLK, 0, 0) != 0) << 7;
        (void)parent;
        _exit(bits);
    }
    get(up[0]);
    close(fd);
    put(down[1], 'g');
    printf("inherited flock and OFD locks, child saw: %d\n", reap(pid));

    /* LOCK_UN in the child unlocks the shared description for the parent too */
    fd = open("f", O_RDWR);
    int other = open("f", O_RDWR);
    check(flock(fd, LOCK_SH) == 0, "parent flock SH");
    pid = spawn();
    if (pid == 0)
        _exit(flock(fd, LOCK_UN) != 0);
    printf("child's LOCK_UN: %d\n", reap(pid));
    check(flock(other, LOCK_EX | LOCK_NB) == 0, "the parent's flock went with it");
    close(fd);
    close(other);
    close(up[0]); close(up[1]); close(down[0]); close(down[1]);
}

/* POSIX locks are the process's: the child has none of the parent's, sees them as
 * another process's, and closing its copies of the descriptors leaves them alone. */
static void not_inherited(void)
{
    int fd = open("f", O_RDWR), probe = open("f", O_RDWR);
    check(lk(fd, F_SETLK, F_WRLCK, 0, 10) == 0, "parent POSIX W [0,10)");
    pid_t parent = getpid();
    pid_t pid = spawn();
    if (pid == 0) {
        int bits = 0;
        bits |= (holder(fd, F_GETLK, 0, 0) != parent) << 0;
        errno = 0;
        bits |= !(lk(fd, F_SETLK, F_WRLCK, 5, 1) == -1 && errno == EAGAIN) << 1;
        bits |= (lk(fd, F_SETLK, F_UNLCK, 0, 0) != 0) << 2;       /* unlocks nothing of theirs */
        bits |= (holder(fd, F_GETLK, 0, 0) != parent) << 3;
        close(fd);
        close(probe);
        _exit(bits);
    }
    printf("POSIX locks not inherited, child saw: %d\n", reap(pid));
    printf("the parent still holds its lock: %d\n", holder(probe, F_OFD_GETLK, 0, 0) == getpid());
    close(fd);
    printf("until it closes the file: %d\n", holder(probe, F_OFD_GETLK, 0, 0) == 0);
    close(probe);
}

/* A blocking flock and F_OFD_SETLKW in the parent, each ended by the child: flock by its
 * LOCK_UN, the OFD wait by the child closing the description that held the lock. */
static void waits_woken(void)
{
    int up[2], down[2];
    check(pipe(up) == 0 && pipe(down) == 0, "pipes");
    int fd = open("f", O_RDWR);
    pid_t parent = getpid();
    pid_t pid = spawn();
    if (pid == 0) {
        int a = open("f", O_RDWR), b = open("f", O_RDWR);
        int bits = 0;
        bits |= (flock(a, LOCK_EX) != 0) << 0;
        bits |= (lk(b, F_OFD_SETLK, F_RDLCK, 0, 0) != 0) << 1;
        put(up[1], 'l');
        bits |= !wait_asleep(parent) << 2;
        bits |= (flock(a, LOCK_UN) != 0) << 3;
        get(down[0]);                         /* the parent has its flock */
        bits |= !wait_asleep(parent) << 4;
        close(b);
        _exit(bits);
    }
    get(up[0]);
    printf("flock EX -> %d\n", flock(fd, LOCK_EX));
    put(down[1], 'g');
    printf("F_OFD_SETLKW -> %d\n", lk(fd, F_OFD_SETLKW, F_WRLCK, 0, 0));
    printf("child saw: %d\n", reap(pid));
    close(fd);
    close(up[0]); close(up[1]); close(down[0]); close(down[1]);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv, "locks_fork");
    int fd = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    check(write(fd, "0123456789abcdefghij", 20) == 20, "write 20 bytes");
    close(fd);
    posix_between();
    deadlock(0);
    deadlock(1);
    inherited();
    not_inherited();
    waits_woken();
    scratch_leave();
    return finish();
}
