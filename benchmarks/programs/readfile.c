/* Read the file argv[2] from start to end COUNT times (argv[1]) in 64 KiB read(2)s.
 * Prints "readfile PASSES BYTES SUM" with a byte sum so the data is really used. */
#include "bench.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long passes = arg_count(argc, argv, 1);
    if (argc < 3) {
        fprintf(stderr, "usage: %s PASSES FILE\n", argv[0]);
        return 2;
    }
    static unsigned char buf[65536];
    unsigned long total = 0, sum = 0;
    for (long p = 0; p < passes; p++) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) {
            perror(argv[2]);
            return 1;
        }
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0) {
                perror("read");
                return 1;
            }
            if (n == 0)
                break;
            total += (unsigned long)n;
            for (ssize_t i = 0; i < n; i += 4096)
                sum += buf[i];
        }
        close(fd);
    }
    printf("readfile %ld %lu %lu\n", passes, total, sum);
    return 0;
}
