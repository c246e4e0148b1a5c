/*
 * fsize: RLIMIT_FSIZE as Linux enforces it.  With the soft limit at 10000 bytes,
 * writes, pwrites, writev, O_APPEND writes, sendfile and copy_file_range starting
 * at or past it fail with EFBIG and raise SIGXFSZ; one crossing it is cut short
 * without a signal; ftruncate, truncate and fallocate growing a file past it fail
 * the same way; pipes and /dev/null are not limited.
 *
 * usage: fsize DIR [handler|ignore|die]   a file in DIR (default: handler)
 *        fsize stdout [handler|ignore]    fd 1 itself (a regular file); report on stderr
 * "die" leaves SIGXFSZ at its default action: the first write past the limit
 * kills the program (RLIMIT_CORE 0: no core file).
 */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>

#ifndef SYS_copy_file_range
#define SYS_copy_file_range 326
#endif

#define LIMIT 10000
static volatile sig_atomic_t sigs;
static FILE *rep;

static void on_xfsz(int sig)
{
    (void)sig;
    sigs++;
}

static void show(const char *label, long r)
{
    int e = errno;
    if (r < 0)
        fprintf(rep, "%s -> %s sigs=%d\n", label, errname(e), (int)sigs);
    else
        fprintf(rep, "%s -> %ld sigs=%d\n", label, r, (int)sigs);
    fflush(rep);
}

static long size_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (long)st.st_size : -1;
}

int main(int argc, char **argv)
{
    static char buf[20000];
    memset(buf, 'x', sizeof buf);
    int on_stdout = argc > 1 && !strcmp(argv[1], "stdout");
    const char *mode = argc > 2 ? argv[2] : "handler";
    rep = on_stdout ? stderr : stdout;
    char path[4096], src_path[4096];
    snprintf(path, sizeof path, "%s/fsize.tmp", on_stdout ? "." : argv[1]);
    snprintf(src_path, sizeof src_path, "%s/fsize.src", on_stdout ? "." : argv[1]);

    int src = -1;
    if (!on_stdout) {             /* a 20000-byte source, made before the limit comes down */
        src = open(src_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (src < 0 || write(src, buf, sizeof buf) != (long)sizeof buf)
            return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = !strcmp(mode, "ignore") ? SIG_IGN : !strcmp(mode, "die") ? SIG_DFL : on_xfsz;
    sigaction(SIGXFSZ, &sa, NULL);
    struct rlimit core = {0, 0}, lim = {LIMIT, RLIM_INFINITY};
    setrlimit(RLIMIT_CORE, &core);
    if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
        return 2;

    int fd = on_stdout ? 1 : open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 2;
    show("write 8000", write(fd, buf, 8000));
    show("write 4000 crossing the limit", write(fd, buf, 4000));
    show("write 1 at the limit", write(fd, buf, 1));
    show("write 0 at the limit", write(fd, buf, 0));
    if (!strcmp(mode, "die")) {
        show("not reached: 20 past the limit", write(fd, buf, 20));
        return 0;
    }
    show("pwrite 100 at 9950", pwrite(fd, buf, 100, 9950));
    show("pwrite 1 at 10000", pwrite(fd, buf, 1, 10000));
    show("pwrite 1 at 20000", pwrite(fd, buf, 1, 20000));
    show("pwrite 10 at 5000", pwrite(fd, buf, 10, 5000));
    struct iovec iov[2] = {{buf, 30}, {buf, 30}};
    lseek(fd, 9970, SEEK_SET);
    show("writev 60 at 9970", writev(fd, iov, 2));
    show("pwritev 60 at 9990", pwritev(fd, iov, 2, 9990));
    show("ftruncate 10000", ftruncate(fd, 10000));
    show("ftruncate 10001", ftruncate(fd, 10001));
    show("ftruncate 5000", ftruncate(fd, 5000));
    show("fallocate 0+20000", fallocate(fd, 0, 0, 20000));
    show("fallocate keep-size 0+20000", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 20000));
    show("fallocate 9000+1000", fallocate(fd, 0, 9000, 1000));
    show("size", size_of(fd));
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_APPEND);
    show("O_APPEND write 1 at size 10000", write(fd, buf, 1));
    show("ftruncate 9990", ftruncate(fd, 9990));
    show("O_APPEND write 20 at size 9990", write(fd, buf, 20));
    show("O_APPEND pwrite 5 at 0 (appends)", pwrite(fd, buf, 5, 0));
    fcntl(fd, F_SETFL, fl);
    if (!on_stdout) {
        show("truncate path 20000", truncate(path, 20000));
        show("truncate path 100", truncate(path, 100));
        loff_t in = 0, out = 9000;
        show("copy_file_range 5000 to 9000", syscall(SYS_copy_file_range, src, &in, fd, &out, 5000, 0));
        out = 10000;
        show("copy_file_range 5000 to 10000", syscall(SYS_copy_file_range, src, &in, fd, &out, 5000, 0));
        off_t soff = 0;
        lseek(fd, 9500, SEEK_SET);
        show("sendfile 5000 at 9500", sendfile(fd, src, &soff, 5000));
        show("sendfile 5000 at the limit", sendfile(fd, src, &soff, 5000));
    }
    int p[2];
    if (pipe(p) == 0) {
        show("pipe write 20000", write(p[1], buf, 20000));
        close(p[0]);
        close(p[1]);
    }
    int null = open("/dev/null", O_WRONLY);
    show("/dev/null write 20000", write(null, buf, 20000));
    lim.rlim_cur = RLIM_INFINITY;
    setrlimit(RLIMIT_FSIZE, &lim);
    show("limit lifted: pwrite 1 at 20000", pwrite(fd, buf, 1, 20000));
    show("final size", size_of(fd));
    if (!on_stdout) {
        unlink(path);
        unlink(src_path);
    }
    return 0;
}
