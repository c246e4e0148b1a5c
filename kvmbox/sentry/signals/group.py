"""Process-directed signals: queued once for the whole thread group, taken by one thread.

kill(2), a child's SIGCHLD, an itimer's SIGALRM and a POSIX timer without
SIGEV_THREAD_ID are sent to a process, not a thread.  As Linux's
complete_signal, the signal waits in the group's `shared_pending` and a thread
that does not block it is told (its wait ends, its guest code is interrupted):
the one running the sender, else the leader, else the first that will take it.
If every thread blocks it, it stays pending for the process until a thread
unblocks it or takes it with sigwaitinfo/sigtimedwait/signalfd; any thread's
dequeue looks at its own queue first and then the shared one
(kvmbox/sentry/signals/deliver.py).

SIGKILL ends every thread at once (Kernel.kill_task on each).
"""
from __future__ import annotations

from kvmbox.abi import signals as S

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.threadgroup import ThreadGroup


def wants(t: "Task", signo: int) -> bool:
    """Would thread `t` take `signo` now (Linux's wants_signal)?"""
    return not t.done and not t.killed and (signo == S.SIGKILL or not t.sigmask & S.sigbit(signo))


def choose(g: "ThreadGroup", signo: int, sender: "Task | None" = None) -> "Task | None":
    """The thread to tell about a process-directed `signo` (None: every thread blocks it)."""
    if sender is not None and sender.tg is g and wants(sender, signo):
        return sender
    for t in g.tasks:                         # the leader first
        if wants(t, signo):
            return t
    return None


def send(g: "ThreadGroup", signo: int, *, code: int = 0, addr: int = 0, info=None,
         sender: "Task | None" = None) -> str:
    """Queue `signo` for process `g` from any host thread and tell a thread that takes it;
    what deliver.enqueue says (QUEUED, or not queued: ALREADY_PENDING, IGNORED)."""
    from kvmbox.sentry.signals.deliver import IGNORED, QUEUED, enqueue_shared
    live = g.live_threads()
    if not live:
        return IGNORED
    done = enqueue_shared(g, live[0], signo, code, addr, info)
    if done is not QUEUED:
        return done
    target = choose(g, signo, sender)
    for t in live:
        if t is target:
            if t is not sender:
                t.signalled()
        else:
            t.waker.set()                     # a sigtimedwait of a thread that blocks it
    return done
