"""The host's python3 using epoll (selectors, select.epoll), natively and in the sandbox.

python3's selectors.DefaultSelector is an EpollSelector wherever epoll_create1
works, and `import socket`/`asyncio` probe it at import.  Each script runs
both ways on each platform; stdout and exit status must match byte for byte.
"""
from __future__ import annotations

import shutil

import pytest

from helpers import TEST_ENV, assert_same_outcome, run_native, run_sandbox

DEFAULT_SELECTOR = "import selectors; print(type(selectors.DefaultSelector()).__name__)"

SELECTORS_PIPE = """
import os, selectors
sel = selectors.DefaultSelector()
r, w = os.pipe()
sel.register(r, selectors.EVENT_READ, "reader")
sel.register(w, selectors.EVENT_WRITE, "writer")
print(sorted((k.data, m) for k, m in sel.select(0)))
os.write(w, b"hello")
print(sorted((k.data, m) for k, m in sel.select(1)))
sel.modify(w, selectors.EVENT_READ, "writer reading")
print(sorted((k.data, m) for k, m in sel.select(0)))
sel.unregister(w)
print(os.read(r, 5), [(k.data, m) for k, m in sel.select(0.05)])
os.close(w)
print([(k.data, m) for k, m in sel.select(1)])
sel.close()
"""

# select.epoll directly: edge-triggered, one-shot, errors, nesting, poll() of an epoll fd,
# eventfds, a closed but dup'd descriptor, a timeout, the /proc/self/fd link.
EPOLL_DIRECT = """
import os, select, time
E = select
ep = select.epoll()
r, w = os.pipe()
os.set_blocking(r, False)
ep.register(r, E.EPOLLIN | E.EPOLLET)
ep.register(w, E.EPOLLOUT)
print("initial", sorted(ep.poll(0)) == sorted([(w, E.EPOLLOUT)]))
ep.modify(w, E.EPOLLOUT | E.EPOLLONESHOT)
os.write(w, b"abc")
print("after write", [(fd == r, ev) for fd, ev in ep.poll(0)])
print("edge consumed, oneshot off", ep.poll(0))
print(os.read(r, 1), ep.poll(0))
os.write(w, b"d")
print("new write", [(fd == r, ev) for fd, ev in ep.poll(0)])
ep.unregister(w)
for what, call in (("unregister twice", lambda: ep.unregister(w)),
                   ("register twice", lambda: ep.register(r, E.EPOLLIN))):
    try:
        call()
    except OSError as e:
        print(what, e.errno)
outer = select.epoll()
outer.register(ep.fileno(), E.EPOLLIN)
print("outer, inner edge consumed", outer.poll(0))
os.write(w, b"e")
print("outer sees inner", [(fd == ep.fileno(), ev) for fd, ev in outer.poll(0)])
p = select.poll()
p.register(ep.fileno(), select.POLLIN)
print("poll() on the epoll fd", [(fd == ep.fileno(), ev) for fd, ev in p.poll(0)])
print("inner", [(fd == r, ev) for fd, ev in ep.poll(0)])
e = os.eventfd(0, os.EFD_NONBLOCK)
ep.register(e, E.EPOLLIN)
os.eventfd_write(e, 7)
print("eventfd", [(fd == e, ev) for fd, ev in ep.poll(0)])
d = os.dup(e)
os.close(e)
print("closed, dup'd", [(fd == e, ev) for fd, ev in ep.poll(0)])
os.close(d)
print("last closed", ep.poll(0))
t0 = time.monotonic()
print("timeout", ep.poll(0.1), time.monotonic() - t0 >= 0.09)
print("readlink", os.readlink(f"/proc/self/fd/{ep.fileno()}"))
ep.close()
outer.close()
"""

ASYNCIO = """
import asyncio, os
async def main():
    await asyncio.sleep(0.01)
    r, w = os.pipe()
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_reader(r, lambda: got.set_result(os.read(r, 100)))
    os.write(w, b"through the loop")
    data = await asyncio.wait_for(got, 5)
    loop.remove_reader(r)
    return data
print(asyncio.run(main()))
"""

SCRIPTS = {
    "default-selector": DEFAULT_SELECTOR,
    "selectors-pipe": SELECTORS_PIPE,
    "epoll-direct": EPOLL_DIRECT,
    "asyncio-self-pipe": ASYNCIO,      # the loop's self-pipe is a socketpair
}


def _python() -> str:
    path = shutil.which("python3", path=TEST_ENV["PATH"])
    assert path, "python3 is not installed on this host"
    return path


@pytest.mark.parametrize("script", list(SCRIPTS.values()), ids=list(SCRIPTS))
def test_python_epoll_same_as_native(script: str, sandbox):
    py = _python()
    native = run_native(py, ["-c", script], timeout=60, cwd="/")
    assert native.exit_code == 0, f"native run failed: {native.describe()}\n{native.stderr.decode()}"
    boxed = run_sandbox(py, ["-c", script], timeout=120, sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what="python3 -c <epoll script>")


def test_import_socket_raises_no_epoll_notice(sandbox):
    """`import socket, selectors` probes epoll_create1: no 'unsupported syscall' notice now."""
    r = sandbox.run([_python(), "-c", DEFAULT_SELECTOR], env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 0, r.stderr.decode(errors="replace")
    assert r.stdout == b"EpollSelector\n"
    assert not [n for n in r.notices if "epoll" in n], r.notices
