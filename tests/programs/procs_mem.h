/*
 * procs.c section about memory across fork: MAP_SHARED anonymous and file
 * mappings stay shared, MAP_PRIVATE is copied on write in both directions,
 * MADV_DONTFORK leaves a hole in the child, MADV_WIPEONFORK gives it zeros.
 */
#ifndef KVMBOX_PROCS_MEM_H
#define KVMBOX_PROCS_MEM_H

#include "procs.h"

#define PG 4096UL

static unsigned char *map_anon(size_t len, int shared)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The child reads m[0] (written before the fork), writes m[1], waits for the parent to write
 * m[2] after the fork, and exits with (m[0] == 1) | (m[2] == 3) << 1. */
static int share_child(unsigned char *m, struct gate *to_child, struct gate *to_parent)
{
    alarm(15);
    int before = m[0] == 1;
    m[1] = 2;
    gate_pass(to_parent);
    gate_await(to_child);
    return before | (m[2] == 3) << 1;
}

static void share_round(const char *what, unsigned char *m)
{
    struct gate tc = gate_new(), tp = gate_new();
    memset(m, 0, 3);
    m[0] = 1;
    pid_t c = fork();
    if (c == 0)
        _exit(share_child(m, &tc, &tp));
    gate_await(&tp);
    int child_wrote = m[1] == 2;
    m[2] = 3;
    gate_pass(&tc);
    int st = wait_for(c, 0);
    int v = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    say("%s: child sees the pre-fork value %d; parent sees the child's write %d; child sees the parent's "
        "later write %d", what, v & 1, child_wrote, v >> 1 & 1);
    gate_close(&tc);
    gate_close(&tp);
}

static volatile int g_segv_maperr, g_segv_addr_ok;
static unsigned char *g_hole;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    _exit(40 + (si->si_code == SEGV_MAPERR) + 2 * ((unsigned char *)si->si_addr == g_hole));
}

static unsigned long nonzero(const unsigned char *p, size_t len)
{
    unsigned long n = 0;
    for (size_t i = 0; i < len; i++)
        n += p[i] != 0;
    return n;
}

static void sec_memory(void)
{
    unsigned char *sh = map_anon(4 * PG, 1), *pr = map_anon(4 * PG, 0);
    if (!sh || !pr)
        return say("mmap: %s", errname(errno));
    share_round("MAP_SHARED|MAP_ANONYMOUS", sh);
    share_round("MAP_PRIVATE|MAP_ANONYMOUS", pr);
    static unsigned char data_seg[3 * PG];
    share_round("a global in .bss", data_seg);

    /* A private page never touched before the fork: the child's write stays in the child. */
    unsigned char *fresh = map_anon(PG, 0);
    pid_t c = fork();
    if (c == 0) {
        fresh[0] = 9;
        _exit(fresh[0]);
    }
    say_wait("child wrote an untouched private page", c);
    say("the parent's page is still zero: %d", fresh[0] == 0);

    /* 8 MiB private, every page written by the child, checksummed by both. */
    size_t big = 8 << 20;
    unsigned char *b = map_anon(big, 0);
    for (size_t i = 0; i < big; i += PG)
        b[i] = (unsigned char)(i >> 12);
    c = fork();
    if (c == 0) {
        for (size_t i = 0; i < big; i += PG)
            b[i] ^= 0xff;
        unsigned long bad = 0;
        for (size_t i = 0; i < big; i += PG)
            bad += b[i] != (unsigned char)((i >> 12) ^ 0xff);
        _exit(bad ? 1 : 0);
    }
    say_wait("child rewrote 2048 private pages", c);
    unsigned long bad = 0;
    for (size_t i = 0; i < big; i += PG)
        bad += b[i] != (unsigned char)(i >> 12);
    say("the parent's 2048 pages unchanged: %d", bad == 0);
    munmap(b, big);

    /* Shared and private mappings of a file. */
    const char *path = tmp_path("mapped");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, PG) != 0)
        return say("file: %s", errname(errno));
    unsigned char *fs = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    unsigned char *fp = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (fs == MAP_FAILED || fp == MAP_FAILED)
        return say("mmap file: %s", errname(errno));
    c = fork();
    if (c == 0) {
        memcpy(fs, "shared!", 7);
        memcpy(fp + 100, "private", 7);
        _exit(0);
    }
    say_wait("child wrote both file mappings", c);
    char buf[8] = {0};
    ssize_t n = pread(fd, buf, 7, 0);
    say("MAP_SHARED file: parent's mapping \"%.7s\", the file \"%.*s\"", (char *)fs, (int)(n > 0 ? n : 0), buf);
    n = pread(fd, buf, 7, 100);
    say("MAP_PRIVATE file: parent's copy has zeros %d, the file has zeros %d", nonzero(fp + 100, 7) == 0,
        n == 7 && nonzero((unsigned char *)buf, 7) == 0);
    munmap(fs, PG);
    munmap(fp, PG);
    close(fd);
    unlink(path);

    /* MADV_DONTFORK: the range is not mapped in the child. */
    g_hole = map_anon(2 * PG, 0);
    memset(g_hole, 0x33, 2 * PG);
    say("MADV_DONTFORK: %s", res(madvise(g_hole, 2 * PG, MADV_DONTFORK)));
    c = fork();
    if (c == 0) {
        set_action(SIGSEGV, on_segv, 0);
        _exit(g_hole[0] == 0x33 ? 10 : 11);
    }
    int st = wait_for(c, 0);
    int v = WIFEXITED(st) ? WEXITSTATUS(st) - 40 : -1;
    if (v < 0 || v > 3)
        say("child touching the range: %s", status_text(st));
    else
        say("child touching the range: SIGSEGV, SEGV_MAPERR %d, si_addr is the range %d", v & 1, v >> 1);
    c = fork();
    if (c == 0) {
        void *p = mmap(g_hole, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        _exit(p == g_hole ? 0 : 1);
    }
    say_wait("child maps over the hole with MAP_FIXED_NOREPLACE", c);
    say("the parent still has it: %d", g_hole[PG] == 0x33);
    say("MADV_DOFORK: %s", res(madvise(g_hole, 2 * PG, MADV_DOFORK)));
    c = fork();
    if (c == 0)
        _exit(g_hole[0]);
    say_wait("child after MADV_DOFORK reads", c);
    munmap(g_hole, 2 * PG);

    /* MADV_WIPEONFORK: the child, and its own child, read zeros. */
    unsigned char *w = map_anon(4 * PG, 0);
    memset(w, 0x5a, 4 * PG);
    say("MADV_WIPEONFORK: %s", res(madvise(w, 4 * PG, MADV_WIPEONFORK)));
    say("MADV_WIPEONFORK on a shared mapping: %s", res(madvise(sh, PG, MADV_WIPEONFORK)));
    c = fork();
    if (c == 0) {
        unsigned long nz = nonzero(w, 4 * PG);
        memset(w, 0x11, PG);
        pid_t gc = fork();
        if (gc == 0)
            _exit(nonzero(w, 4 * PG) ? 1 : 0);
        int gst = wait_for(gc, 0);
        _exit((nz ? 1 : 0) | (WIFEXITED(gst) ? WEXITSTATUS(gst) : 3) << 1);
    }
    st = wait_for(c, 0);
    v = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    say("child reads zeros %d, its own child reads zeros %d; the parent keeps its bytes %d", !(v & 1),
        v >= 0 && !(v >> 1), nonzero(w, 4 * PG) == 4 * PG && w[0] == 0x5a);
    say("MADV_KEEPONFORK: %s", res(madvise(w, 4 * PG, MADV_KEEPONFORK)));
    c = fork();
    if (c == 0)
        _exit(w[0]);
    say_wait("child after MADV_KEEPONFORK reads", c);
}

#endif
