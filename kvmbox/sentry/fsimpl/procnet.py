"""/proc/net: the sandbox's one interface (lo) and its own loopback sockets, in Linux's
formats (net/core/net-procfs.c dev_seq_show, net/ipv4/fib_trie.c fib_route_seq_show,
net/ipv4/tcp_ipv4.c and udp.c's seq files, net/ipv6/addrconf.c if6_seq_show).

The host's interfaces and sockets never show.  tcp/tcp6/udp/udp6 list the sockets of
the Sentry's loopback stack (net/inet.py): those in its bind table, plus the accepted
end of each connection; with `--network host` the program's sockets are host sockets
and are not listed (as in a container that shares the host network but not its /proc).
"""
from __future__ import annotations

import struct

from kvmbox.abi.socket import AF_INET, AF_INET6, SOCK_DGRAM, SOCK_STREAM
from kvmbox.sentry.net import inetaddr as A

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.fsimpl.procfs import ProcFilesystem
    from kvmbox.sentry.task import Task

_TCP_LISTEN, _UDP_CLOSE = 10, 7          # tcp_states.h: a bound UDP socket shows CLOSE (07)
_SEQ_WIDTH = 149                          # tcp4_seq_show pads each line to TMPSZ - 1


def dev(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    """/proc/net/dev: lo, with no traffic counted."""
    head = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|"
            "bytes    packets errs drop fifo colls carrier compressed\n")
    line = "%6s:%8d %7d %4d %4d %4d %5d %10d %9d %8d %7d %4d %4d %4d %5d %7d %10d\n" % (
        "lo", *([0] * 16))
    return (head + line).encode()


def route(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    """/proc/net/route: the header only, as in a network namespace with just lo (its
    routes live in the local table, which this file does not show)."""
    head = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"
    return (head.ljust(127) + "\n").encode()


def _hex_addr(ip: bytes, v6: bool) -> str:
    """An address as the seq files print it: the 32-bit words in host (little-endian)
    order, %08X each."""
    raw = ip if v6 else ip[12:]
    return "".join("%08X" % w for w in struct.unpack(f"<{len(raw) // 4}I", raw))


def _sockets(fs: "ProcFilesystem", stype: int, family: int) -> list:
    net = getattr(fs.kernel, "net", None)
    if net is None:
        return []
    seen: dict[int, object] = {}
    for entries in list(net.ports[stype].values()):
        for s in list(entries):
            if not hasattr(s, "ino"):
                continue                      # a TIME_WAIT entry holds no socket
            seen[id(s)] = s
            peer = getattr(s, "peer", None)
            if peer is not None and peer is not s:
                seen[id(peer)] = peer         # the accepted end of the connection
    return [s for s in seen.values() if s.family == family]


def _table(fs: "ProcFilesystem", stype: int, family: int) -> bytes:
    v6 = family == AF_INET6
    if v6:
        head = ("  sl  local_address                         remote_address                        "
                "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode")
    else:
        head = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
                "   uid  timeout inode")
    lines = [head if v6 else head.ljust(_SEQ_WIDTH)]
    for i, s in enumerate(_sockets(fs, stype, family)):
        remote = getattr(s, "remote", None) or ((A.ANY6 if v6 else A.ANY4), 0)
        if stype == SOCK_STREAM:
            state = s.tcp_state() if hasattr(s, "tcp_state") else _TCP_LISTEN
            rx = len(getattr(s, "rx", b""))
        else:
            state, rx = _UDP_CLOSE, getattr(s, "rmem", 0)
        line = "%4d: %s:%04X %s:%04X %02X %08X:%08X %02X:%08X %08X %5d %8d %d" % (
            i, _hex_addr(s.ip, v6), s.port, _hex_addr(remote[0], v6), remote[1], state,
            0, rx, 0, 0, 0, s.uid, 0, s.ino)
        # then refcount and the (hidden) kernel pointer; TCP adds rto, ato, quick/pingpong,
        # cwnd and ssthresh, UDP its drop count
        line += " 1 0000000000000000 100 0 0 10 0" if stype == SOCK_STREAM else \
            " 2 0000000000000000 0"
        lines.append(line if v6 else line.ljust(_SEQ_WIDTH))
    return ("\n".join(lines) + "\n").encode()


def tcp(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    return _table(fs, SOCK_STREAM, AF_INET)


def tcp6(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    return _table(fs, SOCK_STREAM, AF_INET6)


def udp(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    return _table(fs, SOCK_DGRAM, AF_INET)


def udp6(fs: "ProcFilesystem", t: "Task | None") -> bytes:
    return _table(fs, SOCK_DGRAM, AF_INET6)
