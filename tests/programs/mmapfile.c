/*
 * mmap of files: MAP_PRIVATE copies (zero tail past EOF, writes stay private),
 * MAP_SHARED coherence with read/write (both ways, with and without msync,
 * after munmap), the EACCES/ENODEV/EINVAL/EBADF cases, mprotect EACCES on a
 * read-only shared mapping, msync errors, mincore on touched pages, the
 * program's own executable mapped privately, and /proc/self/maps naming the file.
 *
 *   mmapfile [DIR [nocoherence]]   DIR: where to create the scratch file (default /tmp)
 *
 * "nocoherence" skips the one check kvmbox does not promise for shared mappings
 * of host files (a write(2) showing up in an existing mapping before msync).
 */
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PG 4096L
#define FILE_SIZE (3 * PG + 100)

static unsigned char pattern(long i) { return (unsigned char)(i * 7 + 3); }

static int matches(const unsigned char *p, long off, long n)
{
    for (long i = 0; i < n; i++)
        if (p[i] != pattern(off + i))
            return 0;
    return 1;
}

static int zeros(const unsigned char *p, long n)
{
    for (long i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static long raw_mmap(void *addr, long len, int prot, int flags, int fd, long off)
{
    errno = 0;
    void *r = mmap(addr, len, prot, flags, fd, off);
    return r == MAP_FAILED ? -1 : 0;
}

static void check_private(int fd)
{
    unsigned char *p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    check(p != MAP_FAILED, "private map");
    if (p == MAP_FAILED)
        return;
    check(matches(p, 0, FILE_SIZE), "private bytes match the file");
    check(zeros(p + FILE_SIZE, PG - 100), "private tail past EOF reads zero");
    p[10] = 'X';
    unsigned char c = 0;
    check(pread(fd, &c, 1, 10) == 1 && c == pattern(10), "private write stays private");
    munmap(p, 4 * PG);

    unsigned char *q = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 2 * PG);
    check(q != MAP_FAILED && matches(q, 2 * PG, PG), "private map at an offset");
    if (q != MAP_FAILED)
        munmap(q, PG);
}

static void check_shared(int fd, int coherence)
{
    unsigned char *p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check(p != MAP_FAILED, "shared map");
    if (p == MAP_FAILED)
        return;
    check(matches(p, 0, FILE_SIZE), "shared bytes match the file");
    memcpy(p + 100, "through the mapping", 19);
    check(msync(p, 4 * PG, MS_SYNC) == 0, "msync MS_SYNC");
    char buf[32] = {0};
    check(pread(fd, buf, 19, 100) == 19 && !memcmp(buf, "through the mapping", 19),
          "read sees the mapping's write after msync");
    check(pwrite(fd, "via write", 9, PG + 5) == 9, "pwrite");
    if (coherence)
        check(!memcmp(p + PG + 5, "via write", 9), "the mapping sees write()");
    memcpy(p + 2 * PG, "unsynced", 8);
    check(msync(p, PG, MS_ASYNC) == 0, "msync MS_ASYNC");
    check(munmap(p, 4 * PG) == 0, "munmap shared");
    check(pread(fd, buf, 8, 2 * PG) == 8 && !memcmp(buf, "unsynced", 8),
          "a shared write survives munmap without msync");
    struct stat st;
    check(fstat(fd, &st) == 0 && st.st_size == FILE_SIZE, "shared mapping past EOF does not grow the file");
}

static void check_errors(const char *path, int rdwr)
{
    int ro = open(path, O_RDONLY);
    int wo = open(path, O_WRONLY);
    check_err(raw_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0), EACCES,
              "shared writable map of an O_RDONLY file");
    check_err(raw_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, wo, 0), EACCES,
              "map of an O_WRONLY file");
    check_err(raw_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, rdwr, 100), EINVAL, "unaligned offset");
    check_err(raw_mmap(NULL, 0, PROT_READ, MAP_PRIVATE, rdwr, 0), EINVAL, "zero length");
    check_err(raw_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, 999, 0), EBADF, "bad fd");
    unsigned char *s = mmap(NULL, PG, PROT_READ, MAP_SHARED, ro, 0);
    check(s != MAP_FAILED, "shared read-only map of an O_RDONLY file");
    if (s != MAP_FAILED) {
        errno = 0;
        check_err(mprotect(s, PG, PROT_READ | PROT_WRITE), EACCES,
                  "mprotect(PROT_WRITE) of that mapping");
        munmap(s, PG);
    }
    unsigned char *w = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
    check(w != MAP_FAILED, "private writable map of an O_RDONLY file");
    if (w != MAP_FAILED) {
        w[0] = 1;
        munmap(w, PG);
    }
    close(ro);
    close(wo);

    int dir = open("/", O_RDONLY | O_DIRECTORY);
    check_err(raw_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, dir, 0), ENODEV, "map of a directory");
    close(dir);
    int pfd[2];
    if (pipe(pfd) == 0) {
        check_err(raw_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, pfd[0], 0), ENODEV, "map of a pipe");
        check_err(raw_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, pfd[1], 0), EACCES,
                  "map of a pipe's write end");
        close(pfd[0]);
        close(pfd[1]);
    }
}

static void check_msync_mincore(int fd)
{
    unsigned char *p = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        check(0, "map for msync");
        return;
    }
    errno = 0;
    check_err(msync(p + 1, PG, MS_SYNC), EINVAL, "msync unaligned");
    check_err(msync(p, PG, MS_SYNC | MS_ASYNC), EINVAL, "msync MS_SYNC|MS_ASYNC");
    check_err(msync(p, PG, 0x100), EINVAL, "msync bad flags");
    munmap(p + PG, PG);
    check_err(msync(p, 2 * PG, MS_SYNC), ENOMEM, "msync over an unmapped page");
    volatile unsigned char sink = p[0];
    (void)sink;
    unsigned char vec[1] = {0};
    check(mincore(p, PG, vec) == 0 && (vec[0] & 1), "mincore: a touched page is resident");
    munmap(p, PG);
}

static void check_own_executable(const char *self)
{
    int fd = open(self, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        check(0, "open own executable");
        return;
    }
    long n = st.st_size < 64 * PG ? st.st_size : 64 * PG;
    unsigned char *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    unsigned char *buf = malloc(n);
    int same = m != MAP_FAILED && buf && pread(fd, buf, n, 0) == n && !memcmp(m, buf, n);
    check(same, "own executable: mapping equals read()");
    check(m != MAP_FAILED && !memcmp(m, "\177ELF", 4), "own executable starts with ELF magic");
    free(buf);
    if (m != MAP_FAILED)
        munmap(m, n);
    close(fd);
}

static void check_proc_maps(int fd, const char *path)
{
    unsigned char *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PG);
    if (p == MAP_FAILED) {
        check(0, "map for /proc/self/maps");
        return;
    }
    char want[64];
    snprintf(want, sizeof want, "%lx-", (unsigned long)(uintptr_t)p);
    FILE *f = fopen("/proc/self/maps", "r");
    int found = 0;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, want, strlen(want)))
            continue;
        char perms[8] = {0}, name[256] = {0};
        unsigned long off = 0;
        sscanf(line, "%*s %7s %lx %*s %*s %255s", perms, &off, name);
        found = !strcmp(perms, "rw-s") && off == (unsigned long)PG && !strcmp(name, path);
    }
    if (f)
        fclose(f);
    check(found, "/proc/self/maps names the file (rw-s, offset, path)");
    munmap(p, PG);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    int coherence = !(argc > 2 && !strcmp(argv[2], "nocoherence"));
    char path[512];
    snprintf(path, sizeof path, "%s/mmapfile.%d.dat", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    check(fd >= 0, "create the scratch file");
    if (fd < 0)
        return finish();
    unsigned char data[FILE_SIZE];
    for (long i = 0; i < FILE_SIZE; i++)
        data[i] = pattern(i);
    check(write(fd, data, FILE_SIZE) == FILE_SIZE, "write the scratch file");

    check_private(fd);
    check_shared(fd, coherence);
    check_errors(path, fd);
    check_msync_mincore(fd);
    check_own_executable(argv[0]);
    check_proc_maps(fd, path);

    close(fd);
    check(unlink(path) == 0, "unlink the scratch file");
    return finish();
}
