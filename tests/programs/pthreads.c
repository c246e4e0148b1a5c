/*
 * POSIX threads as programs use them: mutexes (normal, recursive, error-checking,
 * priority-inheriting, robust), condition variables, barriers, rwlocks, semaphores
 * (unnamed, and process-shared across fork), TLS and key destructors, pthread_kill,
 * process-directed signals, sigwait in a thread, cancellation with cleanup handlers,
 * timed waits, detached threads, per-thread signal masks and alternate stacks, exit()
 * and fork and execve from a thread, join values, and the per-thread scheduling and
 * naming calls.  Output is deterministic: counts and relations, never ids or times.
 *
 * With argument "execd PID", it is the image a thread exec'd: it reports whether it
 * kept the process's pid and is its only thread.
 */
#include "common.h"
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <dirent.h>
#include <sched.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#ifndef SYS_membarrier
#define SYS_membarrier 324
#endif

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static struct timespec in_ms(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    return ts;
}

/* --- mutexes --------------------------------------------------------------------------- */
static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static void *add_many(void *arg)
{
    for (int i = 0; i < 20000; i++) {
        pthread_mutex_lock(&counter_lock);
        counter++;
        pthread_mutex_unlock(&counter_lock);
    }
    return arg;
}

static void *unlock_other(void *arg)
{
    return (void *)(long)pthread_mutex_unlock((pthread_mutex_t *)arg);
}

static void mutexes(void)
{
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, add_many, (void *)i);
    long sum = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (long)r;
    }
    check(counter == 80000 && sum == 6, "4 threads x 20000 locked increments, join values");

    pthread_mutexattr_t a;
    pthread_mutex_t m;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m, &a);
    check(pthread_mutex_lock(&m) == 0 && pthread_mutex_lock(&m) == 0 &&
          pthread_mutex_unlock(&m) == 0 && pthread_mutex_unlock(&m) == 0, "recursive mutex twice");
    pthread_mutex_destroy(&m);

    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&m, &a);
    pthread_mutex_lock(&m);
    check_ret_err(pthread_mutex_lock(&m), EDEADLK, "error-checking mutex relocked");
    pthread_t u;
    void *r;
    pthread_create(&u, NULL, unlock_other, &m);
    pthread_join(u, &r);
    check_ret_err((int)(long)r, EPERM, "error-checking mutex unlocked by another thread");
    check_ret_err(pthread_mutex_trylock(&m), EBUSY, "trylock of a held mutex");
    pthread_mutex_unlock(&m);
}

/* timed lock from another thread while this one holds it */
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

static void *timedlock(void *arg)
{
    struct timespec ts = in_ms(30);
    return (void *)(long)pthread_mutex_timedlock(&held, &ts);
}

static void timed_waits(void)
{
    pthread_mutex_lock(&held);
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, timedlock, NULL);
    pthread_join(t, &r);
    check_ret_err((int)(long)r, ETIMEDOUT, "pthread_mutex_timedlock on a held mutex");
    pthread_mutex_unlock(&held);

    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    struct timespec ts = in_ms(30);
    pthread_mutex_lock(&m);
    check_ret_err(pthread_cond_timedwait(&c, &m, &ts), ETIMEDOUT, "pthread_cond_timedwait, nobody signals");
    pthread_mutex_unlock(&m);

    sem_t s;
    sem_init(&s, 0, 0);
    ts = in_ms(30);
    check_err(sem_timedwait(&s, &ts), ETIMEDOUT, "sem_timedwait on an empty semaphore");
    check_err(sem_trywait(&s), EAGAIN, "sem_trywait on an empty semaphore");
    sem_destroy(&s);
}

/* --- priority-inheriting and robust mutexes --------------------------------------------- */
static pthread_mutex_t pi_lock;
static long pi_count;

static void *pi_worker(void *arg)
{
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(&pi_lock);
        pi_count++;
        pthread_mutex_unlock(&pi_lock);
    }
    return arg;
}

static pthread_mutex_t robust;

static void *die_holding(void *arg)
{
    pthread_mutex_lock(&robust);
    return arg;                    /* exits holding it: the kernel marks it OWNER_DIED */
}

static void special_mutexes(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&pi_lock, &a);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, pi_worker, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    check(pi_count == 9000, "PTHREAD_PRIO_INHERIT mutex: 3 x 3000 increments");

    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &a);
    pthread_create(&t[0], NULL, die_holding, NULL);
    pthread_join(t[0], NULL);
    int r = pthread_mutex_lock(&robust);
    check(r == EOWNERDEAD, "robust mutex whose owner thread exited: EOWNERDEAD");
    check(pthread_mutex_consistent(&robust) == 0 && pthread_mutex_unlock(&robust) == 0 &&
          pthread_mutex_lock(&robust) == 0, "made consistent, it locks again");
    pthread_mutex_unlock(&robust);
}

/* --- condition variables, barriers, rwlocks, semaphores ----------------------------------- */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static int q_items, q_done, q_taken;

static void *consumer(void *arg)
{
    long mine = 0;
    pthread_mutex_lock(&q_lock);
    for (;;) {
        while (!q_items && !q_done)
            pthread_cond_wait(&q_cond, &q_lock);
        if (!q_items && q_done)
            break;
        q_items--;
        q_taken++;
        mine++;
    }
    pthread_mutex_unlock(&q_lock);
    return (void *)mine;
}

static pthread_barrier_t barrier;
static atomic_int serial_count, phase_seen[3];

static void *barrier_worker(void *arg)
{
    for (int round = 0; round < 3; round++) {
        atomic_fetch_add(&phase_seen[round], 1);
        if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD)
            atomic_fetch_add(&serial_count, 1);
    }
    return arg;
}

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static atomic_int readers_in, max_readers;

static void *reader(void *arg)
{
    pthread_barrier_t *b = arg;
    pthread_rwlock_rdlock(&rw);
    int n = atomic_fetch_add(&readers_in, 1) + 1;
    if (n > atomic_load(&max_readers))
        atomic_store(&max_readers, n);
    pthread_barrier_wait(b);               /* all three hold the read lock at once */
    atomic_fetch_sub(&readers_in, 1);
    pthread_rwlock_unlock(&rw);
    return NULL;
}

static sem_t ping_sem, pong_sem;

static void *ponger(void *arg)
{
    for (int i = 0; i < 500; i++) {
        sem_wait(&ping_sem);
        sem_post(&pong_sem);
    }
    return arg;
}

static void sync_objects(void)
{
    pthread_t t[4];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, consumer, NULL);
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&q_lock);
        q_items++;
        pthread_cond_signal(&q_cond);
        pthread_mutex_unlock(&q_lock);
    }
    pthread_mutex_lock(&q_lock);
    q_done = 1;
    pthread_cond_broadcast(&q_cond);
    pthread_mutex_unlock(&q_lock);
    long total = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    check(total == 300 && q_taken == 300, "condition variable queue: 300 items to 3 consumers");

    pthread_barrier_init(&barrier, NULL, 4);
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, barrier_worker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    check(serial_count == 3 && phase_seen[0] == 4 && phase_seen[2] == 4,
          "barrier: 3 rounds of 4, one serial thread each");
    pthread_barrier_destroy(&barrier);

    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, 4);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, reader, &b);
    while (atomic_load(&readers_in) < 3)
        sched_yield();
    check_ret_err(pthread_rwlock_trywrlock(&rw), EBUSY, "rwlock: trywrlock while 3 readers hold it");
    pthread_barrier_wait(&b);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    check(max_readers == 3 && pthread_rwlock_trywrlock(&rw) == 0, "rwlock: 3 readers at once, then a writer");
    pthread_rwlock_unlock(&rw);
    pthread_barrier_destroy(&b);

    sem_init(&ping_sem, 0, 0);
    sem_init(&pong_sem, 0, 0);
    pthread_create(&t[0], NULL, ponger, NULL);
    for (int i = 0; i < 500; i++) {
        sem_post(&ping_sem);
        sem_wait(&pong_sem);
    }
    pthread_join(t[0], NULL);
    int v = -1;
    sem_getvalue(&pong_sem, &v);
    check(v == 0, "semaphore ping-pong, 500 rounds");
}

/* --- TLS and keys ------------------------------------------------------------------------- */
static __thread long tls_value = 7;
static pthread_key_t key;
static atomic_int destructors;

static void destructor(void *p)
{
    if (p)
        atomic_fetch_add(&destructors, 1);
}

static void *tls_worker(void *arg)
{
    tls_value += (long)arg;
    pthread_setspecific(key, (void *)1);
    return (void *)tls_value;
}

static void tls(void)
{
    pthread_key_create(&key, destructor);
    pthread_t t[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, tls_worker, (void *)(i * 10));
    long sum = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (long)r;
    }
    check(sum == 7 * 3 + 30 && tls_value == 7, "__thread: each thread its own copy");
    check(destructors == 3, "pthread_key destructors ran for 3 threads");
}

/* --- signals -------------------------------------------------------------------------------- */
static pthread_t target_thread;
static atomic_int hit_right, hit_wrong, stop_spinning;

static void usr1(int sig)
{
    if (pthread_equal(pthread_self(), target_thread))
        atomic_fetch_add(&hit_right, 1);
    else
        atomic_fetch_add(&hit_wrong, 1);
}

static void *spinner(void *arg)
{
    while (!atomic_load(&stop_spinning))
        ;
    return arg;
}

static void *waiter(void *arg)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    int sig = 0;
    sigwait(&s, &sig);
    siginfo_t info;
    struct timespec ts = {5, 0};
    int again = sigtimedwait(&s, &info, &ts);
    return (void *)(long)(sig == SIGUSR2 && again == SIGUSR2 && info.si_pid == getpid());
}

static void *altstack_thread(void *arg)
{
    stack_t ss;
    sigaltstack(NULL, &ss);
    int disabled = (ss.ss_flags & SS_DISABLE) != 0;
    static char stack[65536];
    ss.ss_sp = stack;
    ss.ss_size = sizeof stack;
    ss.ss_flags = 0;
    sigaltstack(&ss, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    return (void *)(long)disabled;
}

static void signals(void)
{
    set_handler(SIGUSR1, usr1, 0);
    pthread_create(&target_thread, NULL, spinner, NULL);
    pthread_kill(target_thread, SIGUSR1);
    while (!atomic_load(&hit_right) && !atomic_load(&hit_wrong))
        sched_yield();
    check(hit_right == 1 && hit_wrong == 0, "pthread_kill reaches the named thread (spinning in user code)");

    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);      /* only target_thread takes SIGUSR1 now */
    kill(getpid(), SIGUSR1);
    while (atomic_load(&hit_right) + atomic_load(&hit_wrong) < 2)
        sched_yield();
    check(hit_right == 2 && hit_wrong == 0, "kill(getpid()) goes to the thread that does not block it");
    atomic_store(&stop_spinning, 1);
    pthread_join(target_thread, NULL);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);

    /* all threads block SIGUSR2; a thread takes it with sigwait, then sigtimedwait */
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    pthread_t w;
    void *r;
    pthread_create(&w, NULL, waiter, NULL);
    usleep(20000);
    kill(getpid(), SIGUSR2);
    usleep(20000);
    kill(getpid(), SIGUSR2);
    pthread_join(w, &r);
    check((long)r == 1, "sigwait and sigtimedwait in a thread get process-directed SIGUSR2");

    pthread_t a;
    pthread_create(&a, NULL, altstack_thread, NULL);
    pthread_join(a, &r);
    stack_t ss;
    sigaltstack(NULL, &ss);
    sigset_t cur;
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    check((long)r == 1 && (ss.ss_flags & SS_DISABLE) && !sigismember(&cur, SIGWINCH),
          "a new thread has no alternate stack; its stack and mask are its own");
}

/* --- cancellation and detached threads ------------------------------------------------------ */
static atomic_int cleanups;

static void cleanup(void *arg)
{
    atomic_fetch_add(&cleanups, 1);
}

static void unlock_mutex(void *m)
{
    pthread_mutex_unlock(m);
}

static void *cancel_in_cond(void *arg)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    pthread_cleanup_push(cleanup, NULL);
    pthread_cleanup_push(unlock_mutex, &m);
    for (;;)
        pthread_cond_wait(&c, &m);
    pthread_cleanup_pop(1);
    pthread_cleanup_pop(1);
    return NULL;
}

static void *cancel_in_read(void *arg)
{
    int *fds = arg;
    char b;
    pthread_cleanup_push(cleanup, NULL);
    read(fds[0], &b, 1);
    pthread_cleanup_pop(0);
    return NULL;
}

static sem_t detached_done;

static void *detached(void *arg)
{
    sem_post(&detached_done);
    return NULL;
}

static void cancellation(void)
{
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, cancel_in_cond, NULL);
    usleep(20000);
    pthread_cancel(t);
    pthread_join(t, &r);
    check(r == PTHREAD_CANCELED && cleanups == 1, "cancelled in pthread_cond_wait, cleanup ran");

    int fds[2];
    pipe(fds);
    pthread_create(&t, NULL, cancel_in_read, fds);
    usleep(20000);
    pthread_cancel(t);
    pthread_join(t, &r);
    check(r == PTHREAD_CANCELED && cleanups == 2, "cancelled in a blocking read, cleanup ran");
    close(fds[0]);
    close(fds[1]);

    sem_init(&detached_done, 0, 0);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < 5; i++)
        pthread_create(&t, &a, detached, NULL);
    for (int i = 0; i < 5; i++)
        sem_wait(&detached_done);
    check(1, "5 detached threads ran");
}

/* --- processes and threads ------------------------------------------------------------------- */
static void *exit_from_thread(void *arg)
{
    usleep(5000);
    exit(37);
}

static void *fork_from_thread(void *arg)
{
    pid_t c = fork();
    if (c == 0)
        _exit(count_tasks() == 1 ? 5 : 6);
    int st;
    waitpid(c, &st, 0);
    return (void *)(long)(WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static char self_path[256];

static void *exec_from_thread(void *arg)
{
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    char *argv[] = {self_path, "execd", pid, NULL};
    execv(self_path, argv);
    _exit(99);
}

static void processes(void)
{
    int st;
    pid_t c = fork();
    if (c == 0) {
        pthread_t t;
        pthread_create(&t, NULL, exit_from_thread, NULL);
        for (;;)
            pause();
    }
    waitpid(c, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 37, "exit(37) from a thread ends the process with 37");

    pthread_t t;
    void *r;
    pthread_create(&t, NULL, fork_from_thread, NULL);
    pthread_join(t, &r);
    check((long)r == 5, "fork from a thread: the child has one thread");

    c = fork();
    if (c == 0) {
        pthread_create(&t, NULL, exec_from_thread, NULL);
        for (;;)
            pause();
    }
    waitpid(c, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "execve from a thread: same pid, one thread");

    c = fork();
    if (c == 0) {
        atomic_store(&stop_spinning, 0);
        pthread_create(&t, NULL, spinner, NULL);
        pthread_exit(NULL);         /* main leaves; the process goes on until the last thread */
    }
    usleep(30000);
    check(waitpid(c, &st, WNOHANG) == 0, "main thread pthread_exit: the process still runs");
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "SIGKILL ends it and every thread");

    sem_t *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    sem_init(s, 1, 0);
    c = fork();
    if (c == 0) {
        usleep(20000);
        sem_post(s);
        _exit(0);
    }
    sem_wait(s);
    waitpid(c, &st, 0);
    check(1, "process-shared semaphore posted by a child wakes the parent");

    pthread_mutex_t *m = (pthread_mutex_t *)((char *)s + 256);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    c = fork();
    if (c == 0) {
        pthread_mutex_lock(m);
        _exit(0);
    }
    waitpid(c, &st, 0);
    check(pthread_mutex_lock(m) == EOWNERDEAD, "shared robust mutex of a dead process: EOWNERDEAD");
}

/* --- scheduling and names ------------------------------------------------------------------- */
static void *name_and_affinity(void *arg)
{
    prctl(PR_SET_NAME, "worker-one");
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    int first = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set)) {
            first = i;
            break;
        }
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    int ok = sched_setaffinity(0, sizeof set, &set) == 0;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    ok = ok && CPU_COUNT(&set) == 1 && CPU_ISSET(first, &set);
    unsigned cpu = 99;
    syscall(SYS_getcpu, &cpu, NULL, NULL);
    ok = ok && cpu == (unsigned)first;
    atomic_store(&stop_spinning, 2);
    while (atomic_load(&stop_spinning) != 3)
        usleep(1000);
    return (void *)(long)ok;
}

static void scheduling(void)
{
    cpu_set_t before, after;
    CPU_ZERO(&before);
    sched_getaffinity(0, sizeof before, &before);
    atomic_store(&stop_spinning, 0);
    pthread_t t;
    pthread_create(&t, NULL, name_and_affinity, NULL);
    while (atomic_load(&stop_spinning) != 2)
        usleep(1000);
    char name[16] = "";
    pthread_getname_np(t, name, sizeof name);
    check(strcmp(name, "worker-one") == 0, "PR_SET_NAME in a thread, read by another");
    check(pthread_setname_np(t, "renamed") == 0, "pthread_setname_np of another thread");
    pthread_getname_np(t, name, sizeof name);
    check(strcmp(name, "renamed") == 0, "and read back");
    prctl(PR_GET_NAME, name);
    check(strcmp(name, "renamed") != 0, "the main thread keeps its own name");
    check(count_tasks() == 2, "/proc/self/task lists 2 threads");
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int threads = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8))
            threads = atoi(line + 8);
    if (f)
        fclose(f);
    check(threads == 2, "/proc/self/status Threads: 2");
    atomic_store(&stop_spinning, 3);
    void *r;
    pthread_join(t, &r);
    check((long)r == 1, "a thread narrows its own affinity; getcpu stays inside it");
    CPU_ZERO(&after);
    sched_getaffinity(0, sizeof after, &after);
    check(CPU_EQUAL(&before, &after), "the main thread's affinity is unchanged");
    check(sched_yield() == 0, "sched_yield");

    long q = syscall(SYS_membarrier, 0, 0, 0);
    check(q > 0 && (q & 8), "membarrier QUERY offers PRIVATE_EXPEDITED");
    check_err(syscall(SYS_membarrier, 8, 0, 0), EPERM, "PRIVATE_EXPEDITED before registering");
    check(syscall(SYS_membarrier, 16, 0, 0) == 0 && syscall(SYS_membarrier, 8, 0, 0) == 0,
          "registered, PRIVATE_EXPEDITED works");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 3 && !strcmp(argv[1], "execd")) {
        int same = atoi(argv[2]) == getpid() && syscall(SYS_gettid) == getpid();
        return same && count_tasks() == 1 ? 0 : 1;
    }
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    self_path[n > 0 ? n : 0] = 0;
    mutexes();
    timed_waits();
    special_mutexes();
    sync_objects();
    tls();
    signals();
    cancellation();
    processes();
    scheduling();
    return finish();
}
