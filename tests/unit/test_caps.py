"""The capability model (sentry/caps.py) on sets the host running the tests may not have."""
from __future__ import annotations

from kvmbox.sentry import caps
from kvmbox.sentry.task import Credentials

FULL = (1 << 41) - 1


def test_exec_gives_root_its_bounding_set_and_others_only_ambient():
    assert caps.after_exec(0, 0, 0, FULL, 0) == (FULL, FULL, 0)
    assert caps.after_exec(0, 0, 1 << 3, FULL & ~(1 << 3 | 1 << 24), 0)[0] == FULL & ~(1 << 24)
    assert caps.after_exec(0, 1000, 0, FULL, 0) == (FULL, 0, 0)      # real root, effective not
    assert caps.after_exec(1000, 1000, 1 << 13, FULL, 1 << 13) == (1 << 13, 1 << 13, 1 << 13)
    assert caps.after_exec(1000, 1000, 0, FULL, 0) == (0, 0, 0)


def _creds(**sets: int) -> Credentials:
    base = dict(cap_inheritable=0, cap_permitted=FULL, cap_effective=FULL, cap_bset=FULL,
                cap_ambient=0)
    return Credentials(uid=0, gid=0, euid=0, egid=0, **{**base, **sets})


def test_capset_rules():
    c = _creds()
    assert caps.capset_check(c, 1, 1 << 5, 3)                          # shrink, inheritable ok
    assert not caps.capset_check(c, 4, 0, 3)                           # effective outside permitted
    user = _creds(cap_permitted=3, cap_effective=3)
    assert not caps.capset_check(user, 3, 0, 7)                        # permitted may not grow
    assert not caps.capset_check(user, 3, 1 << 5, 3)                   # no CAP_SETPCAP: inh <= inh|prm
    assert caps.capset_check(user, 3, 1, 3)
    bounded = _creds(cap_bset=FULL & ~(1 << 5))
    assert not caps.capset_check(bounded, 1, 1 << 5, 3)                # never outside the bounding set
    c = _creds(cap_inheritable=1 << 13, cap_ambient=1 << 13)
    caps.apply_capset(c, 1, 0, 1 << 13)                                # ambient keeps only prm & inh
    assert (c.cap_effective, c.cap_inheritable, c.cap_permitted, c.cap_ambient) == (1, 0, 1 << 13, 0)
