"""Capabilities of the sandbox's credentials, by Linux's rules (kernel/capability.c,
security/commoncap.c), for capget/capset, prctl and /proc/<pid>/status.

The guest's ids are the Sentry's host ids (task.Credentials), so its capabilities are
what a program the Sentry's user execs natively would get: the exec transformation
applied to the Sentry's own sets (read from /proc/self/status).  For root that is the
bounding set (plus the inheritable one): full capabilities where the host's root has
them, the same reduced set where it does not (a container's).  For any other user,
none but the ambient ones.  The Sentry does not consult these sets for its own
permission checks (root bypasses file permissions as before); they are what the
program is told, kept consistent by capset, prctl and execve.
"""
from __future__ import annotations

import functools

from kvmbox.abi import capability as A

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Credentials


@functools.cache
def cap_last_cap() -> int:
    """The host kernel's highest capability number (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return A.CAP_LAST_CAP_DEFAULT


def valid_mask() -> int:
    return (1 << (cap_last_cap() + 1)) - 1


def cap_valid(cap: int) -> bool:
    return 0 <= cap <= cap_last_cap()


@functools.cache
def host_sets() -> tuple[int, int, int, int, int]:
    """The Sentry's own (inheritable, permitted, effective, bounding, ambient) sets."""
    fields = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Cap"):
                    key, _, value = line.partition(":")
                    fields[key] = int(value, 16)
    except (OSError, ValueError):
        pass
    return (fields.get("CapInh", 0), fields.get("CapPrm", 0), fields.get("CapEff", 0),
            fields.get("CapBnd", valid_mask()), fields.get("CapAmb", 0))


def after_exec(uid: int, euid: int, inheritable: int, bset: int, ambient: int) -> tuple[int, int, int]:
    """(permitted, effective, ambient) after an execve of a file with no capabilities and no
    set-id bits: root gets its bounding and inheritable sets, all effective when euid is 0;
    anyone else keeps only the ambient set."""
    if uid == 0 or euid == 0:
        permitted = (bset | inheritable) | ambient
        effective = permitted if euid == 0 else ambient
    else:
        permitted = effective = ambient
    return permitted, effective, ambient


def initial(uid: int, euid: int) -> tuple[int, int, int, int, int]:
    """(inheritable, permitted, effective, bounding, ambient) of a program the Sentry's
    user starts: the exec transformation of the Sentry's own sets."""
    inh, _prm, _eff, bnd, amb = host_sets()
    permitted, effective, amb = after_exec(uid, euid, inh, bnd, amb)
    return inh, permitted, effective, bnd, amb


def exec_creds(c: "Credentials") -> None:
    """execve(2): recompute the sets of `c` in place."""
    c.cap_permitted, c.cap_effective, c.cap_ambient = after_exec(
        c.uid, c.euid, c.cap_inheritable, c.cap_bset, c.cap_ambient)


def capable(c: "Credentials", cap: int) -> bool:
    return bool(c.cap_effective >> cap & 1)


def capset_check(c: "Credentials", effective: int, inheritable: int, permitted: int) -> bool:
    """May `c` set these sets (cap_capset)?  True if so (then apply_capset)."""
    if not capable(c, A.CAP_SETPCAP) and inheritable & ~(c.cap_inheritable | c.cap_permitted):
        return False                     # no new inheritable bits without CAP_SETPCAP
    if inheritable & ~(c.cap_inheritable | c.cap_bset):
        return False                     # none outside the bounding set
    if permitted & ~c.cap_permitted:
        return False                     # permitted only shrinks
    return not effective & ~permitted


def apply_capset(c: "Credentials", effective: int, inheritable: int, permitted: int) -> None:
    c.cap_effective, c.cap_inheritable, c.cap_permitted = effective, inheritable, permitted
    c.cap_ambient &= permitted & inheritable
