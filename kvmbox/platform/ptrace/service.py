"""StubService: the one host thread that makes stub processes and their threads.

Linux takes ptrace requests for a thread only from its tracer, and a new stub
thread can only be cloned by injecting clone() into a thread of the stub.  So
each stub's thread 0 belongs to this service thread, which never runs guest
code and is therefore always free to inject: it forks stubs, replays the
mappings made before a stub existed, clones a stub thread for each host thread
that asks (StubProcess.clone_thread), and injects for host threads that have
no stub thread of their own in an address space.  Stubs die with this thread
(their PR_SET_PDEATHSIG), so it lives as long as the platform.

`call(fn)` runs fn on the service thread and returns its result or raises its
exception in the caller; it may be called with the Sentry lock held (the
service thread never takes it).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class StubService:
    def __init__(self) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def on_service_thread(self) -> bool:
        th = self._thread
        return th is not None and th.ident == threading.get_ident()

    def call(self, fn: Callable[[], object]):
        """Run fn() on the service thread; its result (or its exception, raised here)."""
        if self.on_service_thread():
            return fn()
        self._ensure_started()
        box: list = []
        done = threading.Event()
        self._requests.put((fn, box, done))
        done.wait()
        ok, value = box[0]
        if ok:
            return value
        raise value

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                th = threading.Thread(target=self._serve, name="kvmbox-ptrace-stubs", daemon=True)
                th.start()
                self._thread = th

    def _serve(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            fn, box, done = item
            try:
                box.append((True, fn()))
            except BaseException as e:   # noqa: BLE001 - handed to the caller
                box.append((False, e))
            done.set()

    def close(self) -> None:
        """End the service thread (after every stub is gone)."""
        with self._start_lock:
            th, self._thread = self._thread, None
        if th is not None:
            self._requests.put(None)
            th.join(5)
