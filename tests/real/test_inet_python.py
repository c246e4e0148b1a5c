"""The host's python3, curl, wget, perl, node and java over AF_INET and AF_INET6
loopback, natively and in the sandbox: an asyncio echo server with concurrent clients,
http.server.ThreadingHTTPServer queried by urllib, UDP (sendto/recvfrom, connected,
ECONNREFUSED), a multiprocessing.connection Listener on 127.0.0.1, socketserver's
threading and forking TCP servers and a UDP one, the corners (dual-stack listener,
non-blocking connect, refusal, bulk transfer, sendfile, reset, options, EADDRINUSE),
asyncio streams under load (ten concurrent 300 KB echoes with backpressure),
half-close and POLLRDHUP, SO_REUSEPORT listeners, more corners (127.0.0.2,
IPV6_V6ONLY, FIONREAD, MSG_WAITALL, TCP_INFO, SO_LINGER {1,0}, timeouts, UDP
peek/EMSGSIZE/SO_RCVBUF drops), UDP control messages (IP_PKTINFO, IP_RECVTTL,
IP_RECVTOS, IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT, IPV6_RECVTCLASS), lo through if_nameindex, SIOCGIF* and
node's os.networkInterfaces() (NETLINK_ROUTE), FIONREAD and SIOCOUTQ on TCP, UDP and Unix sockets,
connects waiting on a full backlog, a TCP socket passed to another process over
SCM_RIGHTS, curl / wget / perl against http.server, node's http server with fetch and
its cluster module, and java's HttpServer, HttpClient, Socket and NetworkInterface.  In the sandbox all
of this runs on the Sentry's own loopback; natively on the host's 127.0.0.1 / ::1
only.  stdout and exit status must match byte for byte.  (multiprocessing.Pipe() and
Manager() are AF_UNIX: tests/real/test_unix_python.py.)"""
from __future__ import annotations

import shutil
import socket

import pytest

from helpers import TEST_ENV, assert_same_outcome, run_native, run_sandbox

ASYNCIO_ECHO = r"""
import asyncio, sys
async def handle(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()
async def client(host, port, i):
    r, w = await asyncio.open_connection(host, port)
    got = []
    for j in range(5):
        w.write(b"client %d line %d\n" % (i, j))
        await w.drain()
        got.append(await r.readline())
    w.write_eof()
    rest = await r.read()
    w.close()
    await w.wait_closed()
    return i, got[0], got[-1], len(b"".join(got)), rest
async def main():
    for host in sys.argv[1:]:
        srv = await asyncio.start_server(handle, host, 0)
        port = srv.sockets[0].getsockname()[1]
        res = await asyncio.gather(*(client(host, port, i) for i in range(8)))
        for r in res:
            print(host, *r)
        srv.close()
        await srv.wait_closed()
asyncio.run(main())
"""

HTTP_SERVER = r"""
import threading, urllib.request, json
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "n": len(self.path)}).encode()
        self.send_response(200 if self.path != "/missing" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[::-1])
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
t.start()
base = "http://127.0.0.1:%d" % srv.server_address[1]
for path in ("/", "/a/b?c=d", "/x" * 300):
    with urllib.request.urlopen(base + path, timeout=20) as r:
        print(r.status, r.read())
try:
    urllib.request.urlopen(base + "/missing", timeout=20)
except urllib.error.HTTPError as e:
    print("HTTPError", e.code, e.read())
req = urllib.request.Request(base + "/post", data=b"abc" * 10000, method="POST")
with urllib.request.urlopen(req, timeout=20) as r:
    body = r.read()
    print(r.status, len(body), body[:9])
results = []
def get(i):
    with urllib.request.urlopen(base + "/t%d" % i, timeout=20) as r:
        results.append((i, r.status, r.read()))
ts = [threading.Thread(target=get, args=(i,)) for i in range(6)]
for x in ts: x.start()
for x in ts: x.join()
print(sorted(results))
srv.shutdown()
srv.server_close()
"""

UDP = r"""
import socket, errno, sys
for host in sys.argv[1:]:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    a = socket.socket(fam, socket.SOCK_DGRAM); a.bind((host, 0))
    b = socket.socket(fam, socket.SOCK_DGRAM); b.bind((host, 0))
    pa, pb = a.getsockname()[1], b.getsockname()[1]
    for i in range(3):
        a.sendto(b"dgram %d" % i, b.getsockname())
    out = []
    for i in range(3):
        data, src = b.recvfrom(100)
        out.append((data, src[0], src[1] == pa))
    print(host, out)
    b.sendto(b"x" * 60000, a.getsockname())
    print(len(a.recv(65536)))
    b.sendto(b"truncated", a.getsockname())
    print(a.recv(4))
    c = socket.socket(fam, socket.SOCK_DGRAM)
    c.connect(b.getsockname())
    c.send(b"connected")
    d, src = b.recvfrom(100)
    print(d, src == c.getsockname(), c.getpeername() == b.getsockname())
    b.sendto(b"back", c.getsockname())
    print(c.recv(100))
    a.sendto(b"filtered", c.getsockname())   # c is connected to b: dropped
    b.sendto(b"passes", c.getsockname())
    print(c.recv(100))
    a.close()
    c2 = socket.socket(fam, socket.SOCK_DGRAM); c2.connect((host, pa))
    c2.send(b"nobody")
    try:
        c2.recv(10)
    except OSError as e:
        print("closed port", errno.errorcode[e.errno])
    for s in (b, c, c2): s.close()
"""

MP_LISTENER = r"""
import multiprocessing as mp
from multiprocessing.connection import Listener, Client
def child(addr, key):
    with Client(addr, authkey=key) as c:
        c.send(["hello", 1, 2.5])
        print("child got", c.recv(), flush=True)
if __name__ == "__main__":
    mp.set_start_method("fork")
    with Listener(("127.0.0.1", 0), authkey=b"secret") as l:
        p = mp.Process(target=child, args=(l.address, b"secret"))
        p.start()
        with l.accept() as conn:
            msg = conn.recv()
            print("parent got", msg, flush=True)
            conn.send(sorted(map(str, msg)))
        p.join()
        print(p.exitcode)
"""

SOCKETSERVER = r"""
import socketserver, socket, threading
class H(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"%d:%s" % (len(line), line))
for srvcls, fam, host in ((socketserver.ThreadingTCPServer, socket.AF_INET, "127.0.0.1"),
                          (socketserver.ForkingTCPServer, socket.AF_INET, "127.0.0.1")):
    srv = srvcls((host, 0), H)
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True); t.start()
    out = []
    for i in range(4):
        with socket.create_connection(srv.server_address, timeout=20) as c:
            f = c.makefile("rwb")
            f.write(b"hello %d\n" % i); f.write(b"x" * 5000 + b"\n"); f.flush()
            c.shutdown(socket.SHUT_WR)
            out.append(f.read())
    print(srvcls.__name__, [o[:12] for o in out], sum(map(len, out)))
    srv.shutdown(); srv.server_close()
class U(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data[::-1], self.client_address)
srv = socketserver.ThreadingUDPServer(("127.0.0.1", 0), U)
t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True); t.start()
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(20)
for w in (b"abc", b"hello"):
    c.sendto(w, srv.server_address); print(c.recvfrom(100)[0])
srv.shutdown(); srv.server_close()
"""

CORNERS = r"""
import socket, select, errno, os, threading, tempfile
# dual-stack listener: v4 clients appear as v4-mapped addresses
srv = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
port = srv.getsockname()[1]
for host in ("127.0.0.1", "::1", "localhost"):
    c = socket.create_connection((host, port), timeout=10)
    n, peer = srv.accept()
    print(host, peer[0], n.getsockname()[0], c.getpeername()[1] == port, peer[1] == c.getsockname()[1])
    n.close(); c.close()
srv.close()
# non-blocking connect, select, SO_ERROR
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.socket(); c.setblocking(False)
try:
    c.connect(l.getsockname()); print("connected at once")
except BlockingIOError:
    print("EINPROGRESS")
_, w, _ = select.select([], [c], [], 5)
print("writable", bool(w), c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
n, _ = l.accept()
# refused non-blocking connect
free = socket.socket(); free.bind(("127.0.0.1", 0)); fport = free.getsockname()[1]; free.close()
d = socket.socket(); d.setblocking(False)
try:
    d.connect(("127.0.0.1", fport)); print("connected?")
except OSError as e:
    print("connect", errno.errorcode[e.errno])
    select.select([], [d], [], 5)
    print("SO_ERROR", errno.errorcode.get(d.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
try:
    socket.create_connection(("127.0.0.1", fport), timeout=5)
except OSError as e:
    print("blocking connect", errno.errorcode[e.errno])
# a big transfer both ways with flow control, and sendfile
c.setblocking(True)
blob = os.urandom(3 << 20)
t = threading.Thread(target=lambda: (c.sendall(blob), c.shutdown(socket.SHUT_WR)))
t.start()
got = bytearray()
while True:
    chunk = n.recv(1 << 16)
    if not chunk: break
    got += chunk
t.join()
print("bulk", len(got), got == blob)
with tempfile.TemporaryFile() as f:
    f.write(blob[:200000]); f.flush(); f.seek(0)
    t = threading.Thread(target=lambda: (n.sendfile(f), n.shutdown(socket.SHUT_WR)))
    t.start()
    back = bytearray()
    while True:
        chunk = c.recv(1 << 16)
        if not chunk: break
        back += chunk
    t.join()
    print("sendfile", len(back), back == blob[:200000])
# reset on close with unread data
n.close(); c.close()
c = socket.create_connection(l.getsockname()); n, _ = l.accept()
c.sendall(b"unread"); n.close()
try:
    c.sendall(b"more"); print(c.recv(10))
except OSError as e:
    print("after peer close", errno.errorcode[e.errno])
c.close()
# options
c = socket.create_connection(l.getsockname()); n, _ = l.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
print("nodelay", c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
      "keepalive", c.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
      "type", c.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))
c.send(b"peek"); print(n.recv(4, socket.MSG_PEEK), n.recv(4))
# EADDRINUSE and SO_REUSEADDR
b = socket.socket()
try:
    b.bind(l.getsockname())
except OSError as e:
    print("bind", errno.errorcode[e.errno])
c.close(); n.close(); l.close()
r = socket.socket(); r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
r.bind(("127.0.0.1", port)); r.listen(); print("rebound", r.getsockname()[1] == port)
print(socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4])
"""

STREAMS_UNDER_LOAD = r"""
import asyncio, hashlib, sys, socket, select, errno
async def handle(r, w):
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = await r.read(50000)
        if not chunk: break
        h.update(chunk); n += len(chunk)
        w.write(chunk[::-1])
        await w.drain()
    w.write(b"|" + h.hexdigest().encode()[:16])
    await w.drain()
    w.close()
async def client(port, i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    data = bytes([i]) * (300000 + i * 1000)
    async def send():
        for k in range(0, len(data), 70000):
            w.write(data[k:k+70000]); await w.drain()
        w.write_eof()
    t = asyncio.ensure_future(send())
    got = await r.read()
    await t
    w.close()
    return i, len(got), got[-16:]
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    for res in await asyncio.gather(*(client(port, i) for i in range(10))):
        print(*res)
    srv.close(); await srv.wait_closed()
asyncio.run(main())
# half close, SHUT_RD, POLLRDHUP via poll, SO_REUSEPORT listeners
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); n, _ = l.accept()
c.shutdown(socket.SHUT_WR)
p = select.poll(); p.register(n, select.POLLIN | select.POLLRDHUP)
print("poll", p.poll(1000))
print("eof", n.recv(10)); n.sendall(b"still works"); print(c.recv(100))
n.close()
p = select.poll(); p.register(c, select.POLLIN | select.POLLOUT | select.POLLRDHUP); print(p.poll(1000))
c.close(); l.close()
ls = []
for i in range(2):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", ls[0].getsockname()[1] if ls else 0)); s.listen(); ls.append(s)
cs = [socket.create_connection(ls[0].getsockname()) for _ in range(20)]
counts = []
for s in ls:
    s.setblocking(False); k = 0
    while True:
        try: s.accept()[0].close(); k += 1
        except BlockingIOError: break
    counts.append(k)
print("reuseport total", sum(counts), all(counts))
"""

HOST_TOOLS = r"""
import threading, subprocess, os, tempfile, socket, shutil
from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler
d = tempfile.mkdtemp()
with open(os.path.join(d, "f.txt"), "w") as f:
    f.write("hello from a file\n" * 3)
with open(os.path.join(d, "big.bin"), "wb") as f:
    f.write(bytes(range(256)) * 8192)
class H(SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=d, **kw)
    def log_message(self, *a):
        pass
for host in ("127.0.0.1", "::1")[:int(os.environ.get("NHOSTS", "2"))]:
    class S(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = S((host, 0), H)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    url = "http://%s:%d" % ("[%s]" % host if ":" in host else host, srv.server_address[1])
    for argv in (["curl", "-sS", "-g", url + "/f.txt"],
                 ["curl", "-sS", "-g", "-o", "/dev/null", "-w", "%{http_code} %{size_download}\n", url + "/big.bin"],
                 ["curl", "-sS", "-g", "-o", "/dev/null", "-w", "%{http_code}\n", url + "/nope"],
                 ["curl", "-sS", "-g", "-d", "x=1", "-o", "/dev/null", "-w", "%{http_code}\n", url + "/f.txt"],
                 ["wget", "-q", "-O", "-", url + "/f.txt"]):
        p = subprocess.run(argv, capture_output=True)
        print(host, argv[0], p.returncode, p.stdout[:60])
    p = subprocess.run(["perl", "-MIO::Socket::IP", "-e",
        'my $s = IO::Socket::IP->new(PeerHost => $ARGV[0], PeerPort => $ARGV[1]) or die "$@";'
        'print $s "GET /f.txt HTTP/1.0\r\n\r\n"; my @l = <$s>; print $l[0], $l[-1];', host, str(srv.server_address[1])],
        capture_output=True)
    print(host, "perl", p.returncode, p.stdout, p.stderr[:200])
    srv.shutdown(); srv.server_close()
shutil.rmtree(d)
"""

MORE_CORNERS = r"""
import socket, errno, struct, fcntl, termios, select, threading, time, os
def E(f):
    try:
        r = f(); return r
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
l = socket.socket(); l.bind(("127.0.0.2", 0)); l.listen(); port = l.getsockname()[1]
print("127.0.0.2", E(lambda: socket.create_connection(("127.0.0.2", port)).getsockname()[0]),
      E(lambda: socket.create_connection(("127.0.0.1", port))))
l.close()
l6 = socket.socket(socket.AF_INET6); l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
l6.bind(("::", 0)); l6.listen(); port = l6.getsockname()[1]
print("v6only", E(lambda: socket.create_connection(("127.0.0.1", port))),
      E(lambda: socket.create_connection(("::1", port)).getpeername()[0]))
s = socket.socket(socket.AF_INET6)
print("mapped", E(lambda: s.connect(("::ffff:127.0.0.1", port))))
s6 = socket.socket(socket.AF_INET6); s6.bind(("::1", 0))
print("v6 bound to ::1 -> v4", E(lambda: s6.connect(("::ffff:127.0.0.1", 9))))
l6.close()
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); n, _ = l.accept()
c.sendall(b"abcdefgh")
time.sleep(0.05)
print("FIONREAD", struct.unpack("i", fcntl.ioctl(n, termios.FIONREAD, b"\0" * 4))[0])
print("waitall", n.recv(8, socket.MSG_WAITALL))
c.sendmsg([b"one ", b"two ", b"three"])
buf = bytearray(20); k = n.recv_into(buf); print("recv_into", k, bytes(buf[:k]))
info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104); print("tcp_info state", info[0], len(info))
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
print("after linger-0 close", E(lambda: n.recv(10)), E(lambda: n.recv(10)))
n.close()
# peer closes with data before accept
c = socket.create_connection(l.getsockname()); c.sendall(b"early"); c.close()
n, _ = l.accept(); print("before accept", n.recv(10), n.recv(10)); n.close()
# timeouts
c = socket.create_connection(l.getsockname()); n, _ = l.accept()
n.settimeout(0.2); t = time.monotonic(); print("timeout", E(lambda: n.recv(1)), 0.15 < time.monotonic() - t < 2)
n.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200000)); n.setblocking(True)
n.settimeout(None); n.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200000))
print("rcvtimeo", E(lambda: n.recv(1)))
# accept blocked in a thread while another thread shuts the listener down
def later():
    time.sleep(0.2); l.shutdown(socket.SHUT_RDWR)
threading.Thread(target=later).start()
print("accept after shutdown", E(lambda: l.accept()))
l.close(); c.close(); n.close()
# UDP corners
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
v.sendto(b"peekme", u.getsockname())
print("udp peek", u.recvfrom(100, socket.MSG_PEEK)[0], u.recvfrom(3)[0], E(lambda: u.recv(1, socket.MSG_DONTWAIT)))
print("udp empty", v.sendto(b"", u.getsockname()), u.recvfrom(10)[0])
print("udp too big", E(lambda: v.sendto(b"x" * 65508, u.getsockname())), E(lambda: v.sendto(b"x" * 65507, u.getsockname())))
u.recv(70000)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
sent = 0
for i in range(100):
    v.sendto(b"y" * 1000, u.getsockname())
got = 0
u.setblocking(False)
while True:
    try: u.recv(2000); got += 1
    except BlockingIOError: break
print("udp rcvbuf drops", 0 < got < 100)
print("udp getpeername", E(lambda: u.getpeername()))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("udp any", E(lambda: b.sendto(b"x", ("0.0.0.0", u.getsockname()[1]))), E(lambda: u.recv(10)))
"""

SOCKET_IOCTLS = r"""
import socket, fcntl, termios, struct, errno, time
def q(s, req):
    try:
        return struct.unpack("i", fcntl.ioctl(s, req, b"\0" * 4))[0]
    except OSError as e:
        return errno.errorcode[e.errno]
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
print("listener", q(l, termios.FIONREAD), q(l, termios.TIOCOUTQ))
c = socket.create_connection(l.getsockname()); n, _ = l.accept()
c.sendall(b"x" * 1000); time.sleep(0.05)
print("small", q(c, termios.TIOCOUTQ), q(n, termios.FIONREAD))
c.setblocking(False); k = 0
try:
    while True: k += c.send(b"y" * 65536)
except BlockingIOError:
    pass
print("full", q(c, termios.TIOCOUTQ) > 0, q(n, termios.FIONREAD) > 0)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("udp", q(u, termios.TIOCOUTQ), q(u, termios.FIONREAD))
a, b = socket.socketpair()
print("unix empty", q(a, termios.TIOCOUTQ))
a.send(b"z" * 100)
print("unix queued", q(a, termios.TIOCOUTQ) >= 100)
b.recv(100)
print("unix read", q(a, termios.TIOCOUTQ))
"""

BACKLOG_AND_PASSING = r"""
import socket, threading, os, errno, time, array
# a full backlog: blocking connects wait until accept makes room
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(0)
res = []
def cli(i):
    c = socket.create_connection(l.getsockname(), timeout=20)
    c.sendall(b"%d" % i); res.append(c.recv(10)); c.close()
ts = [threading.Thread(target=cli, args=(i,)) for i in range(6)]
for t in ts: t.start()
time.sleep(0.3)
for _ in range(6):
    n, _ = l.accept(); n.sendall(b"ok" + n.recv(10)); n.close()
for t in ts: t.join()
print(sorted(res))
# non-blocking connect to a full backlog
c1 = socket.create_connection(l.getsockname())
c2 = socket.socket(); c2.setblocking(False)
try:
    c2.connect(l.getsockname()); print("c2 connected")
except OSError as e:
    print("c2", errno.errorcode[e.errno])
l.close()
time.sleep(0.1)
try:
    print("c1 recv", c1.recv(10))
except OSError as e:
    print("c1", errno.errorcode[e.errno])
c1.close(); c2.close()
# pass a TCP connection to another process over AF_UNIX
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    msg, fds, _, _ = socket.recv_fds(b, 10, 1)
    s = socket.socket(fileno=fds[0])
    s.sendall(b"from the child over a passed socket"); s.close()
    os._exit(0)
c = socket.create_connection(l.getsockname()); n, _ = l.accept()
socket.send_fds(a, [b"x"], [n.fileno()]); n.close()
os.waitpid(pid, 0)
print(c.recv(100), c.recv(100))
"""

NODE_CLUSTER = r"""
const cluster = require('cluster');
const http = require('http');
if (cluster.isPrimary) {
  let port = 0, ready = 0;
  const workers = [cluster.fork(), cluster.fork()];
  cluster.on('listening', async (w, addr) => {
    port = addr.port;
    if (++ready < 2) return;
    const seen = new Set();
    for (let i = 0; i < 8; i++) {
      const r = await fetch(`http://127.0.0.1:${port}/${i}`, {headers: {connection: 'close'}});
      const t = await r.text();
      seen.add(t.split(' ')[0]);
      console.log(r.status, t.split(' ')[1]);
    }
    console.log('workers answering', seen.size >= 1);
    for (const w of workers) w.kill();
  });
  // all workers share one port: the primary picks it, passes the handle
  process.env.PORT = '0';
} else {
  http.createServer((req, res) => res.end(`${cluster.worker.id} ${req.url}`)).listen(0, '127.0.0.1');
}
"""

UDP_PKTINFO = r"""
import socket
def show(u, v, dst):
    v.sendto(b"pkt", dst)
    data, anc, flags, addr = u.recvmsg(100, 256)
    print(data, [(l, t, d.hex()) for l, t, d in anc], flags)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 0))
for o in (8, 12, 13): u.setsockopt(socket.IPPROTO_IP, o, 1)
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 7); v.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x28)
show(u, v, ("127.0.0.5", u.getsockname()[1]))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.bind(("::", 0))
for o in (49, 51, 66): u6.setsockopt(socket.IPPROTO_IPV6, o, 1)
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); v6.setsockopt(socket.IPPROTO_IPV6, 16, 9); v6.setsockopt(socket.IPPROTO_IPV6, 67, 0x30)
show(u6, v6, ("::1", u6.getsockname()[1]))
show(u6, v, ("127.0.0.1", u6.getsockname()[1]))
u6.setsockopt(socket.IPPROTO_IP, 8, 1); u6.setsockopt(socket.IPPROTO_IP, 12, 1)
show(u6, v, ("127.0.0.1", u6.getsockname()[1]))
show(u6, v6, ("::1", u6.getsockname()[1]))
print(u6.getsockopt(socket.IPPROTO_IPV6, 51), u6.getsockopt(socket.IPPROTO_IPV6, 66))
"""

INTERFACES = r"""
import socket, fcntl, struct
print(socket.if_nametoindex("lo"), socket.if_indextoname(1), [x for x in socket.if_nameindex() if x[1] == "lo"])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ifr = fcntl.ioctl(s, 0x8913, b"lo".ljust(40, b"\0"))       # SIOCGIFFLAGS
print(hex(struct.unpack_from("<H", ifr, 16)[0]), struct.unpack_from("<i", fcntl.ioctl(s, 0x8921, b"lo".ljust(40, b"\0")), 16)[0])
"""

NODE_INTERFACES = r"""
console.log(JSON.stringify(require("os").networkInterfaces().lo));
"""

JAVA_NET = r"""
import com.sun.net.httpserver.*;
import java.net.*;
import java.net.http.*;
import java.io.*;
public class Net {
  public static void main(String[] a) throws Exception {
    HttpServer s = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    s.createContext("/", ex -> { byte[] b = ("hi " + ex.getRequestURI()).getBytes();
      ex.sendResponseHeaders(200, b.length); ex.getResponseBody().write(b); ex.close(); });
    s.start();
    int port = s.getAddress().getPort();
    HttpClient c = HttpClient.newHttpClient();
    for (String p : new String[]{"/a", "/b?c"}) {
      HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + p)).build(),
                                      HttpResponse.BodyHandlers.ofString());
      System.out.println(r.statusCode() + " " + r.body());
    }
    try (Socket sock = new Socket("127.0.0.1", port)) {
      sock.getOutputStream().write("GET /raw HTTP/1.0\r\n\r\n".getBytes());
      BufferedReader br = new BufferedReader(new InputStreamReader(sock.getInputStream()));
      System.out.println(br.readLine());
    }
    s.stop(0);
    NetworkInterface lo = NetworkInterface.getByName("lo");
    System.out.println(lo.getName() + " " + lo.getIndex() + " " + lo.isLoopback() + " " + lo.isUp() + " " + lo.getMTU());
    java.util.List<String> addrs = new java.util.ArrayList<>();
    for (InterfaceAddress ia : lo.getInterfaceAddresses())
      addrs.add(ia.getAddress().getHostAddress() + "/" + ia.getNetworkPrefixLength());
    java.util.Collections.sort(addrs);
    System.out.println(addrs);
    System.exit(0);
  }
}
"""

NODE_HTTP = r"""
const http = require('http');
const srv = http.createServer((req, res) => {
  let body = '';
  req.on('data', d => body += d);
  req.on('end', () => {
    res.writeHead(req.url === '/missing' ? 404 : 200, {'content-type': 'text/plain'});
    res.end(`${req.method} ${req.url} ${body.length}`);
  });
});
srv.listen(0, '127.0.0.1', async () => {
  const base = `http://127.0.0.1:${srv.address().port}`;
  for (const p of ['/', '/a?b=c', '/missing']) {
    const r = await fetch(base + p);
    console.log(r.status, await r.text());
  }
  const r = await fetch(base + '/post', {method: 'POST', body: 'z'.repeat(100000)});
  console.log(r.status, await r.text());
  const all = await Promise.all([1,2,3,4,5].map(i => fetch(base + '/c' + i).then(r => r.text())));
  console.log(all.join(','));
  srv.close(() => console.log('closed'));
});
"""


def _loopback6() -> bool:
    """Whether this host has ::1 (the native run needs it for the IPv6 cases)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HOSTS = ["127.0.0.1", "::1"] if _loopback6() else ["127.0.0.1"]

# name: (script, extra argv); the scripts that take addresses get HOSTS.
SCRIPTS = {
    "asyncio-echo": (ASYNCIO_ECHO, HOSTS),
    "http-server-urllib": (HTTP_SERVER, []),
    "udp": (UDP, HOSTS),
    "multiprocessing-listener": (MP_LISTENER, []),
    "socketserver": (SOCKETSERVER, []),
    "corners": (CORNERS, []),
    "streams-under-load": (STREAMS_UNDER_LOAD, []),
    "more-corners": (MORE_CORNERS, []),
    "socket-ioctls": (SOCKET_IOCTLS, []),
    "backlog-and-passing": (BACKLOG_AND_PASSING, []),
    "udp-pktinfo": (UDP_PKTINFO, []),
    "interfaces": (INTERFACES, []),
}


def _which(prog: str) -> str | None:
    return shutil.which(prog, path=TEST_ENV["PATH"])


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_python_inet_same_as_native(name: str, sandbox):
    py = _which("python3")
    assert py, "python3 is not installed on this host"
    script, args = SCRIPTS[name]
    if name in ("corners", "more-corners", "udp-pktinfo") and len(HOSTS) < 2:
        pytest.skip("this host has no ::1 for the dual-stack listener")
    native = run_native(py, ["-c", script, *args], timeout=60, cwd="/")
    assert native.exit_code == 0, f"native run failed: {native.describe()}\n{native.stderr.decode()}"
    boxed = run_sandbox(py, ["-c", script, *args], timeout=120, sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what=f"python3 -c <{name}>")


def test_curl_wget_perl_against_python_http_server_same_as_native(sandbox):
    """curl, wget and perl's IO::Socket::IP fetch from http.server on 127.0.0.1 and ::1."""
    missing = [p for p in ("python3", "curl", "wget", "perl") if _which(p) is None]
    if missing:
        pytest.skip(f"not installed on this host: {' '.join(missing)}")
    env = dict(TEST_ENV, NHOSTS=str(len(HOSTS)))
    py = _which("python3")
    native = run_native(py, ["-c", HOST_TOOLS], env=env, timeout=60, cwd="/")
    assert native.exit_code == 0, f"native run failed: {native.describe()}\n{native.stderr.decode()}"
    boxed = run_sandbox(py, ["-c", HOST_TOOLS], env=env, timeout=120, sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what="python3 -c <http.server + curl, wget, perl>")


@pytest.mark.parametrize("script", [NODE_HTTP, NODE_CLUSTER, NODE_INTERFACES],
                         ids=["http-fetch", "cluster", "interfaces"])
def test_node_http_same_as_native(script: str, sandbox):
    """node's http server with fetch; and cluster, whose primary owns the listening socket
    and hands it to two workers over its IPC channel (SCM_RIGHTS of a TCP socket)."""
    if _which("node") is None:
        pytest.skip("node is not installed on this host")
    # cluster forks workers that run the script again: it must be a file
    argv = ["-c", 'f=$(mktemp); cat > "$f"; node "$f"; s=$?; rm "$f"; exit $s']
    native = run_native("/bin/sh", argv, stdin=script.encode(), timeout=60, cwd="/")
    assert native.exit_code == 0, f"native run failed: {native.describe()}\n{native.stderr.decode()}"
    boxed = run_sandbox("/bin/sh", argv, stdin=script.encode(), timeout=120, sandbox=sandbox,
                        cwd="/")
    assert_same_outcome(native, boxed, what="node <script>")


def test_java_http_server_and_client_same_as_native(sandbox):
    """com.sun.net.httpserver, java.net.http.HttpClient, a plain java.net.Socket, and
    NetworkInterface "lo" (SIOCGIFCONF, SIOCGIFNETMASK ..., /proc/net/if_inet6)."""
    if _which("java") is None:
        pytest.skip("java is not installed on this host")
    argv = ["-c", 'd=$(mktemp -d); cat > "$d/Net.java"; java "$d/Net.java"; s=$?; rm -r "$d"; exit $s']
    native = run_native("/bin/sh", argv, stdin=JAVA_NET.encode(), timeout=60, cwd="/")
    assert native.exit_code == 0, f"native run failed: {native.describe()}\n{native.stderr.decode()}"
    boxed = run_sandbox("/bin/sh", argv, stdin=JAVA_NET.encode(), timeout=120, sandbox=sandbox,
                        cwd="/")
    assert_same_outcome(native, boxed, what="java Net.java")
