/*
 * Read stdin to EOF and print its length, line count and FNV-1a 64 hash.
 * First, a read into a bad pointer: EFAULT when data is waiting (nothing
 * consumed), 0 when stdin is empty.
 */
#include "common.h"
#include <stdint.h>

int main(void)
{
    long r = syscall(SYS_read, 0, BADPTR, 16);
    if (r == -1)
        printf("read(0, bad pointer) -> %s\n", errname(errno));
    else
        printf("read(0, bad pointer) -> returned %ld\n", r);

    uint64_t h = 1469598103934665603ULL;
    unsigned long total = 0, lines = 0;
    static unsigned char buf[65536];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            printf("read error %s\n", errname(errno));
            return 2;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            h = (h ^ buf[i]) * 1099511628211ULL;
            lines += buf[i] == '\n';
        }
        total += n;
    }
    printf("bytes %lu\n", total);
    printf("lines %lu\n", lines);
    printf("fnv1a64 %016llx\n", (unsigned long long)h);
    return 0;
}
