/*
 * The standard streams as a way out: fd 0 is a host directory or file outside
 * the sandbox's view (kvmbox run --rootfs), fd 1 a host file opened for appending.
 * Tries to gain more access than the descriptors carry (reopen for writing or
 * truncating, read the write-only stdout), to walk from them to other host files
 * (openat, fd/N/name, fchdir, the readlink text, O_PATH, a reopened directory's
 * entries, linkat) and to write through them.  Each attempt prints
 * "label: RESULT" (escape_common.h) on stderr; tests/security/test_stream_reopen.py
 * judges them and the host files afterwards.  Never runs natively.
 */
#include "escape_common.h"
#include <dirent.h>
#include <sys/mman.h>

static void say(const char *label, long ret)
{
    if (ret < 0)
        dprintf(2, "%s: %s\n", label, esc_errname(errno));
    else
        dprintf(2, "%s: ok\n", label);
}

/* Read up to 200 bytes of the file `fd` and show them; closes fd. */
static void show(const char *label, int fd)
{
    char buf[256];
    if (fd < 0) {
        say(label, -1);
        return;
    }
    long n = read(fd, buf, 200);
    if (n < 0) {
        dprintf(2, "%s: opened, read %s\n", label, esc_errname(errno));
    } else {
        dprintf(2, "%s: read %ld ", label, n);
        for (long i = 0; i < n; i++)
            dprintf(2, "%c", buf[i] >= 32 && buf[i] < 127 ? buf[i] : '.');
        dprintf(2, "\n");
    }
    close(fd);
}

static void entries(const char *label, int fd)
{
    char buf[4096];
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) {
        say(label, -1);
        return;
    }
    dprintf(2, "%s: entries", label);
    for (long off = 0; off < n;) {
        struct { unsigned long long ino; long long off; unsigned short reclen; unsigned char type; char name[]; }
            *d = (void *)(buf + off);
        dprintf(2, " %s", d->name);
        off += d->reclen;
    }
    dprintf(2, "\n");
}

int main(void)
{
    escape_guard();
    static const char *links[] = {"/proc/self/fd/0", "/dev/stdin", "/dev/fd/0",
                                  "/proc/thread-self/fd/0", "/proc/1/fd/0"};
    char label[128];
    for (unsigned i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(label, sizeof label, "%s O_RDWR", links[i]);
        say(label, open(links[i], O_RDWR));
        snprintf(label, sizeof label, "%s O_WRONLY", links[i]);
        say(label, open(links[i], O_WRONLY));
        snprintf(label, sizeof label, "%s O_RDONLY|O_TRUNC", links[i]);
        say(label, open(links[i], O_RDONLY | O_TRUNC));
    }
    int d = dup(0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", d);
    say("dup of 0 reopened O_RDWR", open(path, O_RDWR));
    say("/dev/stdout O_RDONLY", open("/dev/stdout", O_RDONLY));
    say("/proc/self/fd/1 O_RDWR", open("/proc/self/fd/1", O_RDWR));
    show("read fd 1", dup(1));
    char c;
    say("pread fd 1", pread(1, &c, 1, 0));
    void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, 1, 0);
    say("mmap fd 1", m == MAP_FAILED ? -1 : 0);

    say("write fd 0", write(0, "X", 1));
    say("ftruncate fd 0", ftruncate(0, 0));
    say("fallocate fd 0", fallocate(0, 0, 0, 4096));
    m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 0, 0);
    say("mmap shared writable fd 0", m == MAP_FAILED ? -1 : 0);

    /* from the descriptors to other host files */
    show("openat(0, secret.txt)", openat(0, "secret.txt", O_RDONLY));
    show("/proc/self/fd/0/secret.txt", open("/proc/self/fd/0/secret.txt", O_RDONLY));
    show("/dev/stdin/../secret.txt", open("/dev/stdin/../secret.txt", O_RDONLY));
    char text[4096];
    long n = readlink("/proc/self/fd/0", text, sizeof text - 64);
    if (n > 0) {
        text[n] = 0;
        dprintf(2, "readlink fd 0: %s\n", text);
        show("open(readlink text)", open(text, O_RDONLY));
        strcat(text, "/secret.txt");
        show("open(readlink text/secret.txt)", open(text, O_RDONLY));
    }
    int p = open("/proc/self/fd/0", O_PATH);
    say("O_PATH of fd/0", p);
    show("openat(O_PATH fd, secret.txt)", openat(p, "secret.txt", O_RDONLY));
    int r = open("/proc/self/fd/0", O_RDONLY | O_DIRECTORY);
    say("reopen of fd 0 as a directory", r);
    if (r >= 0) {
        entries("getdents of the reopened fd 0", r);
        show("openat(reopened, secret.txt)", openat(r, "secret.txt", O_RDONLY));
        say("fchdir(reopened)", fchdir(r));
        show("secret.txt after fchdir(reopened)", open("secret.txt", O_RDONLY));
    }
    entries("getdents of fd 0", 0);
    say("fchdir(0)", fchdir(0));
    show("secret.txt after fchdir(0)", open("secret.txt", O_RDONLY));
    say("linkat(0, \"\", /tmp/linked)", linkat(0, "", AT_FDCWD, "/tmp/linked", AT_EMPTY_PATH));
    show("/tmp/linked", open("/tmp/linked", O_RDONLY));
    say("linkat(/proc/self/fd/0, /tmp/l2)",
        linkat(AT_FDCWD, "/proc/self/fd/0", AT_FDCWD, "/tmp/l2", AT_SYMLINK_FOLLOW));
    show("/tmp/l2", open("/tmp/l2", O_RDONLY));
    say("chmod /dev/stdin", chmod("/dev/stdin", 04777));
    say("truncate /proc/self/fd/0", truncate("/proc/self/fd/0", 0));
    return 0;
}
