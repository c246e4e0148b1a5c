"""NetPolicy parsing and matching (kvmbox/sentry/net/policy.py); no traffic at all."""
import pytest

from kvmbox.errors import KvmboxError
from kvmbox.sentry.net.policy import make_policy


def test_default_is_none_and_allows_nothing():
    p = make_policy()
    assert p.mode == "none" and not p.host
    assert not p.may_connect("127.0.0.1", 80) and not p.may_bind(0)


def test_allow_net_implies_host():
    assert make_policy(allow_net=["127.0.0.1:8080"]).host
    assert make_policy(publish=[8080]).host


def test_allow_forms():
    p = make_policy("host", ["127.0.0.1:8080", "::1", "[::1]:81", "127.0.0.0/8:*", "localhost:99"])
    assert p.may_connect("127.0.0.1", 8080)
    assert p.may_connect("::1", 5) and p.may_connect("::1", 81)
    assert p.may_connect("127.3.4.5", 1)          # CIDR, any port
    assert p.may_connect("::ffff:127.0.0.1", 7)   # v4-mapped matches the v4 rule
    assert not p.may_connect("10.0.0.1", 8080)
    q = make_policy("host", ["127.0.0.1:8080"])
    assert q.may_connect("127.0.0.1", 8080) and not q.may_connect("127.0.0.1", 8081)
    assert make_policy("host", ["localhost:99"]).may_connect("127.0.0.1", 99)


def test_empty_allow_list_allows_all_in_host_mode():
    assert make_policy("host").may_connect("127.0.0.1", 1)


def test_bind_needs_publish():
    p = make_policy("host", publish=[8080])
    assert p.may_bind(8080) and p.may_bind(0) and not p.may_bind(8081)


@pytest.mark.parametrize("kw", [
    {"network": "bogus"},
    {"network": "host", "allow_net": ["a:b:c"]},
    {"network": "host", "allow_net": ["127.0.0.1:0"]},
    {"network": "host", "allow_net": ["[::1"]},
    {"network": "host", "allow_net": [""]},
    {"network": "host", "publish": [70000]},
    {"network": "host", "publish": [0]},
    {"network": "host", "publish": ["x"]},
    {"network": "none", "publish": [80]},
])
def test_bad_values_are_one_line_errors(kw):
    with pytest.raises(KvmboxError) as e:
        make_policy(**kw)
    assert "\n" not in str(e.value) and str(e.value).startswith("kvmbox:")
