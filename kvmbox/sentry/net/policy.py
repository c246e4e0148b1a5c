"""Network policy of a sandbox: mode (none / host), connect allow-list, published ports.

Built once at start-up from Sandbox(network=, allow_net=, publish=) or the CLI's
--network / --allow-net / --publish, validated there (a bad value is a one-line
KvmboxError, exit status 125), and kept by the Kernel. Frozen: no mutable state.

Decisions (documented in docs/network.md, "Policy"):
- allow_net given without network implies network="host" (an allow-list only
  means something for host networking); allow_net or publish with an explicit
  network="none" is an error.
- An empty allow-list in host mode allows every destination; a non-empty one
  allows only matching (address, port) pairs, names being resolved once here.
- Binding a fixed port needs it published; port 0 (ephemeral) is always allowed.
"""
from __future__ import annotations

from kvmbox.errors import KvmboxError
from kvmbox.record import field, record

# ipaddress and socket are imported where an --allow-net rule needs them: every Sandbox
# makes a NetPolicy, and the two (with typing) cost about 3 ms of a cold start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Iterable
    _Net = ipaddress.IPv4Network | ipaddress.IPv6Network

MODES = ("none", "host")
ANY_PORT = -1                    # --publish '*': every port may be bound and listened on


@record(frozen=True)
class AllowRule:
    """One --allow-net entry: a network (a host is a /32 or /128) and a port, None = any."""

    net: _Net
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        import ipaddress
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None \
                and self.net.version == 4:
            addr = addr.ipv4_mapped
        return addr.version == self.net.version and addr in self.net \
            and (self.port is None or self.port == port)


@record(frozen=True)
class NetPolicy:
    """What networking the sandbox gets. `none` is the default: no host sockets at all."""

    mode: str = "none"
    allow: tuple[AllowRule, ...] = ()
    publish: frozenset[int] = field(default_factory=frozenset)

    @property
    def host(self) -> bool:
        return self.mode == "host"

    def may_connect(self, host: str, port: int) -> bool:
        """Whether connect/sendto to (host, port) is allowed (host mode only)."""
        if not self.host:
            return False
        return not self.allow or any(r.matches(host, port) for r in self.allow)

    def may_bind(self, port: int) -> bool:
        """Whether a host socket may bind `port`: 0 (ephemeral) or a published port."""
        return self.host and (port == 0 or port in self.publish or ANY_PORT in self.publish)

    def may_listen(self, port: int, named: int) -> bool:
        """Whether a host socket bound to `port` (bind(2) named `named`, 0 if none) may
        listen: on a published port, or anywhere with --publish '*'."""
        return self.host and (ANY_PORT in self.publish or (named != 0 and port in self.publish))


def _port(text: str, what: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise KvmboxError(f"kvmbox: {what}: bad port {text!r} (1-65535 or *)")
    return int(text)


def _resolve(name: str, what: str) -> list[_Net]:
    import ipaddress
    import socket
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as e:
        raise KvmboxError(f"kvmbox: {what}: cannot resolve {name!r}: {e}") from None
    nets = {ipaddress.ip_network(info[4][0].split("%", 1)[0]) for info in infos}
    return sorted(nets, key=str)


def parse_allow(entry: str) -> list[AllowRule]:
    """Parse HOST[:PORT]: IPv4, [IPv6]:PORT, bare IPv6, CIDR, or a name resolved now."""
    import ipaddress
    what = f"--allow-net {entry!r}"
    if not isinstance(entry, str) or not entry or entry != entry.strip():
        raise KvmboxError(f"kvmbox: {what}: wants HOST[:PORT]")
    port: int | None = None
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise KvmboxError(f"kvmbox: {what}: wants [IPv6]:PORT")
        if rest:
            port = _port(rest[1:], what)
    elif entry.count(":") == 1:
        host, _, p = entry.partition(":")
        port = _port(p, what)
    else:
        host = entry        # no port, or a bare IPv6 literal / CIDR
    try:
        nets: list[_Net] = [ipaddress.ip_network(host, strict=False)]
    except ValueError:
        if ":" in host or "/" in host or not host:
            raise KvmboxError(f"kvmbox: {what}: not an address, CIDR or name") from None
        nets = _resolve(host, what)
    return [AllowRule(n, port) for n in nets]


def make_policy(network: str | None = None, allow_net: Iterable[str] = (),
                publish: Iterable[int] = ()) -> NetPolicy:
    """Validate the user's options into a NetPolicy (KvmboxError on any bad value)."""
    allow_list = [allow_net] if isinstance(allow_net, str) else list(allow_net)
    ports = list(publish)
    if network is None:
        network = "host" if (allow_list or ports) else "none"
    if network not in MODES:
        raise KvmboxError(f"kvmbox: --network {network!r}: wants one of {', '.join(MODES)}")
    if network == "none" and (allow_list or ports):
        raise KvmboxError("kvmbox: --allow-net/--publish need --network host")
    rules: list[AllowRule] = []
    for entry in allow_list:
        rules.extend(parse_allow(entry))
    published: set[int] = set()
    for p in ports:
        if isinstance(p, str):
            p = _port(p, f"--publish {p!r}") if p != "*" else ANY_PORT
        if p != ANY_PORT and (isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536):
            raise KvmboxError(f"kvmbox: --publish {p!r}: wants a port 1-65535")
        published.add(p)
    return NetPolicy(network, tuple(rules), frozenset(published))
