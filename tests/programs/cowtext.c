/*
 * Copy-on-write out of a read-only file mapping: map a file (argv[1], e.g. /usr/bin/true)
 * PROT_READ MAP_PRIVATE, make the mapping writable, scribble on it, and check that a
 * fresh mapping and read(2) of the file still see the original bytes.  In the sandbox the
 * read-only mapping views the page cache shared by every run, so this is also the check
 * that no program can write into that cache.
 */
#include "common.h"
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static unsigned long sum(const unsigned char *p, size_t n)
{
    unsigned long s = 0;
    for (size_t i = 0; i < n; i++)
        s = s * 31 + p[i];
    return s;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/usr/bin/true";
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    unsigned char orig[8192];
    ssize_t got = pread(fd, orig, sizeof orig, 0);
    check(got == (ssize_t)sizeof orig, "read the first two pages");

    unsigned char *m = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
    check(m != MAP_FAILED, "map read-only private");
    check(sum(m, 8192) == sum(orig, 8192), "mapping shows the file");
    check(mprotect(m, 4096, PROT_READ | PROT_WRITE) == 0, "mprotect the first page writable");
    memset(m, 0xCC, 4096);
    check(m[0] == 0xCC && m[4095] == 0xCC, "own copy written");
    check(sum(m + 4096, 4096) == sum(orig + 4096, 4096), "second page still the file's");

    unsigned char *m2 = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
    check(m2 != MAP_FAILED, "map again");
    check(sum(m2, 8192) == sum(orig, 8192), "a new mapping sees the original bytes");
    unsigned char again[4096];
    check(pread(fd, again, sizeof again, 0) == 4096 && !memcmp(again, orig, 4096),
          "read(2) sees the original bytes");
    check(munmap(m, 8192) == 0 && munmap(m2, 8192) == 0, "munmap both");

    unsigned char *m3 = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    check(m3 != MAP_FAILED && !memcmp(m3, orig, 4096), "after munmap, a mapping is original");
    close(fd);
    return finish();
}
