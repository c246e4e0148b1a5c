/*
 * File mappings past end of file: a 1-page+100-byte file mapped with 3 pages.
 * The partial last page reads (zeros past EOF); page 2, wholly past EOF,
 * raises SIGBUS (si_code BUS_ADRERR, si_addr the byte touched) on read and on
 * write, for MAP_SHARED and MAP_PRIVATE; a syscall given a buffer there fails
 * with EFAULT; once the file grows (ftruncate) the page reads as zeros and
 * takes writes (MAP_SHARED ones reach the file).  The program's own executable
 * (a read-only file) mapped past its end raises SIGBUS the same way.
 *
 *   mmapeof DIR        DIR: where to create the scratch file
 *   mmapeof DIR die    touch page 2 with SIGBUS's default action (dies of it)
 */
#include "common.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PG 4096L
#define FILE_SIZE (PG + 100)

static sigjmp_buf jb;
static volatile int got_sig, got_code;
static volatile uintptr_t got_addr;

static unsigned char pattern(long i) { return (unsigned char)(i * 7 + 3); }

static void handler(int sig, siginfo_t *si, void *uc)
{
    got_sig = sig;
    got_code = si->si_code;
    got_addr = (uintptr_t)si->si_addr;
    siglongjmp(jb, 1);
}

static void install(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    check(sigaction(sig, &sa, NULL) == 0, "sigaction(%s)", sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
}

static const char *signame(int sig)
{
    return sig == SIGBUS ? "SIGBUS" : sig == SIGSEGV ? "SIGSEGV" : sig ? "other" : "none";
}

/* Read (or write 'W' at) `p`; print which signal came, its si_code and whether si_addr == p. */
static int touch(const char *what, volatile unsigned char *p, int write, int *value)
{
    got_sig = got_code = 0;
    got_addr = 0;
    if (sigsetjmp(jb, 1) == 0) {
        if (write)
            *p = 'W';
        else if (value)
            *value = *p;
        else
            (void)*p;
    }
    printf("%s %s: %s", what, write ? "write" : "read", signame(got_sig));
    if (got_sig)
        printf(" si_code %d si_addr_ok %d", got_code, got_addr == (uintptr_t)p);
    printf("\n");
    return got_sig;
}

static void check_kind(int fd, int shared)
{
    const char *k = shared ? "shared" : "private";
    unsigned char *p = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE,
                            fd, 0);
    check(p != MAP_FAILED, "%s: map 3 pages of a 1-page+100-byte file", k);
    if (p == MAP_FAILED)
        return;
    int v = -1;
    check(!touch(k, p + PG + 99, 0, &v) && v == pattern(PG + 99), "%s: last byte of the file", k);
    check(!touch(k, p + PG + 100, 0, &v) && v == 0, "%s: the byte after EOF reads 0", k);
    check(!touch(k, p + 2 * PG - 1, 0, &v) && v == 0, "%s: the last byte of the partial page reads 0", k);

    check(touch(k, p + 2 * PG, 0, NULL) == SIGBUS && got_code == 2, "%s: page 2 read: SIGBUS BUS_ADRERR", k);
    check(touch(k, p + 2 * PG + 123, 0, NULL) == SIGBUS, "%s: page 2 read inside the page", k);
    check(touch(k, p + 2 * PG + 5, 1, NULL) == SIGBUS, "%s: page 2 write", k);
    check(touch(k, p + 3 * PG - 1, 1, NULL) == SIGBUS, "%s: page 2 last byte write", k);

    int pfd[2];
    errno = 0;
    check_err(pread(fd, p + 2 * PG, 16, 0), EFAULT, shared ? "shared: pread into page 2"
                                                           : "private: pread into page 2");
    if (pipe(pfd) == 0) {
        errno = 0;
        check_err(write(pfd[1], p + 2 * PG, 16), EFAULT, shared ? "shared: write from page 2"
                                                                : "private: write from page 2");
        close(pfd[0]);
        close(pfd[1]);
    }
    unsigned char vec[3] = {9, 9, 9};
    check(mincore(p, 3 * PG, vec) == 0 && vec[2] == 0, "%s: mincore: page 2 not resident", k);

    /* The file grows: page 2 is inside it now, reads zeros, takes writes. */
    check(ftruncate(fd, 3 * PG) == 0, "%s: ftruncate to 3 pages", k);
    check(!touch(k, p + 2 * PG + 123, 0, &v) && v == 0, "%s: page 2 reads 0 after the file grew", k);
    check(!touch(k, p + 2 * PG + 5, 1, NULL) && p[2 * PG + 5] == 'W', "%s: page 2 takes a write", k);
    if (shared)
        check(msync(p, 3 * PG, MS_SYNC) == 0, "shared: msync");
    unsigned char c = 1;
    check(pread(fd, &c, 1, 2 * PG + 5) == 1 && c == (shared ? 'W' : 0),
          "%s: the file %s the write", k, shared ? "has" : "does not have");
    check(!touch(k, p + PG + 100, 0, &v) && v == 0, "%s: the old partial page still reads 0 past the old EOF", k);
    munmap(p, 3 * PG);
    check(ftruncate(fd, FILE_SIZE) == 0, "%s: ftruncate back to 1 page + 100", k);
}

/* The program's own executable (read-only; a host file in the sandbox) mapped past its end. */
static void check_executable(const char *self)
{
    int fd = open(self, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        check(0, "open own executable");
        return;
    }
    long end = (st.st_size + PG - 1) / PG * PG;          /* first page wholly past EOF */
    for (int rw = 0; rw < 2; rw++) {
        const char *k = rw ? "executable rw" : "executable ro";
        unsigned char *p = mmap(NULL, end + 2 * PG, PROT_READ | (rw ? PROT_WRITE : 0), MAP_PRIVATE, fd, 0);
        check(p != MAP_FAILED, "%s: map past the end", k);
        if (p == MAP_FAILED)
            continue;
        int v = -1;
        check(!touch(k, p, 0, &v) && v == 0x7f, "%s: first byte", k);
        check(!touch(k, p + st.st_size - 1, 0, NULL), "%s: last byte", k);
        check(touch(k, p + end + 17, 0, NULL) == SIGBUS && got_code == 2, "%s: past the end: SIGBUS", k);
        check(touch(k, p + end + PG + 1, 0, NULL) == SIGBUS, "%s: two pages past the end", k);
        if (rw)
            check(touch(k, p + end + 8, 1, NULL) == SIGBUS, "%s: write past the end", k);
        munmap(p, end + 2 * PG);
    }
    close(fd);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    int die = argc > 2 && !strcmp(argv[2], "die");
    char path[512];
    snprintf(path, sizeof path, "%s/mmapeof.%d.dat", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    check(fd >= 0, "create the scratch file");
    if (fd < 0)
        return finish();
    unsigned char data[FILE_SIZE];
    for (long i = 0; i < FILE_SIZE; i++)
        data[i] = pattern(i);
    check(write(fd, data, FILE_SIZE) == FILE_SIZE, "write the scratch file");
    if (die) {
        unlink(path);
        volatile unsigned char *p = mmap(NULL, 3 * PG, PROT_READ, MAP_SHARED, fd, 0);
        printf("touching page 2\n");
        fflush(stdout);
        if (p != MAP_FAILED)
            (void)p[2 * PG + 1];
        printf("still alive\n");
        return 1;
    }
    install(SIGBUS);
    install(SIGSEGV);
    check_kind(fd, 1);
    check_kind(fd, 0);
    check_executable(argv[0]);
    close(fd);
    check(unlink(path) == 0, "unlink the scratch file");
    return finish();
}
