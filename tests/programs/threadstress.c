/*
 * 16 threads at once on one process: files created, renamed and unlinked in one
 * directory; private mappings made, touched, write-protected and unmapped; pipe I/O
 * between thread pairs; a mutex/condition-variable ping-pong.  Prints a deterministic
 * summary (counts and sums).  Arguments: a writable directory and the rounds per thread.
 */
#include "common.h"
#include <pthread.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdatomic.h>
#define NT 16
static int iters;
static char dir[200];
static long fcount[NT], mcount[NT], pcount[NT];
static int pipes[NT][2];
static pthread_mutex_t pm = PTHREAD_MUTEX_INITIALIZER; static pthread_cond_t pc = PTHREAD_COND_INITIALIZER; static int ping;
static void *w(void *a) {
  long id = (long)a; char p1[320], p2[320];
  for (int i = 0; i < iters; i++) {
    snprintf(p1, sizeof p1, "%s/f%ld_%d", dir, id, i); snprintf(p2, sizeof p2, "%s/g%ld_%d", dir, id, i);
    int fd = open(p1, O_CREAT | O_WRONLY, 0644); write(fd, p1, strlen(p1)); close(fd);
    if (rename(p1, p2) == 0) fcount[id]++;
    if (i % 2) unlink(p2);
    char *m = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int k = 0; k < 65536; k += 4096) m[k] = (char)(id + k);
    mprotect(m, 32768, PROT_READ); long s = 0; for (int k = 0; k < 65536; k += 4096) s += m[k];
    munmap(m, 65536); mcount[id] += s & 0xff;
    if (id % 2 == 0) { char b = (char)i; write(pipes[id][1], &b, 1); } else { char b; read(pipes[id - 1][0], &b, 1); pcount[id] += (unsigned char)b; }
    if (id < 2) { pthread_mutex_lock(&pm); while (ping % 2 != id) pthread_cond_wait(&pc, &pm); ping++; pthread_cond_broadcast(&pc); pthread_mutex_unlock(&pm); }
  }
  return 0;
}
int main(int argc, char **argv) {
  const char *base = argc > 1 ? argv[1] : "/tmp";
  iters = argc > 2 ? atoi(argv[2]) : 200;
  snprintf(dir, sizeof dir, "%s/threadstress.%d", base, getpid()); mkdir(dir, 0755);
  for (int i = 0; i < NT; i++) pipe(pipes[i]);
  pthread_t t[NT]; for (long i = 0; i < NT; i++) pthread_create(&t[i], 0, w, (void *)i);
  for (int i = 0; i < NT; i++) pthread_join(t[i], 0);
  long f = 0, m = 0, p = 0; for (int i = 0; i < NT; i++) { f += fcount[i]; m += mcount[i]; p += pcount[i]; }
  int left = 0;
  for (long id = 0; id < NT; id++) for (int i = 0; i < iters; i++) { char q[320]; snprintf(q, sizeof q, "%s/g%ld_%d", dir, id, i); if (access(q, F_OK) == 0) { left++; unlink(q); } }
  rmdir(dir);
  printf("renamed %ld left %d mem %ld pipe %ld ping %d\n", f, left, m, p, ping);
  check(f == (long)NT * iters && left == NT * iters / 2 && ping == 2 * iters, "every round of every thread done");
  return finish();
}
