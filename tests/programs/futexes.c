/*
 * futex(2) between threads and between processes: WAIT/WAKE ping-pong, WAKE counts,
 * bitsets, REQUEUE and CMP_REQUEUE, WAKE_OP, absolute timeouts on both clocks, EINTR
 * and restart by a signal, PI lock/trylock/unlock with their errors, a shared futex in
 * a MAP_SHARED page across fork (the other process maps it at another address), and
 * clear_child_tid waking a waiter when a thread ends.
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_LOCK_PI 6
#define FUTEX_UNLOCK_PI 7
#define FUTEX_TRYLOCK_PI 8
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX_OP(op, oparg, cmp, cmparg) \
    ((((op) & 0xf) << 28) | (((cmp) & 0xf) << 24) | (((oparg) & 0xfff) << 12) | ((cmparg) & 0xfff))

static long futex(void *uaddr, int op, uint32_t val, const void *ts, void *uaddr2, uint32_t val3)
{
    return syscall(SYS_futex, uaddr, op, val, ts, uaddr2, val3);
}

static atomic_uint word, word2;
static atomic_int asleep;

static void *sleeper(void *arg)
{
    long op = (long)arg;
    atomic_fetch_add(&asleep, 1);
    long r;
    do
        r = futex(&word, op, 0, NULL, NULL, op == FUTEX_WAIT_BITSET ? 2 : 0);
    while (r == -1 && errno == EAGAIN && atomic_load(&word) == 0);
    return (void *)r;
}

/* Wait until n threads are (very probably) asleep on `word`. */
static void settle(int n)
{
    while (atomic_load(&asleep) < n)
        usleep(1000);
    usleep(30000);
}

static void start(pthread_t *t, int n, long op)
{
    atomic_store(&asleep, 0);
    atomic_store(&word, 0);
    for (int i = 0; i < n; i++)
        pthread_create(&t[i], NULL, sleeper, (void *)op);
    settle(n);
}

static void join_all(pthread_t *t, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

static void wakes(void)
{
    pthread_t t[4];
    start(t, 3, FUTEX_WAIT);
    long woke = futex(&word, FUTEX_WAKE, 2, NULL, NULL, 0);
    long rest = futex(&word, FUTEX_WAKE, 5, NULL, NULL, 0);
    check(woke == 2 && rest == 1, "WAKE 2 of 3 sleepers, then the last one");
    join_all(t, 3);

    start(t, 2, FUTEX_WAIT_BITSET);                     /* they wait on bit 2 */
    long none = futex(&word, FUTEX_WAKE_BITSET, 9, NULL, NULL, 1);
    long both = futex(&word, FUTEX_WAKE_BITSET, 9, NULL, NULL, 2 | 8);
    check(none == 0 && both == 2, "WAKE_BITSET wakes only matching bitsets");
    join_all(t, 2);

    start(t, 4, FUTEX_WAIT);
    long r = futex(&word, FUTEX_REQUEUE, 1, (void *)2L, &word2, 0);
    check(r == 3, "REQUEUE: 1 woken + 2 moved to another futex");
    check(futex(&word2, FUTEX_WAKE, 9, NULL, NULL, 0) == 2, "the moved ones wake on the second futex");
    check(futex(&word, FUTEX_WAKE, 9, NULL, NULL, 0) == 1, "one was left on the first");
    join_all(t, 4);

    start(t, 2, FUTEX_WAIT);
    errno = 0;
    check_err(futex(&word, FUTEX_CMP_REQUEUE, 1, (void *)1L, &word2, 5), EAGAIN,
              "CMP_REQUEUE with a stale value");
    check(futex(&word, FUTEX_CMP_REQUEUE, 0, (void *)1L, &word2, 0) == 1,
          "CMP_REQUEUE: none woken, 1 moved");
    futex(&word2, FUTEX_WAKE, 9, NULL, NULL, 0);
    futex(&word, FUTEX_WAKE, 9, NULL, NULL, 0);
    join_all(t, 2);

    start(t, 2, FUTEX_WAIT);
    atomic_store(&word2, 5);
    /* *word2 = 5 + 3; wake 1 on word; old value 5 > 4 so wake 1 on word2 (nobody there) */
    r = futex(&word, FUTEX_WAKE_OP, 1, (void *)1L, &word2, FUTEX_OP(1, 3, 4, 4));
    check(r == 1 && atomic_load(&word2) == 8, "WAKE_OP: add, compare, wake");
    r = futex(&word, FUTEX_WAKE_OP, 1, (void *)1L, &word2, FUTEX_OP(0, 0, 0, 99));
    check(r == 1 && atomic_load(&word2) == 0, "WAKE_OP: set, failed compare");
    join_all(t, 2);
    check_err(futex(&word, FUTEX_WAKE_OP, 1, (void *)1L, &word2, 7u << 28), ENOSYS, "WAKE_OP bad op");
}

static void timeouts(void)
{
    atomic_store(&word, 3);
    struct timespec now, abs;
    clock_gettime(CLOCK_REALTIME, &now);
    abs = now;
    abs.tv_nsec += 20000000;
    if (abs.tv_nsec >= 1000000000) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000;
    }
    check_err(futex(&word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 3, &abs, NULL, ~0u), ETIMEDOUT,
              "WAIT_BITSET absolute CLOCK_REALTIME deadline");
    struct timespec later;
    clock_gettime(CLOCK_REALTIME, &later);
    check(later.tv_sec > abs.tv_sec || (later.tv_sec == abs.tv_sec && later.tv_nsec >= abs.tv_nsec),
          "woke after the realtime deadline");
    struct timespec past = {1, 0};
    check_err(futex(&word, FUTEX_WAIT_BITSET, 3, &past, NULL, ~0u), ETIMEDOUT, "a deadline in the past");
    check_err(futex(&word, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 3, &past, NULL, 0), ENOSYS,
              "CLOCK_REALTIME with plain WAIT");
}

static void on_usr1(int sig) { (void)sig; }

static void *signaller(void *arg)
{
    usleep(30000);
    pthread_kill(*(pthread_t *)arg, SIGUSR1);
    return NULL;
}

static void interrupts(void)
{
    set_handler(SIGUSR1, on_usr1, 0);
    pthread_t me = pthread_self(), t;
    atomic_store(&word, 1);
    struct timespec ts = {5, 0};
    pthread_create(&t, NULL, signaller, &me);
    check_err(futex(&word, FUTEX_WAIT, 1, &ts, NULL, 0), EINTR, "a handled signal ends a timed WAIT");
    pthread_join(t, NULL);
    pthread_create(&t, NULL, signaller, &me);
    check_err(futex(&word, FUTEX_WAIT, 1, NULL, NULL, 0), EINTR,
              "and an untimed WAIT (no SA_RESTART)");
    pthread_join(t, NULL);
}

static atomic_uint pi_word;
static long pi_total;

static void *pi_user(void *arg)
{
    unsigned tid = (unsigned)syscall(SYS_gettid);
    for (int i = 0; i < 300; i++) {
        unsigned zero = 0;
        if (!atomic_compare_exchange_strong(&pi_word, &zero, tid))
            futex(&pi_word, FUTEX_LOCK_PI, 0, NULL, NULL, 0);
        pi_total++;
        unsigned mine = tid;
        if (!atomic_compare_exchange_strong(&pi_word, &mine, 0))
            futex(&pi_word, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0);
    }
    return arg;
}

static void pi(void)
{
    atomic_store(&pi_word, 0);
    check(futex(&pi_word, FUTEX_TRYLOCK_PI, 0, NULL, NULL, 0) == 0, "TRYLOCK_PI of a free lock");
    check((atomic_load(&pi_word) & 0x3fffffff) == (unsigned)syscall(SYS_gettid), "the word holds our tid");
    check_err(futex(&pi_word, FUTEX_LOCK_PI, 0, NULL, NULL, 0), EDEADLK, "LOCK_PI of our own lock");
    check(futex(&pi_word, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0) == 0 && atomic_load(&pi_word) == 0, "UNLOCK_PI");
    check_err(futex(&pi_word, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0), EPERM, "UNLOCK_PI of a lock not ours");
    atomic_store(&pi_word, 0x40000000);                     /* owner died, nobody holds it */
    check(futex(&pi_word, FUTEX_LOCK_PI, 0, NULL, NULL, 0) == 0 &&
          (atomic_load(&pi_word) & 0x40000000), "LOCK_PI of an OWNER_DIED lock keeps the bit");
    atomic_store(&pi_word, 0);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, pi_user, NULL);
    join_all(t, 3);
    check(pi_total == 900 && atomic_load(&pi_word) == 0, "3 threads x 300 PI lock hand-offs");
}

static void shared_across_fork(void)
{
    uint32_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    volatile uint32_t *w = page + 10;
    *w = 0;
    pid_t c = fork();
    if (c == 0) {
        /* the child's view is a second mapping of the same page, at another address */
        uint32_t *again = mremap(page, 4096, 4096, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
        volatile uint32_t *cw = again != MAP_FAILED ? again + 10 : w;
        for (int i = 0; i < 50; i++) {
            while (*cw != (uint32_t)(2 * i + 1))
                futex((void *)cw, FUTEX_WAIT, *cw, NULL, NULL, 0) ;
            *cw = 2 * i + 2;
            futex((void *)cw, FUTEX_WAKE, 1, NULL, NULL, 0);
        }
        _exit(0);
    }
    for (int i = 0; i < 50; i++) {
        *w = 2 * i + 1;
        futex((void *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
        while (*w != (uint32_t)(2 * i + 2))
            futex((void *)w, FUTEX_WAIT, *w, NULL, NULL, 0);
    }
    int st;
    waitpid(c, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0 && *w == 100, "shared futex ping-pong with a child, 50 rounds");
}

static void *quick(void *arg) { return arg; }

static void thread_exit_wake(void)
{
    /* pthread_join sleeps on the thread's tid word, which the kernel clears and wakes */
    for (int i = 0; i < 50; i++) {
        pthread_t t;
        pthread_create(&t, NULL, quick, NULL);
        pthread_join(t, NULL);
    }
    check(1, "50 create/join: clear_child_tid wakes each join");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    wakes();
    timeouts();
    interrupts();
    pi();
    shared_across_fork();
    thread_exit_wake();
    return finish();
}
