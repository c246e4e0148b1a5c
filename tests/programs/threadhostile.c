/*
 * Hostile thread arguments the Sentry must survive as Linux does: a robust list that
 * loops forever or points into the kernel's half, clear_child_tid in the kernel's half or
 * unmapped, futexes on kernel and unmapped addresses, clone flags Linux rejects, and a
 * thread started on a stack that is not mapped (it dies of SIGSEGV, taking the process).
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdint.h>
#include <sys/wait.h>
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_LOCK_PI 6

struct robust_head { void *next; long offset; void *pending; };
static struct robust_head loop_head;
static void *entry[2];

static void *bad_robust(void *arg)
{
    long which = (long)arg;
    if (which == 0) {               /* a cycle that never comes back to the head */
        entry[0] = &entry[1];
        entry[1] = &entry[0];
        loop_head.next = &entry[0];
        loop_head.offset = 0;
        loop_head.pending = NULL;
        syscall(SYS_set_robust_list, &loop_head, sizeof loop_head);
    } else if (which == 1) {
        static struct robust_head kernel_head = {(void *)0xffffffff81000000UL, 0, (void *)-8L};
        syscall(SYS_set_robust_list, &kernel_head, sizeof kernel_head);
    } else if (which == 2) {
        syscall(SYS_set_tid_address, (void *)0xffff800000000000UL);
    } else {
        syscall(SYS_set_tid_address, (void *)0x10);
    }
    syscall(SYS_exit, 0);           /* straight out: no libc clean-up reads these back */
    return NULL;
}

static int run_child(void (*fn)(void))
{
    pid_t c = fork();
    if (c == 0) {
        fn();
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    return WIFSIGNALED(st) ? 1000 + WTERMSIG(st) : WEXITSTATUS(st);
}

static char bad_stack_child_stack[16];

static int bad_stack_fn(void *arg)
{
    return 0;
}

static void bad_stack(void)
{
    /* a thread whose stack pointer is unmapped: its first push faults */
    clone(bad_stack_fn, (void *)0x1000,
          CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, NULL);
    sleep(5);
    (void)bad_stack_child_stack;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    for (long i = 0; i < 4; i++) {
        pthread_t t;
        pthread_create(&t, NULL, bad_robust, (void *)i);
        usleep(20000);
        printf("thread with hostile list/tid %ld exited; process alive\n", i);
    }
    uint32_t *kernel = (uint32_t *)0xffffffff81000000UL;
    check_err(syscall(SYS_futex, kernel, FUTEX_WAIT, 0, NULL, NULL, 0), EFAULT, "futex WAIT on a kernel address");
    check_err(syscall(SYS_futex, kernel, FUTEX_WAKE, 1, NULL, NULL, 0), EFAULT, "futex WAKE on a kernel address");
    check_err(syscall(SYS_futex, (void *)0x1000, FUTEX_LOCK_PI, 0, NULL, NULL, 0), EFAULT, "LOCK_PI unmapped");
    static uint32_t w;
    check_err(syscall(SYS_futex, &w, FUTEX_REQUEUE, 1, (void *)-1L, &w, 0), EINVAL, "REQUEUE count -1");
    check_err(syscall(SYS_clone, CLONE_THREAD, 0, NULL, NULL, 0), EINVAL, "CLONE_THREAD without CLONE_SIGHAND");
    check_err(syscall(SYS_clone, CLONE_SIGHAND, 0, NULL, NULL, 0), EINVAL, "CLONE_SIGHAND without CLONE_VM");
    check_err(syscall(SYS_clone, CLONE_THREAD | CLONE_SIGHAND | CLONE_VM | CLONE_NEWPID, 0, NULL, NULL, 0),
              EINVAL, "CLONE_THREAD with CLONE_NEWPID");
    printf("thread on an unmapped stack: child ended with %d\n", run_child(bad_stack));
    return finish();
}
