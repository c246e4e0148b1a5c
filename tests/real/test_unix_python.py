"""The host's python3 over AF_UNIX, natively and in the sandbox: socket.send_fds/recv_fds,
stream sockets on a path and an abstract name, datagrams, multiprocessing.Pipe() and
Manager() (an AF_UNIX listener in a forked server), asyncio subprocess transports and
asyncio.to_thread (the loop's self-pipe is a socketpair).  stdout and exit status must match byte for byte."""
from __future__ import annotations

import shutil

import pytest

from helpers import TEST_ENV, assert_same_outcome, run_native, run_sandbox

SEND_FDS = r"""
import os, socket
a, b = socket.socketpair()
r, w = os.pipe()
socket.send_fds(a, [b"two fds"], [r, w])
msg, fds, flags, addr = socket.recv_fds(b, 100, 4)
print(msg, len(fds), flags, addr)
os.write(fds[1], b"through the passed write end")
print(os.read(r, 100))
print(os.get_inheritable(fds[0]), os.fstat(fds[0]).st_ino == os.fstat(r).st_ino)
socket.send_fds(a, [b"short"], [r, w])
msg, fds, flags, addr = socket.recv_fds(b, 100, 1)
print(msg, len(fds), flags & socket.MSG_CTRUNC != 0)
"""

STREAMS = r"""
import os, socket, tempfile
d = tempfile.mkdtemp()
for name in (os.path.join(d, "sock"), "\0kvmbox-py-%d" % os.getpid()):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(name); srv.listen()
    pid = os.fork()
    if pid == 0:
        c = socket.socket(socket.AF_UNIX); c.connect(name)
        c.sendall(b"ping " * 20000)
        c.shutdown(socket.SHUT_WR)
        print("child got", len(c.makefile("rb").read()), flush=True)
        os._exit(0)
    conn, peer = srv.accept()
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.sendall(data.upper())
    conn.close()
    os.waitpid(pid, 0)
    print(name[0] == "\0", len(data), peer, srv.getsockname() == name)
    srv.close()
os.unlink(os.path.join(d, "sock")); os.rmdir(d)
r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); r.bind("\0kvmbox-dg-%d" % os.getpid())
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(3):
    s.sendto(b"dgram %d" % i, "\0kvmbox-dg-%d" % os.getpid())
print([r.recv(100) for _ in range(3)])
"""

MP_PIPE = r"""
import multiprocessing as mp
def child(conn):
    conn.send({"from": "child", "n": conn.recv() + 1})
    conn.close()
if __name__ == "__main__":
    mp.set_start_method("fork")
    a, b = mp.Pipe()
    p = mp.Process(target=child, args=(b,))
    p.start()
    a.send(41)
    print(a.recv())
    p.join()
    print(p.exitcode)
"""

MP_MANAGER = r"""
import multiprocessing as mp
def work(d, l):
    d["child"] = 1
    l.append("x")
if __name__ == "__main__":
    mp.set_start_method("fork")
    with mp.Manager() as m:
        d = m.dict(); l = m.list()
        p = mp.Process(target=work, args=(d, l))
        p.start(); p.join()
        print(dict(d), list(l), p.exitcode)
"""

ASYNCIO_SUBPROCESS = r"""
import asyncio
async def main():
    p = await asyncio.create_subprocess_exec("/bin/echo", "hello from a child",
                                             stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    print(out, p.returncode)
    p = await asyncio.create_subprocess_shell("cat; exit 3", stdin=asyncio.subprocess.PIPE,
                                              stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate(b"fed through stdin")
    print(out, p.returncode)
asyncio.run(main())
"""

ASYNCIO_TO_THREAD = r"""
import asyncio, threading
def blocking(n):
    return sum(range(n)), threading.current_thread() is not threading.main_thread()
async def main():
    print(await asyncio.gather(*(asyncio.to_thread(blocking, n) for n in (10, 1000))))
asyncio.run(main())
"""

SCRIPTS = {
    "send-recv-fds": SEND_FDS,
    "streams-and-dgrams": STREAMS,
    "multiprocessing-pipe": MP_PIPE,
    "multiprocessing-manager": MP_MANAGER,
    "asyncio-subprocess": ASYNCIO_SUBPROCESS,
    "asyncio-to-thread": ASYNCIO_TO_THREAD,
}


def _python() -> str:
    path = shutil.which("python3", path=TEST_ENV["PATH"])
    assert path, "python3 is not installed on this host"
    return path


@pytest.mark.parametrize("script", list(SCRIPTS.values()), ids=list(SCRIPTS))
def test_python_unix_sockets_same_as_native(script: str, sandbox):
    py = _python()
    native = run_native(py, ["-c", script], timeout=60, cwd="/")
    assert native.exit_code == 0, f"native run failed: {native.describe()}\n{native.stderr.decode()}"
    boxed = run_sandbox(py, ["-c", script], timeout=120, sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what="python3 -c <AF_UNIX script>")
