/*
 * faults: commit one fatal CPU fault chosen by argv[1]; the kernel must kill
 * the program with the signal Linux sends (the harness compares native and
 * sandbox exit statuses). Prints the chosen case first (flushed).
 */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>

static volatile int zero = 0;

#pragma GCC diagnostic ignored "-Winfinite-recursion"
static int recurse(int n) {
    volatile char pad[4096];
    pad[0] = (char)n;
    return recurse(n + 1) + pad[0];
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "segv_read";
    printf("fault case %s\n", c);
    fflush(stdout);
    if (!strcmp(c, "segv_read")) return *(volatile int *)(uintptr_t)(16 + zero);
    if (!strcmp(c, "segv_write")) { *(volatile int *)0x1000 = 1; return 0; }
    if (!strcmp(c, "segv_write_ro")) {
        char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = 1;
        return 0;
    }
    if (!strcmp(c, "segv_exec_nx")) {
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = (char)0xc3;
        ((void (*)(void))p)();
        return 0;
    }
    if (!strcmp(c, "segv_after_munmap")) {
        char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = 1;
        munmap(p, 8192);
        return p[0];
    }
    if (!strcmp(c, "segv_after_mprotect")) {
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = 1;
        mprotect(p, 4096, PROT_READ);
        p[0] = 2;
        return 0;
    }
    if (!strcmp(c, "noncanonical")) return *(volatile int *)0x8000000000000000ULL;
    if (!strcmp(c, "kernel_half")) return *(volatile int *)0xffffffff81000000ULL;
    if (!strcmp(c, "stub_region")) return *(volatile int *)0x7f8000000000ULL;
    if (!strcmp(c, "stack_overflow")) return recurse(0);
    if (!strcmp(c, "ud2")) __asm__ volatile("ud2");
    if (!strcmp(c, "int3")) __asm__ volatile("int3");
    if (!strcmp(c, "div0")) __asm__ volatile("xor %%ecx, %%ecx; mov $1, %%eax; cltd; idivl %%ecx" ::: "eax", "ecx", "edx");
    if (!strcmp(c, "hlt")) __asm__ volatile("hlt");
    if (!strcmp(c, "cli")) __asm__ volatile("cli");
    if (!strcmp(c, "out")) __asm__ volatile("outb %%al, $0x80" ::: "memory");
    if (!strcmp(c, "out_syscall_port")) __asm__ volatile("outb %%al, $0x10" ::: "memory");
    if (!strcmp(c, "in")) __asm__ volatile("inb $0x11, %%al" ::: "eax");
    if (!strcmp(c, "mov_cr3")) __asm__ volatile("mov %%cr3, %%rax" ::: "rax");
    if (!strcmp(c, "wrmsr")) __asm__ volatile("xor %%eax, %%eax; xor %%edx, %%edx; mov $0xc0000082, %%ecx; wrmsr" ::: "eax", "ecx", "edx");
    if (!strcmp(c, "lidt")) { static char buf[16]; __asm__ volatile("lidt %0" :: "m"(buf)); }
    if (!strcmp(c, "int80")) __asm__ volatile("int $0x80" ::: "memory");
    if (!strcmp(c, "jump_null")) ((void (*)(void))0)();
    printf("no fault\n");
    return 3;
}
