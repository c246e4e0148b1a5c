/*
 * mapmany COUNT [FILE [shared]]: maps the first page of FILE (default: this
 * program) COUNT times at once through one descriptor, MAP_PRIVATE (or
 * MAP_SHARED read-only), reads every mapping, then unmaps them all.  Prints
 * the count and a checksum.  The sandbox must neither hold a host descriptor
 * per mapping nor slow down as the mappings add up (issue 7 §5).
 */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

static char *maps[70000];

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    const char *path = argc > 2 ? argv[2] : argv[0];
    int shared = argc > 3 && strcmp(argv[3], "shared") == 0;
    if (n < 0 || n > (long)(sizeof maps / sizeof maps[0]))
        n = sizeof maps / sizeof maps[0];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("open: %s\n", errname(errno));
        return 1;
    }
    unsigned long sum = 0;
    long made = 0;
    for (; made < n; made++) {
        maps[made] = mmap(NULL, 4096, PROT_READ, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
        if (maps[made] == MAP_FAILED) {
            printf("mmap %ld: %s\n", made, errname(errno));
            break;
        }
        sum += (unsigned char)maps[made][made % 4096];
    }
    close(fd);
    for (long i = 0; i < made; i++)
        sum += (unsigned char)maps[i][1];
    for (long i = 0; i < made; i++)
        munmap(maps[i], 4096);
    printf("mapped %ld of %ld, sum %lu\n", made, n, sum);
    return made == n ? 0 : 1;
}
