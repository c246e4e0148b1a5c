"""Linux socket constants and struct layouts (include/linux/socket.h, uapi/asm-generic/socket.h,
uapi/linux/un.h): families, types, MSG_* flags, SOL_SOCKET options, msghdr/cmsghdr/ucred."""
from __future__ import annotations

import struct

AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 0, 1, 2, 10, 16, 17
AF_MAX = 46                                  # NPROTO: families at or past it are EAFNOSUPPORT

SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET = 1, 2, 3, 4, 5
SOCK_MAX = 11
SOCK_TYPE_MASK = 0xF
SOCK_NONBLOCK = 0o4000
SOCK_CLOEXEC = 0o2000000

SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SHUTDOWN_MASK = 3
SOMAXCONN = 4096                             # net.core.somaxconn

MSG_OOB = 0x1
MSG_PEEK = 0x2
MSG_DONTROUTE = 0x4
MSG_CTRUNC = 0x8
MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40
MSG_EOR = 0x80
MSG_WAITALL = 0x100
MSG_CONFIRM = 0x800
MSG_ERRQUEUE = 0x2000
MSG_NOSIGNAL = 0x4000
MSG_MORE = 0x8000
MSG_WAITFORONE = 0x10000
MSG_CMSG_CLOEXEC = 0x40000000

SOL_SOCKET = 1
SO_DEBUG, SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_DONTROUTE, SO_BROADCAST = 1, 2, 3, 4, 5, 6
SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_OOBINLINE, SO_NO_CHECK, SO_PRIORITY = 7, 8, 9, 10, 11, 12
SO_LINGER, SO_BSDCOMPAT, SO_REUSEPORT, SO_PASSCRED, SO_PEERCRED = 13, 14, 15, 16, 17
SO_RCVLOWAT, SO_SNDLOWAT, SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD = 18, 19, 20, 21
SO_BINDTODEVICE, SO_TIMESTAMP, SO_ACCEPTCONN, SO_PEERSEC = 25, 29, 30, 31
SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_PASSSEC, SO_MARK = 32, 33, 34, 36
SO_PROTOCOL, SO_DOMAIN, SO_PEEK_OFF, SO_BUSY_POLL, SO_INCOMING_CPU = 38, 39, 42, 46, 49
SO_COOKIE, SO_ZEROCOPY, SO_RCVTIMEO_NEW, SO_SNDTIMEO_NEW = 57, 60, 66, 67

SCM_RIGHTS, SCM_CREDENTIALS = 1, 2
SCM_MAX_FD = 253                             # descriptors one SCM_RIGHTS message may carry

# Buffer sizes (net.core.{r,w}mem_{default,max}; SOCK_MIN_{RCV,SND}BUF on x86-64).
SOCK_BUF_DEFAULT = 212992
SOCK_BUF_MAX = 212992
SOCK_MIN_RCVBUF = 2304
SOCK_MIN_SNDBUF = 4608

# struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; }
SUN_PATH_OFFSET = 2
SUN_PATH_MAX = 108
SOCKADDR_STORAGE_SIZE = 128

# struct msghdr { void *name; int namelen; (pad) struct iovec *iov; size_t iovlen;
#                 void *control; size_t controllen; int flags; (pad) }
MSGHDR = struct.Struct("<Qi4xQQQQi4x")
MSG_NAMELEN_OFFSET = 8
MSG_CONTROLLEN_OFFSET = 40
MSG_FLAGS_OFFSET = 48
# struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; (pad) }
MMSGHDR_SIZE = 64
MMSG_LEN_OFFSET = 56
# struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } then data, 8-aligned
CMSGHDR = struct.Struct("<Qii")
# struct ucred { pid_t pid; uid_t uid; gid_t gid; }
UCRED = struct.Struct("<iII")
# struct linger { int l_onoff; int l_linger; }
LINGER = struct.Struct("<ii")


def cmsg_align(n: int) -> int:
    """CMSG_ALIGN: round up to the 8-byte alignment of cmsghdr."""
    return (n + 7) & ~7


def cmsg_space(n: int) -> int:
    """CMSG_SPACE(n)."""
    return CMSGHDR.size + cmsg_align(n)


def cmsg_len(n: int) -> int:
    """CMSG_LEN(n)."""
    return CMSGHDR.size + n

# --- IP (include/uapi/linux/in.h, in6.h, tcp.h, udp.h) ---------------------------------
IPPROTO_IP, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 0, 1, 6, 17
IPPROTO_IPV6, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_UDPLITE, IPPROTO_RAW = 41, 58, 132, 136, 255
SOL_IP, SOL_TCP, SOL_UDP, SOL_IPV6 = IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6
# IPPROTO_IP level
IP_TOS, IP_TTL, IP_HDRINCL, IP_OPTIONS = 1, 2, 3, 4
IP_RECVTTL, IP_RECVTOS, IP_MTU_DISCOVER, IP_RECVERR = 12, 13, 10, 11
IP_PKTINFO, IP_MTU, IP_FREEBIND, IP_BIND_ADDRESS_NO_PORT = 8, 14, 15, 24
IP_MULTICAST_IF, IP_MULTICAST_TTL, IP_MULTICAST_LOOP = 32, 33, 34
IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP = 35, 36
IP_PMTUDISC_WANT = 1                         # IP_MTU_DISCOVER's default on Linux
IP_DEFAULT_TTL = 64                          # net.ipv4.ip_default_ttl
INET_ECN_MASK = 3                            # low bits of IP_TOS a TCP socket keeps its own
# IPPROTO_IPV6 level
IPV6_UNICAST_HOPS, IPV6_MULTICAST_IF, IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP = 16, 17, 18, 19
IPV6_RECVERR, IPV6_V6ONLY, IPV6_RECVPKTINFO, IPV6_TCLASS = 25, 26, 49, 67
IPV6_PKTINFO = 50                            # the control message IPV6_RECVPKTINFO asks for
LOOPBACK_IFINDEX = 1                         # lo
IPV6_MTU_DISCOVER, IPV6_MTU = 23, 24
IPV6_PKTINFO, IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT, IPV6_RECVTCLASS = 50, 51, 52, 66
# IPPROTO_TCP level
TCP_NODELAY, TCP_MAXSEG, TCP_CORK, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 1, 2, 3, 4, 5, 6
TCP_SYNCNT, TCP_LINGER2, TCP_DEFER_ACCEPT, TCP_WINDOW_CLAMP, TCP_INFO = 7, 8, 9, 10, 11
TCP_QUICKACK, TCP_CONGESTION, TCP_USER_TIMEOUT, TCP_NOTSENT_LOWAT = 12, 13, 18, 25
TCP_MAXSEG_DEFAULT = 536                     # TCP_MSS_DEFAULT: an unconnected socket's MSS
TCP_KEEPIDLE_DEFAULT, TCP_KEEPINTVL_DEFAULT, TCP_KEEPCNT_DEFAULT = 7200, 75, 9
MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT = 32767, 32767, 127
# IPPROTO_UDP level
UDP_CORK, UDP_SEGMENT, UDP_GRO = 1, 103, 104
# ioctls on a socket
SIOCINQ, SIOCOUTQ = 0x541B, 0x5411           # FIONREAD and TIOCOUTQ
# Datagram limits: 65535 minus the IP (20) and UDP (8) headers; IPv6 has no IP header
# counted in its payload length, so 65535 - 8.
UDP_MAX_PAYLOAD4, UDP_MAX_PAYLOAD6 = 65507, 65527
# net.ipv4.ip_local_port_range
EPHEMERAL_LOW, EPHEMERAL_HIGH = 32768, 60999
