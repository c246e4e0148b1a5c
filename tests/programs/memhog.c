/*
 * memhog: probes the memory limit. Prints whether an mmap of argv[1] MiB and
 * a brk growth of argv[2] MiB succeed or fail with which errno, then touches
 * what it got. Native runs see no kvmbox limit; the sandbox tests pass --memory.
 * argv[3], when given, is a number of MiB written to DIR/memhog-fill first
 * (argv[4], default /tmp): file pages the memory limit does not charge.
 */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    long mmap_mb = argc > 1 ? atol(argv[1]) : 256;
    long brk_mb = argc > 2 ? atol(argv[2]) : 256;
    long fill_mb = argc > 3 ? atol(argv[3]) : 0;
    if (fill_mb > 0) {
        char path[256], chunk[65536];
        snprintf(path, sizeof path, "%s/memhog-fill", argc > 4 ? argv[4] : "/tmp");
        FILE *f = fopen(path, "w");
        memset(chunk, 7, sizeof chunk);
        long written = 0;
        while (f && written < fill_mb << 20 && fwrite(chunk, sizeof chunk, 1, f) == 1)
            written += sizeof chunk;
        if (f)
            fclose(f);
        printf("filled %ld MiB\n", written >> 20);
        fflush(stdout);
    }
    size_t len = (size_t)mmap_mb << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("mmap %ldM: %s\n", mmap_mb, errno == ENOMEM ? "ENOMEM" : "other error");
    } else {
        for (size_t i = 0; i < len; i += 4096) p[i] = 1;
        printf("mmap %ldM: ok\n", mmap_mb);
        munmap(p, len);
    }
    void *cur = (void *)syscall(SYS_brk, 0);
    void *want = (char *)cur + ((size_t)brk_mb << 20);
    void *got = (void *)syscall(SYS_brk, want);
    printf("brk +%ldM: %s\n", brk_mb, got == want ? "ok" : "refused");
    return 0;
}
